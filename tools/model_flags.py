"""Model and data flags shared by the tools, and the one place that maps flags onto the
library's `ExperimentConfig` (`experiment_config`).

Defaults live in the config classes (`action_tx/config.py`, and each head's config in its own
module): the section flags take theirs from there, and a head's own flags (`--tx_*`,
`--stage_*`, ...) default to None, i.e. the head config's default (the paper's). Every other
flag named like a config field (the trainer's, the evaluator's) is mapped by its name.
"""

import dataclasses
import json
import os
import sys

import cli  # first: TF's log level and start-up options, before TensorFlow loads
from absl import flags

from action_tx import config as C

FLAGS = flags.FLAGS


def config_default(section, name):
    return {f.name: f.default for f in dataclasses.fields(section)}[name]


M, D = C.ModelConfig, C.DataConfig
# --- model ---
flags.DEFINE_string(
    "trunk",
    config_default(M, "trunk"),
    "Trunk preset: i3d (published Inception-I3D) or i3d_tiny (quarter width, for CPUs).",
)
flags.DEFINE_enum(
    "trunk_endpoint",
    config_default(M, "trunk_endpoint"),
    list(C.TRUNK_ENDPOINTS),
    "Last trunk layer: Mixed_4f (Action Transformer) or Mixed_5c, the backbone's last stage "
    "at stride 16 (ACAR-Net, AIA).",
)
flags.DEFINE_float("width_multiplier", None, "Override the trunk preset's channel multiplier.")
flags.DEFINE_bool(
    "freeze_bn", config_default(M, "freeze_bn"), "Fix BatchNorm statistics (paper §3.5)."
)
flags.DEFINE_string("head", config_default(M, "head"), "Head: a key of action_tx.heads.HEADS.")
flags.DEFINE_enum(
    "proposals",
    config_default(M, "proposals"),
    list(C.PROPOSALS),
    "Person boxes: the RPN, the person-detection CSV, or ground truth.",
)
flags.DEFINE_list(
    "anchor_sizes",
    [f"{s:g}" for s in config_default(M, "anchor_sizes")],
    "RPN anchor sizes, input pixels.",
)
flags.DEFINE_integer("rpn_filters", config_default(M, "rpn_filters"), "RPN 3x3 conv width.")
flags.DEFINE_integer(
    "post_nms_top_k",
    config_default(M, "post_nms_top_k"),
    "R: proposals kept after NMS (paper: 300).",
)
flags.DEFINE_integer(
    "num_roi_samples",
    config_default(M, "num_roi_samples"),
    "Second-stage RoIs sampled per clip in training.",
)
flags.DEFINE_bool(
    "pose_softmax",
    config_default(M, "pose_softmax"),
    "Softmax over the pose classes (ACAR-Net §4.1).",
)
flags.DEFINE_bool(
    "background_rois",
    None,
    "Train the second stage on background RoI samples too (Faster R-CNN); false: on labelled "
    "actor boxes only (ground truth and proposals matched to it). Default: the head's paper "
    "(false for acar).",
)
flags.DEFINE_bool(
    "single_label_softmax",
    config_default(M, "single_label_softmax"),
    "One softmax over all classes: for data sets with one action per actor (UCF101-24, "
    "JHMDB-21); multi-label AVA keeps sigmoids.",
)
flags.DEFINE_enum(
    "person_score",
    config_default(M, "person_score"),
    list(C.PERSON_SCORES),
    "Person score of a detection for heads with an actor (background) logit (i3d, tx, tx_i3d, "
    "stage, linear; action_transformer.txt §3): sqrt(a p) of its probability a and the RPN / "
    "external score p, a alone, a x p, or p alone. GT boxes keep score 1.",
)
flags.DEFINE_float(
    "focal_gamma",
    config_default(M, "focal_gamma"),
    "Focal loss exponent on sigmoid classes (HGRNN: 2).",
)
flags.DEFINE_integer(
    "max_detections", config_default(M, "max_detections"), "Detections kept per clip after NMS."
)
flags.DEFINE_bool(
    "class_specific_nms",
    config_default(M, "class_specific_nms"),
    "NMS per action "
    "class on person score x action score (HGRNN §3.3) instead of "
    "class-agnostic NMS on the person score.",
)
flags.DEFINE_integer(
    "seed", config_default(M, "seed"), "Global seed (weights, samplers, input shuffling)."
)
# --- head options: None = the head config's default (its paper's), see action_tx/heads/ ---
flags.DEFINE_float("head_dropout", None, "Dropout of the head (default: the head's own).")
flags.DEFINE_integer("tx_heads", None, "Action Transformer: heads per layer (paper: 2).")
flags.DEFINE_integer("tx_layers", None, "Action Transformer: layers (paper: 3).")
flags.DEFINE_integer("tx_hidden", None, "Action Transformer: D (paper: 128).")
flags.DEFINE_enum(
    "tx_query", None, ["highres", "lowres"], "Action Transformer QPr (paper's best: highres)."
)
flags.DEFINE_integer("stage_heads", None, "STAGE: graph attention heads per layer (4).")
flags.DEFINE_integer("stage_layers", None, "STAGE: graph attention layers (2).")
flags.DEFINE_float("stage_dropout", None, "STAGE: dropout of each layer (0.5).")
flags.DEFINE_integer(
    "stage_temporal_extent",
    None,
    "STAGE: clips on each side joined by temporal edges (1; 0: no temporal edges).",
)
flags.DEFINE_bool(
    "stage_proximity", None, "STAGE: exp(-distance) adjacency (default true; false: all ones)."
)
flags.DEFINE_bool("stage_objects", None, "STAGE: object nodes in the graph (default true).")
flags.DEFINE_enum(
    "stage_attention",
    None,
    ["graph", "transformer"],
    "STAGE: graph attention (default), or transformer attention (Table 5).",
)
flags.DEFINE_integer(
    "hgrnn_window", None, "HGRNN: l, keyframes on each side of the scene BiGRU (3)."
)
flags.DEFINE_integer("hgrnn_iterations", None, "HGRNN: graph GRU iterations (2).")
flags.DEFINE_integer(
    "hgrnn_hidden",
    None,
    "HGRNN: GRU hidden size (256; paper silent, its features are 256-d, §3.3).",
)
flags.DEFINE_integer("acar_blocks", None, "ACAR: HR2O blocks (2).")
flags.DEFINE_integer("acar_dim", None, "ACAR: HR2O width d (512).")
flags.DEFINE_enum(
    "acar_relation",
    None,
    ["hr2o", "rn"],
    "ACAR: high-order relation operator (default hr2o), or the Relation Network (eq. 3-4).",
)
flags.DEFINE_string(
    "acfb_bank_dir",
    None,
    "ACAR: Actor-Context Feature Bank of the training "
    "split (tools/extract_features.py --bank=acfb); none: no bank.",
)
flags.DEFINE_string("eval_acfb_bank_dir", None, "ACAR: the bank of the evaluation split.")
flags.DEFINE_integer(
    "acfb_window", None, "ACAR: w, bank keyframes on each side (eq. 5; paper §4.2: 10)."
)
flags.DEFINE_list(
    "aia_blocks",
    None,
    "AIA: interaction blocks in order (P person, O object, M memory; default P,O,M,P,O,M).",
)
flags.DEFINE_enum(
    "aia_structure",
    None,
    ["parallel", "serial", "dense"],
    "AIA: how the blocks are aggregated (§3.3; default dense).",
)
flags.DEFINE_integer(
    "aia_memory_window", None, "AIA: L, memory keyframes on each side (30; 0: none)."
)
flags.DEFINE_bool("aia_amu", None, "AIA: asynchronous memory update (Algorithm 1; default true).")
flags.DEFINE_bool(
    "aia_temporal_position",
    None,
    "AIA: M-blocks add a learned embedding per "
    "memory offset to keys and values (default true: the authors' release; the "
    "paper is silent).",
)
flags.DEFINE_enum(
    "aia_memory_dtype",
    None,
    ["float32", "float16"],
    "AIA: storage type of the memory table (default float32).",
)
flags.DEFINE_integer(
    "aia_memory_size",
    None,
    "AIA: rows of the memory tables, >= the "
    "keyframes of every split the model runs on; 0 or unset: the largest "
    "split in the manifests of the data flags given (set it when train and "
    "eval run apart).",
)
# --- data ---
flags.DEFINE_string("label_map", None, "Label map (pbtxt or 'N: name' text).")
flags.DEFINE_integer("num_frames", config_default(D, "num_frames"), "T: frames per clip.")
flags.DEFINE_integer(
    "frame_stride", config_default(D, "frame_stride"), "s: stride between clip frames."
)
flags.DEFINE_integer("image_size", config_default(D, "image_size"), "Square input size in pixels.")
flags.DEFINE_integer(
    "max_boxes", config_default(D, "max_boxes"), "Ground-truth boxes per clip (padding)."
)
flags.DEFINE_integer(
    "max_proposals",
    config_default(D, "max_proposals"),
    "External person detections per clip (padding).",
)
flags.DEFINE_integer(
    "max_objects", config_default(D, "max_objects"), "Object boxes per clip (padding)."
)
flags.DEFINE_float(
    "box_jitter",
    config_default(D, "box_jitter"),
    "Training jitter of the "
    "ground-truth boxes (AIA §4.1), as a fraction of the box size (0: none).",
)
# --- feature mode (tools/extract_features.py writes the features) ---
flags.DEFINE_enum(
    "input",
    config_default(D, "input"),
    list(C.INPUTS),
    "frames: end to end from TFRecords; features: a head on frozen trunk features.",
)
flags.DEFINE_string("feature_dir", None, "--input=features: training split's feature folder.")
flags.DEFINE_string("eval_feature_dir", None, "--input=features: evaluation split's features.")
flags.DEFINE_enum(
    "train_actors",
    config_default(D, "train_actors"),
    ["both", "gt", "detected"],
    "--input=features: actor boxes trained on.",
)
flags.DEFINE_enum(
    "eval_actors",
    config_default(D, "eval_actors"),
    ["detected", "gt"],
    "--input=features: actor boxes scored (gt: the classification-only bound).",
)
flags.DEFINE_integer(
    "context_keyframes",
    config_default(D, "context_keyframes"),
    "--input=features or --consecutive_keyframes: extra keyframes on each side of a batch "
    "(temporal context only: no loss, no detections).",
)
flags.DEFINE_bool(
    "consecutive_keyframes",
    config_default(D, "consecutive_keyframes"),
    "--input=frames: a batch is --batch_size consecutive keyframes (+ --context_keyframes each "
    "side), as feature batches, for heads with temporal parts (HGRNN's scene BiGRU, STAGE's "
    "temporal edges).",
)

