"""Training checkpoints: what they hold, saving, resuming with fallback, and the model-config
guard.

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
import re
from typing import Callable, Dict, List, Optional

import keras
import tensorflow as tf

from action_tx.distribute import op_error_text

CONFIG_FILE = "config.json"  # action_tx.config.CONFIG_FILE
STATE_FILE = "checkpoint"  # tf.train.CheckpointManager's list of its checkpoints
_STATE_LINE = re.compile(r'^(\w+):\s*(?:"((?:[^"\\]|\\.)*)"|([-+.\deE]+))\s*$')
_INDEX_FILE = re.compile(r"^ckpt-(\d+)\.index$")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used (none readable, or it belongs to another model)."""


class CheckpointMismatchError(CheckpointError, ValueError):
    """A readable checkpoint that holds another model's variables (shapes or objects differ)."""


class CheckpointSaveError(CheckpointError):
    """Writing a checkpoint failed (a full disk, ...); the checkpoints before it are intact."""


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
    return VariableTable(
        {f"v{i:05d}": v for i, v in enumerate(variables) if id(v) not in transient}
    )


def transient_variable_ids(model) -> frozenset:
    """ids of the variables left out of checkpoints: those every layer of `model` (itself
    included) lists in a `transient_variables` attribute (state it rebuilds itself)."""
    layers = [model] + list(model._flatten_layers(include_self=False, recursive=True))
    return frozenset(
        id(v) for layer in layers for v in (getattr(layer, "transient_variables", None) or ())
    )


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
    kwargs = dict(
        model=checkpointable(model),
        optimizer=optimizer,
        step=step,
        seed_generators=seed_generator_states(model),
    )
    if iterator is not None:
        kwargs["iterator"] = iterator
    return tf.train.Checkpoint(**kwargs)


def save_checkpoint(manager: tf.train.CheckpointManager, number: int) -> str:
    """manager.save; a failed write (a full disk: ResourceExhausted / OSError) raises
    CheckpointSaveError naming the newest complete checkpoint, which the failure left intact
    (the state file is only rewritten after a complete save)."""
    before = manager.latest_checkpoint
    try:
        return manager.save(checkpoint_number=number)
    except (tf.errors.OpError, OSError) as e:
        # The saver's scratch folder of this save holds only its partial shards: free it.
        partial = os.path.join(manager.directory, f"ckpt-{number}_temp")
        try:
            if tf.io.gfile.isdir(partial):
                tf.io.gfile.rmtree(partial)
        except (tf.errors.OpError, OSError):
            pass
        # "<scratch file path>; No space left on device": the reason is the last part.
        why = (op_error_text(e) if isinstance(e, tf.errors.OpError) else str(e)).split("; ")[-1]
        raise CheckpointSaveError(
            f"cannot write the checkpoint of step {number} in {manager.directory} "
            f"({type(e).__name__}: {why}); the newest complete checkpoint is "
            f"{before or 'none'}: free some space and rerun the same command to resume "
            "from it"
        ) from None


def _is_structure_mismatch(error: Exception) -> bool:
    # A checkpoint of another architecture fails with shape / missing-object errors; a damaged
    # file fails with read errors (DataLoss, OutOfRange, "truncated", checksum ...).
    if isinstance(error, CheckpointMismatchError):
        return True
    text = str(error)
    return (
        isinstance(error, (AssertionError, ValueError))
        and not isinstance(error, tf.errors.OpError)
        and (
            "shape" in text.lower()
            or "Unresolved object" in text
            or "not found in checkpoint" in text
        )
    )


