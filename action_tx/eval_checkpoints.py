"""Evaluating trainer checkpoints: their step, restoring their model weights into a built
detector, and following a model_dir for new ones (`wait_for_checkpoints`). Part of the
evaluation library `action_tx.eval_lib`, which re-exports these names."""

import re
import time
from typing import Iterator

import tensorflow as tf

from action_tx.checkpointing import CheckpointMismatchError, checkpointable, find_checkpoints


def checkpoint_step(checkpoint_path: str) -> int:
    """Training step of a checkpoint: its `step` variable when the trainer saved one, else
    the N of `ckpt-N`, else 0."""
    try:
        reader = tf.train.load_checkpoint(checkpoint_path)
        if reader.has_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"):
            return int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.OpError, ValueError):
        pass
    match = re.search(r"-(\d+)$", checkpoint_path)
    return int(match.group(1)) if match else 0


def _has_model_object(checkpoint_path: str) -> bool:
    """Whether the checkpoint's root has a `model` child. (Its variable names do not say: a
    variable is saved under its first path, `optimizer/_trainable_variables/i` for a model
    whose variables are all trainable, e.g. a feature-mode head.)"""
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(
        tf.train.load_checkpoint(checkpoint_path).get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH")
    )
    return any(child.local_name == "model" for child in graph.nodes[0].children)


def restore(detector, checkpoint_path: str) -> None:
    """Restores the model weights of a trainer checkpoint into a built detector (optimizer,
    iterator etc. of the checkpoint are ignored). Raises ValueError when there is no
    checkpoint at `checkpoint_path`, CheckpointMismatchError (a ValueError) when it holds another
    model; a damaged file raises what the reader raises (OpError, IndexError ...)."""
    if not tf.io.gfile.exists(checkpoint_path + ".index"):
        raise ValueError(f"no checkpoint at {checkpoint_path} ({checkpoint_path}.index is missing)")
    if not _has_model_object(checkpoint_path):
        raise CheckpointMismatchError(
            f"checkpoint {checkpoint_path} holds no weights of this model (no 'model' object: "
            "not written as tf.train.Checkpoint(model=...))"
        )
    # The trainer's optimizer, step and iterator are not restored here (expect_partial), but
    # every variable of this model must be found (other model flags -> a clear error).
    try:
        status = tf.train.Checkpoint(model=checkpointable(detector)).restore(checkpoint_path)
        status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
        raise CheckpointMismatchError(
            f"checkpoint {checkpoint_path} does not match this model (was it trained with "
            f"other model flags?): {str(e)[:300]}"
        ) from None


def wait_for_checkpoints(
    model_dir: str, timeout_s: float, poll_s: float = 10.0, done=()
) -> Iterator[str]:
    """Yields every checkpoint of `model_dir` (its `checkpoint` state file, or its ckpt-*.index
    files when that file is lost or garbled: `checkpointing.find_checkpoints`), oldest first,
    then new ones as the trainer writes them; stops after `timeout_s` seconds without a new
    one (counted from the end of the last evaluation, i.e. the generator's last resume).

    Unlike `tf.train.checkpoints_iterator`, which yields only the latest, checkpoints already
    present when it starts are all evaluated. Ones deleted (max_to_keep) before their turn are
    skipped. `done`: paths not to yield.
    """
    seen = set(done)
    last_new = time.monotonic()
    while True:
        # The state file's list, or the ckpt-*.index files when it is lost or garbled.
        paths = find_checkpoints(model_dir, log=None)
        fresh = [p for p in paths if p not in seen]
        for path in fresh:
            seen.add(path)
            if tf.io.gfile.exists(path + ".index"):
                yield path
                last_new = time.monotonic()
        if not fresh:
            if time.monotonic() - last_new >= timeout_s:
                return
            time.sleep(max(0.0, min(poll_s, timeout_s - (time.monotonic() - last_new))))