# Config fields whose flag is named otherwise (first defined flag wins).
_RENAMED = {
    ("eval", "groundtruth"): ("eval_groundtruth", "groundtruth"),
    ("eval", "batch_size"): ("eval_batch_size",),
}
_SECTIONS = (
    ("model", C.ModelConfig),
    ("data", C.DataConfig),
    ("train", C.TrainConfig),
    ("eval", C.EvalConfig),
)
_UNSET = object()


def _from_flags(base):
    """The getter of `experiment_config`: a defined flag's value; with a `base` config, only
    flags given on the command line or in a flagfile count."""

    def value(name):
        if name not in FLAGS or (base is not None and not FLAGS[name].present):
            return _UNSET
        return FLAGS[name].value

    return value


def experiment_config(base=None, value=None, resolve: bool = True) -> "C.ExperimentConfig":
    """THE mapping from flags to the library's config.

    Args:
      base: an `ExperimentConfig` (a model_dir's config.json): its values, except where a flag
        is given on the command line or in a flagfile. None: every flag's value.
      value: instead of the flags, a getter flag name -> value (e.g. a legacy
        model_flags.json); return `_UNSET` for an absent one.
      resolve: size the head for the data (`tasks.resolve_keyframe_counts`, AIA's memory).
    Raises ConfigError (a ValueError) for a config that does not validate.
    """
    from action_tx.heads import HEADS

    custom, value = value, value or _from_flags(base)
    sections = {}
    for name, section in _SECTIONS:
        # A trained model's model and data; this run's own train and eval settings.
        old = getattr(base, name) if base is not None and name in ("model", "data") else None
        fields = {}
        for f in dataclasses.fields(section):
            if f.name == "head_options":
                continue
            got = next(
                (
                    v
                    for v in (value(n) for n in _RENAMED.get((name, f.name), (f.name,)))
                    if v is not _UNSET
                ),
                _UNSET,
            )
            if got is not _UNSET:
                fields[f.name] = got
            elif old is not None:
                fields[f.name] = getattr(old, f.name)
        sections[name] = fields
    head = sections["model"].get("head", C.ModelConfig.head)
    if head not in HEADS:
        raise C.ConfigError(f"unknown --head={head}; available heads: {', '.join(sorted(HEADS))}")
    config_class = HEADS[head][1]
    if custom is None:  # flags given for another head are a mistake, not a no-op
        foreign = sorted(
            {f for _, cls in HEADS.values() for f in cls.flag_names} - set(config_class.flag_names)
        )
        foreign = [f for f in foreign if FLAGS[f].present and FLAGS[f].value is not None]
        if foreign:
            raise C.ConfigError(
                f"{', '.join('--' + f for f in foreign)}: not an option of --head={head} "
                f"(its own: {', '.join('--' + f for f in config_class.flag_names) or 'none'})"
            )
    same = base is not None and base.model.head == head
    options = dataclasses.asdict(base.model.head_options) if same else {}
    for flag, field in config_class.flag_names.items():
        got = value(flag)
        if got is not _UNSET and got is not None:
            options[field] = got
    dropout = value("head_dropout")
    if dropout is not _UNSET and dropout is not None:
        options["dropout"] = dropout
    model = C.ModelConfig(**dict(sections["model"], head_options=config_class(**options)))
    data = C.DataConfig(**sections["data"])
    if resolve:
        from action_tx.tasks import resolve_keyframe_counts

        model = resolve_keyframe_counts(model, data)
    return C.ExperimentConfig(
        model=model,
        data=data,
        train=C.TrainConfig(**sections["train"]),
        eval=C.EvalConfig(**sections["eval"]),
    )


