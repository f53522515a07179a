"""Training checkpoints: what they hold, resuming with fallback, and the model-config guard.

A checkpoint (`model_dir/ckpt-<step>`, `tf.train.CheckpointManager`) holds the model (including
any in-graph memory, which is model variables, except the variables a layer lists in its
`transient_variables`: state the model rebuilds itself, such as AIA's eval memory, which the
first evaluation pass refills), the optimizer, the step, the input iterator
and the state of every Keras `SeedGenerator` in the model. The latter are not reached by the
model's own checkpoint dependencies (a SeedGenerator is not a trackable), yet they drive
dropout and the RoI / anchor samplers: without them a resumed run would draw other samples.
"""
import json
import logging
import os
from typing import Callable, Dict, List, Optional

import keras
import tensorflow as tf

CONFIG_FILE = "model_flags.json"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used (none readable, or it belongs to another model)."""


def seed_generator_states(model) -> Dict[str, object]:
    """{"<k>": state variable} of every Keras SeedGenerator in `model`.

    Keyed by position in the layer traversal, which is fixed for one architecture (variable
    paths are not: Keras makes names unique per process, e.g. seed_generator_3).
    """
    states, seen = {}, set()
    layers = [model] + list(model._flatten_layers(include_self=False, recursive=True))
    for layer in layers:
        for gen in getattr(layer, "_seed_generators", []):
            if id(gen) in seen:
                continue
            seen.add(id(gen))
            states[str(len(states))] = gen.state
    return states


class VariableTable(tf.__internal__.tracking.AutoTrackable):
    """A trackable {key: variable} table; the dict keys become checkpoint keys."""

    def __init__(self, variables: Dict[str, tf.Variable]):
        self.table = dict(variables)


def _positional(variables, transient=frozenset()) -> VariableTable:
    # Keys are positions in the full list, so leaving a transient variable out shifts no other
    # key: checkpoints written before a variable became transient still restore.
    return VariableTable({f"v{i:05d}": v for i, v in enumerate(variables)
                          if id(v) not in transient})


def transient_variable_ids(model) -> frozenset:
    """ids of the variables left out of checkpoints: those every layer of `model` (itself
    included) lists in a `transient_variables` attribute (state it rebuilds itself)."""
    layers = [model] + list(model._flatten_layers(include_self=False, recursive=True))
    return frozenset(id(v) for layer in layers
                     for v in (getattr(layer, "transient_variables", None) or ()))


def checkpointable(model) -> tf.__internal__.tracking.AutoTrackable:
    """Every variable of a built Keras 3 model, for `tf.train.Checkpoint(model=...)`.

    `tf.train.Checkpoint(model=keras_model)` silently misses sub-layers that Keras 3 keeps in
    Python lists (its TrackedList is not a TF trackable, keras-team/keras#19425): the I3D blocks,
    the Tx units; and the seed-generator states. `model.variables` has them all. They are
    grouped by the model's layer attribute (`trunk`, `proposer`, `head`, ...) and keyed by
    position inside each group, which the code fixes. Variable paths are no good as keys, since
    Keras makes names unique per process (a second detector built in one process is
    `action_detector_1/...`, its dropouts `seed_generator_7`). Groups make a checkpoint usable
    by a model that lacks a part: a detector with ground-truth proposals has no RPN variables
    and still restores the trunk and head of an RPN-trained checkpoint. A checkpoint of another
    architecture fails on shapes or unmatched variables at restore. A layer's
    `transient_variables` are left out (`transient_variable_ids`).
    """
    if not model.variables:
        raise ValueError(f"{model.name}: build the model (call it once) before checkpointing it")
    root = tf.__internal__.tracking.AutoTrackable()
    seen, transient = set(), transient_variable_ids(model)
    for attr, value in sorted(vars(model).items()):
        if attr.startswith("_") or not isinstance(value, keras.layers.Layer):
            continue
        group = [v for v in value.variables if id(v) not in seen]
        seen.update(id(v) for v in group)
        setattr(root, attr, _positional(group, transient))
    root.own = _positional([v for v in model.variables if id(v) not in seen], transient)
    return root


def make_checkpoint(*, model, optimizer, step: tf.Variable, iterator=None) -> tf.train.Checkpoint:
    """The training checkpoint object (see the module docstring)."""
    kwargs = dict(model=checkpointable(model), optimizer=optimizer, step=step,
                  seed_generators=seed_generator_states(model))
    if iterator is not None:
        kwargs["iterator"] = iterator
    return tf.train.Checkpoint(**kwargs)


def _is_structure_mismatch(error: Exception) -> bool:
    # A checkpoint of another architecture fails with shape / missing-object errors; a damaged
    # file fails with read errors (DataLoss, OutOfRange, "truncated", checksum ...).
    text = str(error)
    return isinstance(error, (AssertionError, ValueError)) and not isinstance(
        error, tf.errors.OpError) and ("shape" in text.lower() or "Unresolved object" in text
                                        or "not found in checkpoint" in text)


def restore_latest(checkpoint: tf.train.Checkpoint, checkpoints: List[str],
                   log: Callable[[str], None] = logging.warning) -> Optional[str]:
    """Restores the newest readable checkpoint of `checkpoints` (oldest first, as
    `CheckpointManager.checkpoints`); returns its path, or None when the list is empty.

    A damaged newest checkpoint (truncated or unreadable file) is reported through `log` with
    the reason and the one before it is tried; a run never restarts from scratch silently.
    Raises CheckpointError when a checkpoint belongs to a different model (shapes or objects
    differ) or when none of them can be read.
    """
    reasons = []
    for path in reversed(checkpoints):
        try:
            checkpoint.restore(path).assert_existing_objects_matched()
            if reasons:
                log(f"resumed from the older checkpoint {path}")
            return path
        except Exception as e:  # noqa: BLE001  (any failure: report it and try the previous)
            reason = " ".join(str(e).split())[:300]
            if _is_structure_mismatch(e):
                raise CheckpointError(
                    f"{path} was written by a different model configuration: {reason}") from None
            reasons.append(f"{path}: {type(e).__name__}: {reason}")
            log(f"cannot restore {path} ({type(e).__name__}: {reason}); "
                "falling back to the checkpoint before it")
    if reasons:
        raise CheckpointError("no checkpoint can be restored; refusing to start from scratch "
                              "over them (delete the model_dir to do so): " + "; ".join(reasons))
    return None


def check_model_config(model_dir: str, config: Dict[str, object], write: bool = True) -> None:
    """Compares `config` (model/data flag values) with `model_dir/model_flags.json`.

    Writes the file when absent (if `write`); raises CheckpointError naming every differing
    key when it holds other values, since the checkpoints there belong to that model.
    """
    path = os.path.join(model_dir, CONFIG_FILE)
    config = json.loads(json.dumps(config))   # the JSON view: tuples -> lists, etc.
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            saved = json.load(f)
        keys = sorted(set(saved) | set(config))
        diff = [f"{k}: {saved.get(k, '<absent>')!r} in {CONFIG_FILE}, now {config.get(k, '<absent>')!r}"
                for k in keys if saved.get(k, "<absent>") != config.get(k, "<absent>")]
        if diff:
            raise CheckpointError(
                f"{model_dir} holds a run of a different model configuration ({'; '.join(diff)}); "
                "use another --model_dir or the same model flags")
        return
    if write:
        tf.io.gfile.makedirs(model_dir)
        with tf.io.gfile.GFile(path, "w") as f:
            json.dump(config, f, indent=1, sort_keys=True)
