"""Figures of one training run read back from its files (no model is built):
parameters from the checkpoint, step time from the trainer's TensorBoard events, mAPs from
tools/eval.py's results JSON."""

import json
import os
import statistics
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf


def _children(nodes, node_id) -> dict:
    return {c.local_name: c.node_id for c in nodes[node_id].children}


def count_parameters(checkpoint_path: str, group: str = "head") -> Tuple[int, int]:
    """(trainable parameters of the model's `group` layer, all trainable parameters) of a
    trainer checkpoint (`tf.train.Checkpoint(model=checkpointable(model), optimizer=...)`).

    The checkpoint stores each variable once, under whichever path its object graph reaches
    first, so variables are found as objects: the model's `group` table
    (`action_tx.checkpointing.checkpointable`) and the optimizer's `_trainable_variables`
    (Keras 3), whose intersection is the group's trainable part (memory tables, BatchNorm
    statistics and seed states are not parameters).
    """
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    reader = tf.train.load_checkpoint(checkpoint_path)
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    nodes = graph.nodes
    shapes = reader.get_variable_to_shape_map()

    def size(node_id):
        for attr in nodes[node_id].attributes:
            if attr.name == "VARIABLE_VALUE":
                return int(np.prod(shapes[attr.checkpoint_key]))
        return 0

    root = _children(nodes, 0)
    if "optimizer" not in root or "model" not in root:
        raise ValueError(f"{checkpoint_path}: not a trainer checkpoint (no model/optimizer)")
    optimizer = _children(nodes, root["optimizer"])
    trainable = (
        set(_children(nodes, optimizer["_trainable_variables"]).values())
        if "_trainable_variables" in optimizer
        else set()
    )
    model = _children(nodes, root["model"])
    members = set()
    if group in model:
        table = _children(nodes, model[group])
        if "table" in table:
            members = set(_children(nodes, table["table"]).values())
    return (sum(size(n) for n in members & trainable), sum(size(n) for n in trainable))


def scalar_series(log_dir: str, tag: str) -> list:
    """[(step, value)] of a tf.summary scalar in the event files of `log_dir`, by step."""
    out = []
    if not os.path.isdir(log_dir):
        return out
    for name in sorted(os.listdir(log_dir)):
        if "tfevents" not in name:
            continue
        for event in tf.compat.v1.train.summary_iterator(os.path.join(log_dir, name)):
            for value in event.summary.value:
                if value.tag != tag:
                    continue
                number = (
                    float(tf.make_ndarray(value.tensor))
                    if value.HasField("tensor")
                    else float(value.simple_value)
                )
                out.append((int(event.step), number))
    return sorted(out)


def step_seconds(model_dir: str, batch_size: int) -> Optional[float]:
    """Median seconds per training step from the trainer's `examples_per_second` scalars in
    model_dir/train; the first logging window (tracing, first batches) is left out when there
    are others."""
    rates = [v for _, v in scalar_series(os.path.join(model_dir, "train"), "examples_per_second")]
    if len(rates) > 1:
        rates = rates[1:]
    rates = [r for r in rates if r > 0]
    return batch_size / statistics.median(rates) if rates else None


def eval_results(eval_dir: str, step: Optional[int] = None) -> Optional[dict]:
    """tools/eval.py's `ckpt-<step>_results.json` in eval_dir (the newest when step is None),
    or None when absent."""
    if not os.path.isdir(eval_dir):
        return None
    found = {
        int(n.split("_")[0].split("-")[-1]): n
        for n in os.listdir(eval_dir)
        if n.startswith("ckpt-") and n.endswith("_results.json")
    }
    if not found or (step is not None and step not in found):
        return None
    with open(os.path.join(eval_dir, found[step if step is not None else max(found)])) as f:
        return json.load(f)