def legacy_config(values: dict, resolve: bool = False) -> "C.ExperimentConfig":
    """The config of a legacy `model_flags.json` object (flag name -> value, written by the
    trainer before config.json): its values over the flags' defaults."""
    if isinstance(values.get("flags"), dict):  # also {"flags": {...}}
        values = values["flags"]
    parsed = {}
    for name, raw in values.items():
        if name not in FLAGS or raw is None:
            parsed[name] = raw
            continue
        try:  # the flag's own parser: the file holds flag values
            parsed[name] = FLAGS[name].parser.parse(raw)
        except (flags.Error, ValueError, TypeError) as e:
            raise C.ConfigError(f"flag {name}={raw!r}: {e}") from None

    def value(name):
        if name in parsed:
            return parsed[name]
        return FLAGS[name].default if name in FLAGS else _UNSET

    return experiment_config(value=value, resolve=resolve)


def model_dir_config(model_dir: str):
    """`model_dir`'s config: config.json, else a legacy model_flags.json (read as flags);
    None when it has neither. Prints which file it read. Raises ConfigError naming the file
    when it cannot be read."""
    config = C.load(model_dir)
    path = os.path.join(model_dir, C.CONFIG_FILE)
    if config is None:
        path = os.path.join(model_dir, C.LEGACY_CONFIG_FILE)
        if not os.path.isfile(path):
            return None
        try:
            with open(path) as f:
                values = json.load(f)
            if not isinstance(values, dict):
                raise ValueError("not an object")
            config = legacy_config(values)
        except C.ConfigError as e:
            raise C.ConfigError(f"{path}: {e}") from None
        except (OSError, ValueError, TypeError) as e:
            raise C.ConfigError(f"{path}: not a JSON object of flag values ({e})") from None
    print(f"model config from {path}", file=sys.stderr)
    return config


def config_for_model_dir(model_dir: str, flags_win: bool = True):
    """The config a tool runs a trained model with: with a --flagfile, the flags alone (as
    written); else `model_dir`'s config (`model_dir_config`) with the flags given on the
    command line over it (`flags_win`; False: the model_dir's values win over a flagfile's)."""
    saved = model_dir_config(model_dir) if model_dir else None
    if saved is None:
        return experiment_config()
    if cli.flagfile_given() and flags_win:
        return experiment_config()
    if not flags_win:
        return saved
    return experiment_config(base=saved)
