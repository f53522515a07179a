"""Kinetics checkpoints of the public kinetics-i3d release <-> our InceptionI3D.

Release checkpoints are TF1 name-based checkpoints. Their variables are named like
`RGB/inception_i3d/Mixed_4f/Branch_1/Conv3d_0b_3x3/conv_3d/w` (rgb_imagenet: 400 classes) or,
in rgb_scratch_kin600 (600 classes), without the `RGB/inception_i3d/` scope, with BatchNorm
variables shaped [1, 1, 1, 1, C] instead of [C], and with the training's `.../Momentum` slots.
We strip any scope ending in `inception_i3d/`, drop leading singleton axes, set optimizer
state aside, and match the rest one-to-one to `InceptionI3D.release_variables()`.

Our converted weights (`tools/convert_i3d_checkpoint.py`) use the same format: a TF checkpoint
whose keys are the release names without scope, so one file serves any cut of the network
(the Mixed_4f trunk and the Mixed_5a-5c head tail): `restore_trunk(model, path)`.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from action_tx.trunks.i3d import ENDPOINTS, InceptionI3D

# Suffixes of optimizer slot variables and names of optimizer bookkeeping variables: training
# state, not model weights.
_SLOT_SUFFIXES = (
    "/Momentum",
    "/ExponentialMovingAverage",
    "/Adam",
    "/Adam_1",
    "/RMSProp",
    "/RMSProp_1",
)
_BOOKKEEPING = ("global_step", "beta1_power", "beta2_power")
_SCOPE = "inception_i3d/"


class CheckpointMismatchError(ValueError):
    """A checkpoint's variables do not match the model (lists every problem)."""


@dataclasses.dataclass
class LoadReport:
    """What `match_checkpoint` / `load_kinetics_checkpoint` did, by checkpoint variable name.

    loaded: variables assigned to the model. beyond_model: release variables of endpoints the
    model does not build (e.g. Mixed_5b.. for a Mixed_4f trunk), skipped. optimizer_state:
    optimizer slots and counters, skipped. problems: unmatched, misshapen or missing variables
    (empty unless strict=False).
    """

    loaded: list = dataclasses.field(default_factory=list)
    beyond_model: list = dataclasses.field(default_factory=list)
    optimizer_state: list = dataclasses.field(default_factory=list)
    problems: list = dataclasses.field(default_factory=list)

    def summary(self):
        return (
            f"loaded {len(self.loaded)} variables, skipped {len(self.beyond_model)} beyond "
            f"the model's endpoints and {len(self.optimizer_state)} optimizer variables, "
            f"{len(self.problems)} problems"
        )


def release_key(name):
    """Checkpoint variable name -> release name without scope (`Mixed_4f/.../conv_3d/w`)."""
    i = name.rfind(_SCOPE)
    return name[i + len(_SCOPE) :] if i >= 0 else name


def _is_optimizer_state(name):
    return name in _BOOKKEEPING or name.endswith(_SLOT_SUFFIXES)


def _fits(ckpt_shape, shape):
    """True when ckpt_shape equals shape up to leading singleton axes."""
    ckpt_shape, shape = list(ckpt_shape), list(shape)
    extra = len(ckpt_shape) - len(shape)
    return extra >= 0 and ckpt_shape[extra:] == shape and all(d == 1 for d in ckpt_shape[:extra])


def ensure_built(model):
    """Builds `model`'s variables from shapes alone (no forward pass) if it is not built."""
    if model.built:
        return
    first = ENDPOINTS.index(model.first_endpoint)
    in_channels = (
        3
        if first == 0
        else InceptionI3D(
            final_endpoint=ENDPOINTS[first - 1],
            width_multiplier=model.width_multiplier,
            min_channels=model.min_channels,
        ).output_channels
    )
    model.build((1, 64, 224, 224, in_channels))