def _read_state(model_dir: str):
    """-> (checkpoint paths the state file lists, oldest first; None or why it is unusable)."""
    path = os.path.join(model_dir, STATE_FILE)
    if not tf.io.gfile.exists(path):
        return [], "is missing"
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            text = f.read().decode("utf-8")
    except (UnicodeDecodeError, tf.errors.OpError) as e:
        return [], f"is unreadable ({type(e).__name__})"
    # Parsed here rather than by tf.train.get_checkpoint_state, which logs its parse errors
    # and returns None, or raises UnicodeDecodeError on binary garbage.
    listed, newest = [], None
    for number, line in enumerate(text.splitlines(), 1):
        match = _STATE_LINE.match(line.strip())
        if line.strip() and not match:
            return [], f"is unreadable (line {number}: {line.strip()[:60]!r})"
        if match and match.group(1) == "all_model_checkpoint_paths":
            listed.append(match.group(2))
        elif match and match.group(1) == "model_checkpoint_path":
            newest = match.group(2)
    listed = listed or ([newest] if newest else [])
    listed = [p if os.path.isabs(p) or "://" in p else os.path.join(model_dir, p) for p in listed]
    if not any(tf.io.gfile.exists(p + ".index") for p in listed):
        return listed, "names no checkpoint that exists"
    return listed, None


def _index_checkpoints(model_dir: str) -> List[str]:
    """The ckpt-<N> prefixes of `model_dir` that have an .index file, oldest first."""
    found = []
    for name in tf.io.gfile.listdir(model_dir) if tf.io.gfile.isdir(model_dir) else []:
        match = _INDEX_FILE.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(model_dir, name[: -len(".index")])))
    return [p for _, p in sorted(found)]


def _write_state(model_dir: str, checkpoints: List[str]) -> None:
    """A fresh state file listing `checkpoints` (oldest first), written atomically. The
    timestamps (the files' times) let tf.train.CheckpointManager rotate them as its own."""
    times = [tf.io.gfile.stat(p + ".index").mtime_nsec / 1e9 for p in checkpoints]
    lines = [f'model_checkpoint_path: "{os.path.basename(checkpoints[-1])}"']
    lines += [f'all_model_checkpoint_paths: "{os.path.basename(p)}"' for p in checkpoints]
    lines += [f"all_model_checkpoint_timestamps: {t!r}" for t in times]
    lines.append(f"last_preserved_timestamp: {min(times) - 1.0!r}")
    path = os.path.join(model_dir, STATE_FILE)
    with tf.io.gfile.GFile(path + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


def find_checkpoints(
    model_dir: str, log: Optional[Callable[[str], None]] = logging.warning, repair: bool = False
) -> List[str]:
    """The checkpoints of `model_dir`, oldest first.

    Normally those its `checkpoint` state file lists. When that file is missing, unreadable,
    or names no checkpoint that exists, while `ckpt-<N>.index` files are there, those files
    are the list instead, said in one line through `log`: a lost state file never hides the
    checkpoints (a trainer would otherwise start from scratch over them). `repair`: then also
    rewrite the state file from them (the trainer's chief does, so that its
    CheckpointManager sees and rotates them).
    """
    listed, problem = _read_state(model_dir)
    if problem is None:
        return listed
    found = _index_checkpoints(model_dir)
    if not found:
        return listed  # nothing better: restoring the listed ones reports what is missing
    names = ", ".join(os.path.basename(p) for p in found)
    if repair:
        _write_state(model_dir, found)
    if log:
        log(
            f"{os.path.join(model_dir, STATE_FILE)} {problem}; found {len(found)} "
            f"checkpoint(s) from their ckpt-*.index files ({names}); using the newest that "
            f"restores{' (state file rewritten from them)' if repair else ''}"
        )
    return found


def restore_newest(
    checkpoints: List[str],
    restore: Callable[[str], None],
    log: Callable[[str], None] = logging.warning,
) -> Optional[str]:
    """Calls `restore(path)` on the newest of `checkpoints` (oldest first), then on older ones
    while it fails on a damaged checkpoint; returns the path that restored, or None for an
    empty list.

    Each damaged checkpoint (truncated or unreadable file) that an older one follows is
    reported through `log` with the reason. Raises CheckpointMismatchError when a checkpoint
    belongs to a different model (shapes or objects differ), CheckpointError when none of
    them can be read.
    """
    reasons = []
    for i, path in reversed(list(enumerate(checkpoints))):
        try:
            restore(path)
            return path
        except Exception as e:  # noqa: BLE001  (any failure: report it and try the previous)
            reason = " ".join(str(e).split())[:300]
            if _is_structure_mismatch(e):
                if isinstance(e, CheckpointMismatchError):
                    raise
                raise CheckpointMismatchError(
                    f"{path} was written by a different model configuration: {reason}"
                ) from None
            reasons.append(f"{path}: {type(e).__name__}: {reason}")
            if i:  # (the oldest one's failure is in the error raised below)
                log(
                    f"cannot restore {path} ({type(e).__name__}: {reason}); falling back to "
                    f"the checkpoint before it, {checkpoints[i - 1]}"
                )
    if reasons:
        raise CheckpointError("no checkpoint can be restored: " + "; ".join(reasons))
    return None


def restore_latest(
    checkpoint: tf.train.Checkpoint,
    checkpoints: List[str],
    log: Callable[[str], None] = logging.warning,
) -> Optional[str]:
    """Restores the newest readable checkpoint of `checkpoints` (oldest first) into the
    training `checkpoint`; returns its path, or None when the list is empty.

    `restore_newest`'s fallback: a damaged newest checkpoint is reported through `log` and the
    one before it is tried; a run never restarts from scratch silently. Raises
    CheckpointMismatchError for another model's checkpoint, CheckpointError when none of them
    can be read.
    """
    try:
        return restore_newest(
            checkpoints, lambda p: checkpoint.restore(p).assert_existing_objects_matched(), log
        )
    except CheckpointMismatchError:
        raise
    except CheckpointError as e:
        raise CheckpointError(
            f"{e}; refusing to start from scratch over them (delete the model_dir to do so)"
        ) from None


def _flat(values, prefix=""):
    """{"model": {"head": "tx"}} -> {"model.head": "tx"} (sections become dotted names)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict) and key in ("model", "data", "head_options"):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _model_view(values: dict) -> dict:
    """What a model_dir's checkpoints depend on, flattened: an ExperimentConfig's JSON without
    its train/eval sections and run paths; any other dict as it is."""
    if "version" not in values or "model" not in values:
        return _flat(values)
    from action_tx.config import DataConfig

    data = {k: v for k, v in (values.get("data") or {}).items() if k not in DataConfig.RUN_FIELDS}
    return _flat({"model": values["model"], "data": data})


def check_model_config(model_dir: str, config, write: bool = True) -> None:
    """Compares `config` (an `ExperimentConfig`, or a dict of JSON values) with
    `model_dir/config.json`.

    Writes the file when absent (if `write`); raises CheckpointError naming every differing
    field when it describes another model (model and data sections; the train and eval
    sections and the data's file patterns may change between runs), since the checkpoints
    there belong to that model. A config.json beside no checkpoint (no state file, no
    ckpt-*.index: a start that failed before its first save) protects nothing: it is
    replaced (if `write`) rather than refusing the corrected retry.
    """
    from action_tx.config import ExperimentConfig

    path = os.path.join(model_dir, CONFIG_FILE)
    values = config.to_json() if isinstance(config, ExperimentConfig) else config
    values = json.loads(json.dumps(values))  # the JSON view: tuples -> lists, etc.
    saved_nothing = not (
        tf.io.gfile.exists(os.path.join(model_dir, STATE_FILE)) or _index_checkpoints(model_dir)
    )
    if tf.io.gfile.exists(path) and not saved_nothing:
        with tf.io.gfile.GFile(path) as f:
            saved = _model_view(json.load(f))
        now = _model_view(values)
        diff = [
            f"{k}: {saved.get(k, '<absent>')!r} in {CONFIG_FILE}, now {now.get(k, '<absent>')!r}"
            for k in sorted(set(saved) | set(now))
            if saved.get(k, "<absent>") != now.get(k, "<absent>")
        ]
        if diff:
            raise CheckpointError(
                f"{model_dir} holds a run of a different model configuration ({'; '.join(diff)}); "
                "use another --model_dir or the same model flags"
            )
        return
    if write:
        tf.io.gfile.makedirs(model_dir)
        with tf.io.gfile.GFile(path, "w") as f:
            json.dump(values, f, indent=1)