def match_checkpoint(model, variable_shapes, num_classes=None, strict=True, source="checkpoint"):
    """Pairs checkpoint variables with the model's variables.

    Args:
      model: an InceptionI3D (built here from shapes if needed).
      variable_shapes: [(name, shape)] as `tf.train.list_variables` returns.
      num_classes: expected classes of the checkpoint's Logits (400 or 600), or None for any.
      strict: raise CheckpointMismatchError listing every problem; False records them in the
        report and pairs what matches.
      source: the checkpoint's path, for messages.

    Returns:
      (pairs, report): pairs is [(checkpoint name, model variable)], one per model variable
      when strict; report is a LoadReport.
    """
    ensure_built(model)
    ours = model.release_variables()
    report, pairs, seen = LoadReport(), [], {}
    for name, shape in variable_shapes:
        if _is_optimizer_state(name):
            report.optimizer_state.append(name)
            continue
        key = release_key(name)
        endpoint = key.split("/")[0]
        if endpoint not in ENDPOINTS:
            report.problems.append(f"{name}: not an Inception-I3D variable")
        elif key not in ours and endpoint not in model.endpoints:
            report.beyond_model.append(name)
        elif key not in ours:
            report.problems.append(f"{name}: no such variable in our {endpoint}")
        elif key in seen:
            report.problems.append(f"{name}: maps to {key} like {seen[key]}")
        else:
            seen[key] = name
            var = ours[key]
            if endpoint == "Logits" and num_classes is not None and shape[-1] != num_classes:
                report.problems.append(
                    f"{name}: checkpoint has {shape[-1]} classes, expected "
                    f"num_classes={num_classes}"
                )
            elif not _fits(shape, var.shape):
                report.problems.append(f"{name}: shape {list(shape)} but ours is {list(var.shape)}")
            else:
                pairs.append((name, var))
                report.loaded.append(name)
    report.problems += [f"{key}: missing from the checkpoint" for key in ours if key not in seen]
    if strict and report.problems:
        raise CheckpointMismatchError(
            f"{source} does not match InceptionI3D({model.first_endpoint}..{model.final_endpoint}, "
            f"width_multiplier={model.width_multiplier}): {len(report.problems)} problems:\n  "
            + "\n  ".join(report.problems)
        )
    return pairs, report


def _reader(path):
    try:
        return tf.train.load_checkpoint(path)
    except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError) as e:
        raise FileNotFoundError(
            f"{path}: not a readable TF checkpoint (expected {path}.index "
            f"and its data files): {str(e).splitlines()[0]}"
        ) from None


def load_kinetics_checkpoint(model, ckpt_path, num_classes=400, strict=True):
    """Assigns a kinetics-i3d (or our converted) checkpoint's values to `model`.

    Args:
      model: an InceptionI3D at width 1.0, any endpoint range; built here if needed. Variables
        of endpoints it does not build are skipped (Logits load only if the model has them).
      ckpt_path: checkpoint prefix (the path without `.index`).
      num_classes: 400 or 600 (Kinetics-400/600), checked against the checkpoint's Logits;
        None accepts any.
      strict: fail on any unmatched, misshapen or missing variable (see `match_checkpoint`).

    Returns:
      LoadReport.
    """
    reader = _reader(ckpt_path)
    shapes = sorted(reader.get_variable_to_shape_map().items())
    pairs, report = match_checkpoint(model, shapes, num_classes, strict, source=ckpt_path)
    for name, var in pairs:
        var.assign(np.reshape(reader.get_tensor(name), var.shape).astype(var.dtype))
    return report


def write_checkpoint(prefix, arrays):
    """Writes a name-based TF checkpoint {name: array} at `prefix` (readable by
    `tf.train.load_checkpoint` / `list_variables`, as a TF1 Saver's would be)."""
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    names = sorted(arrays)
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.convert_to_tensor(arrays[n]) for n in names],
    )
    return prefix


def detector_i3d_parts(detector) -> list:
    """The Inception-I3D pieces of an ActionDetector: its trunk and, for heads that run the
    Mixed_5 tail (`i3d`, `tx_i3d`), that tail; what `--init_checkpoint` loads and
    `export_saved_model.py --trunk_only` writes."""
    return [part for part in (detector.trunk, detector.head.tail) if part is not None]


def save_trunk(model, prefix):
    """Writes the weights of `model` (an InceptionI3D, or a list of them covering disjoint
    endpoint ranges, e.g. a trunk and its head tail) under their release names (no scope) at
    `prefix`."""
    models = model if isinstance(model, (list, tuple)) else [model]
    arrays = {}
    for part in models:
        ensure_built(part)
        arrays.update({k: v.numpy() for k, v in part.release_variables().items()})
    return write_checkpoint(prefix, arrays)


def restore_trunk(model, path, strict=True):
    """Loads weights written by `save_trunk` / `tools/convert_i3d_checkpoint.py` into `model`
    (any endpoint range they cover). Returns a LoadReport."""
    return load_kinetics_checkpoint(model, path, num_classes=None, strict=strict)
