"""Model and data flags shared by the tools, and the one place that maps them onto keyword
arguments of the library (`build_detector_from_flags`, `dataset_kwargs_from_flags`)."""

import json
import os
import sys

# Make `import action_tx` work from a plain checkout, and set TF's start-up options first.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import action_tx  # noqa: E402,F401  (sets TF_ENABLE_ONEDNN_OPTS before TensorFlow loads)

from absl import flags  # noqa: E402

FLAGS = flags.FLAGS

# --- model ---
flags.DEFINE_string(
    "trunk",
    "i3d_tiny",
    "Trunk preset: i3d (published Inception-I3D) or i3d_tiny (quarter width, for CPUs).",
)
flags.DEFINE_enum(
    "trunk_endpoint",
    "Mixed_4f",
    ["Mixed_4f", "Mixed_5c"],
    "Last trunk layer: Mixed_4f (Action Transformer) or Mixed_5c, the backbone's "
    "last stage at stride 16 (ACAR-Net, AIA).",
)
flags.DEFINE_float("width_multiplier", None, "Override the trunk preset's channel multiplier.")
flags.DEFINE_bool("freeze_bn", False, "Fix BatchNorm statistics (paper §3.5).")
flags.DEFINE_string("head", "i3d", "Head: a key of action_tx.heads.HEADS.")
flags.DEFINE_enum(
    "proposals",
    "rpn",
    ["rpn", "external", "gt"],
    "Person boxes: the RPN, the person-detection CSV, or ground truth.",
)
flags.DEFINE_list("anchor_sizes", ["32", "64", "128", "256"], "RPN anchor sizes, input pixels.")
flags.DEFINE_integer("rpn_filters", 512, "RPN 3x3 conv width.")
flags.DEFINE_integer("post_nms_top_k", 300, "R: proposals kept after NMS (paper: 300).")
flags.DEFINE_integer("num_roi_samples", 64, "Second-stage RoIs sampled per clip in training.")
flags.DEFINE_bool(
    "background_rois",
    None,
    "Train the second stage on background RoI samples "
    "too (Faster R-CNN); false: on labelled actor boxes only (ground truth and "
    "proposals matched to it). Default: the head's paper (false for acar).",
)
flags.DEFINE_bool("pose_softmax", False, "Softmax over the pose classes (ACAR-Net §4.1).")
flags.DEFINE_bool(
    "single_label_softmax",
    False,
    "One softmax over all classes: for data sets "
    "with one action per actor (UCF101-24, JHMDB-21); multi-label AVA keeps "
    "sigmoids.",
)
flags.DEFINE_float("focal_gamma", 0.0, "Focal loss exponent on sigmoid classes (HGRNN: 2).")
flags.DEFINE_float("head_dropout", None, "Dropout of the head (default: the head's own).")
flags.DEFINE_integer("tx_heads", 2, "Action Transformer: heads per layer.")
flags.DEFINE_integer("tx_layers", 3, "Action Transformer: layers.")
flags.DEFINE_integer("tx_hidden", 128, "Action Transformer: D.")
flags.DEFINE_enum("tx_query", "highres", ["highres", "lowres"], "Action Transformer QPr.")
flags.DEFINE_integer("max_detections", 100, "Detections kept per clip after NMS.")
flags.DEFINE_bool(
    "class_specific_nms",
    False,
    "NMS per action class on person score x action "
    "score (HGRNN §3.3) instead of class-agnostic NMS on the person score.",
)
flags.DEFINE_enum(
    "person_score",
    "geometric",
    ["geometric", "actor", "product", "proposal"],
    "Person score of a detection for heads with an actor (background) logit "
    "(i3d, tx, tx_i3d, stage, linear; action_transformer.txt §3): sqrt(a p) of "
    "its probability a and the RPN / external score p, a alone, a x p, or p "
    "alone. GT boxes keep score 1.",
)
# STAGE (stage_graph_attention.txt)
flags.DEFINE_integer("stage_heads", 4, "STAGE: graph attention heads per layer.")
flags.DEFINE_integer("stage_layers", 2, "STAGE: graph attention layers.")
flags.DEFINE_float("stage_dropout", 0.5, "STAGE: dropout of each layer.")
flags.DEFINE_integer(
    "stage_temporal_extent",
    1,
    "STAGE: clips on each side joined by temporal edges (0: no temporal edges).",
)
flags.DEFINE_bool("stage_proximity", True, "STAGE: exp(-distance) adjacency (false: all ones).")
flags.DEFINE_bool("stage_objects", True, "STAGE: object nodes in the graph.")
flags.DEFINE_enum(
    "stage_attention",
    "graph",
    ["graph", "transformer"],
    "STAGE: graph attention, or transformer attention (paper Table 5).",
)
# HGRNN (hgrnn_graph_rnn.txt)
flags.DEFINE_integer("hgrnn_window", 3, "HGRNN: l, keyframes on each side of the scene BiGRU.")
flags.DEFINE_integer("hgrnn_iterations", 2, "HGRNN: graph GRU iterations.")
flags.DEFINE_integer(
    "hgrnn_hidden", 256, "HGRNN: GRU hidden size (paper silent; its features are 256-d, §3.3)."
)
# ACAR-Net (acar_net.txt)
flags.DEFINE_integer("acar_blocks", 2, "ACAR: HR2O blocks.")
flags.DEFINE_integer("acar_dim", 512, "ACAR: HR2O width d.")
flags.DEFINE_enum(
    "acar_relation",
    "hr2o",
    ["hr2o", "rn"],
    "ACAR: high-order relation operator, or the Relation Network (eq. 3-4).",
)
flags.DEFINE_string(
    "acfb_bank_dir",
    None,
    "ACAR: Actor-Context Feature Bank of the training "
    "split (tools/extract_features.py --bank=acfb); none: no bank.",
)
flags.DEFINE_string("eval_acfb_bank_dir", None, "ACAR: the bank of the evaluation split.")
flags.DEFINE_integer(
    "acfb_window",
    10,
    "ACAR: w, bank keyframes on each side (eq. 5; paper §4.2: 2w + 1 = 21 s, w = 10).",
)
# AIA (aia_interaction_aggregation.txt)
flags.DEFINE_list(
    "aia_blocks",
    ["P", "O", "M", "P", "O", "M"],
    "AIA: interaction blocks in order (P person, O object, M memory).",
)
flags.DEFINE_enum(
    "aia_structure",
    "dense",
    ["parallel", "serial", "dense"],
    "AIA: how the blocks are aggregated (§3.3).",
)
flags.DEFINE_integer("aia_memory_window", 30, "AIA: L, memory keyframes on each side (0: none).")
flags.DEFINE_bool("aia_amu", True, "AIA: asynchronous memory update (Algorithm 1).")
flags.DEFINE_bool(
    "aia_temporal_position",
    True,
    "AIA: M-blocks add a learned embedding per "
    "memory offset to keys and values (the authors' release; the paper is silent).",
)
flags.DEFINE_enum(
    "aia_memory_dtype", "float32", ["float32", "float16"], "AIA: storage type of the memory table."
)
flags.DEFINE_float(
    "box_jitter",
    0.0,
    "Training jitter of the ground-truth boxes, as a "
    "fraction of the box size (data pipeline; 0: none). Off by default: of the "
    "papers only AIA jitters (§4.1), so only configs/ava_aia.flags sets it.",
)
flags.DEFINE_integer(
    "aia_memory_size",
    0,
    "AIA: rows of the memory tables, >= the keyframes of "
    "every split the model runs on; 0: the largest split in the manifests of "
    "the data flags given (set it when train and eval run apart).",
)
flags.DEFINE_integer("seed", 0, "Global seed (weights, samplers, input shuffling).")

# --- data ---
flags.DEFINE_string("label_map", None, "Label map (pbtxt or 'N: name' text).")
flags.DEFINE_integer("num_frames", 8, "T: frames per clip.")
flags.DEFINE_integer("frame_stride", 2, "s: stride between clip frames.")
flags.DEFINE_integer("image_size", 112, "Square input size in pixels.")
flags.DEFINE_integer("max_boxes", 16, "Ground-truth boxes per clip (padding).")
flags.DEFINE_integer("max_proposals", 32, "External person detections per clip (padding).")
flags.DEFINE_integer("max_objects", 16, "Object boxes per clip (padding).")
# --- feature mode (tools/extract_features.py writes the features) ---
flags.DEFINE_enum(
    "input",
    "frames",
    ["frames", "features"],
    "frames: end to end from TFRecords; features: a head on frozen trunk features.",
)
flags.DEFINE_string("feature_dir", None, "--input=features: training split's feature folder.")
flags.DEFINE_string("eval_feature_dir", None, "--input=features: evaluation split's features.")
flags.DEFINE_enum(
    "train_actors", "both", ["both", "gt", "detected"], "--input=features: actor boxes trained on."
)
flags.DEFINE_enum(
    "eval_actors",
    "detected",
    ["detected", "gt"],
    "--input=features: actor boxes scored (gt: the classification-only bound).",
)
flags.DEFINE_integer(
    "context_keyframes",
    0,
    "--input=features or --consecutive_keyframes: "
    "extra keyframes on each side of a batch (temporal context only: no loss, "
    "no detections).",
)
flags.DEFINE_bool(
    "consecutive_keyframes",
    False,
    "--input=frames: a batch is --batch_size "
    "consecutive keyframes (+ --context_keyframes each side), as feature batches, "
    "for heads with temporal parts (HGRNN's scene BiGRU, STAGE's temporal edges).",
)


def _head_options(head: str) -> dict:
    options = {}
    if FLAGS.head_dropout is not None:
        options["dropout"] = FLAGS.head_dropout
    if head in ("tx", "tx_i3d"):
        options.update(
            num_heads=FLAGS.tx_heads,
            num_layers=FLAGS.tx_layers,
            hidden_size=FLAGS.tx_hidden,
            query_mode=FLAGS.tx_query,
        )
    if head == "stage":
        options.update(
            num_heads=FLAGS.stage_heads,
            num_layers=FLAGS.stage_layers,
            dropout=FLAGS.stage_dropout if FLAGS.head_dropout is None else FLAGS.head_dropout,
            temporal_extent=FLAGS.stage_temporal_extent,
            use_proximity=FLAGS.stage_proximity,
            use_objects=FLAGS.stage_objects,
            attention=FLAGS.stage_attention,
        )
    if head == "hgrnn":
        options.update(
            window=FLAGS.hgrnn_window,
            iterations=FLAGS.hgrnn_iterations,
            hidden_size=FLAGS.hgrnn_hidden,
        )
    if head == "acar":
        options.update(
            num_blocks=FLAGS.acar_blocks,
            hidden_size=FLAGS.acar_dim,
            relation=FLAGS.acar_relation,
            bank_window=FLAGS.acfb_window,
            use_bank=bool(FLAGS.acfb_bank_dir or FLAGS.eval_acfb_bank_dir),
        )
    if head == "aia":
        options.update(
            blocks=list(FLAGS.aia_blocks),
            structure=FLAGS.aia_structure,
            memory_window=FLAGS.aia_memory_window,
            use_amu=FLAGS.aia_amu,
            memory_dtype=FLAGS.aia_memory_dtype,
            memory_size=aia_memory_size(),
            temporal_position=FLAGS.aia_temporal_position,
        )
    return options


def aia_memory_size() -> int:
    """--aia_memory_size, or the most keyframes of any split whose data flag is given (the
    converter's / extract_features' manifests); 0 when the memory is unused or none is found."""
    if FLAGS.aia_memory_size or "M" not in FLAGS.aia_blocks or FLAGS.aia_memory_window <= 0:
        return FLAGS.aia_memory_size
    from action_tx import eval_lib
    from action_tx.data import features

    counts = [0]
    for name in ("train_tfrecords", "eval_tfrecords"):
        if name in FLAGS and FLAGS[name].value:
            counts.append(eval_lib.count_keyframes(FLAGS[name].value) or 0)
    for name in ("feature_dir", "eval_feature_dir"):
        folder = FLAGS[name].value
        if folder and os.path.isfile(os.path.join(folder, features.MANIFEST)):
            counts.append(features.count_target_keyframes(folder))
    if max(counts) == 0:
        raise ValueError(
            "--head=aia: no manifest gives the keyframe count of the data; set --aia_memory_size"
        )
    return max(counts)


def exit_on_missing_flagfile(argv) -> None:
    """Exits with status 2 and one line when a `--flagfile=F` of `argv` does not exist (absl's
    own message for it is a multi-line usage dump). Tools call it before `app.run`."""
    for arg in argv[1:]:
        if arg.startswith("--flagfile=") and not os.path.isfile(arg.split("=", 1)[1]):
            print(f"error: --flagfile: no such file: {arg.split('=', 1)[1]}", file=sys.stderr)
            sys.exit(2)


def pose_indices(label_map):
    """Contiguous indices of the label map's pose classes (AVA ids 1-14)."""
    return [i for i, c in enumerate(label_map.ids) if c in label_map.categories().get("pose", [])]


def softmax_indices(label_map):
    """The classes under one softmax (the models' `pose_indices`): all of them with
    --single_label_softmax, AVA's poses with --pose_softmax, else None (sigmoids only)."""
    if FLAGS.single_label_softmax and FLAGS.pose_softmax:
        raise ValueError("--single_label_softmax and --pose_softmax exclude each other")
    if FLAGS.single_label_softmax:
        return list(range(label_map.num_classes))
    return pose_indices(label_map) if FLAGS.pose_softmax else None


def _with_banks(model):
    """`model` with ACAR's feature banks (--acfb_bank_dir, --eval_acfb_bank_dir) read from their
    folders and given to its head."""
    if FLAGS.acfb_bank_dir or FLAGS.eval_acfb_bank_dir:
        from action_tx.acfb import attach_banks

        attach_banks(model.head, FLAGS.acfb_bank_dir, FLAGS.eval_acfb_bank_dir)
    return model


def build_detector_from_flags(label_map):
    """The ActionDetector the flags describe, for `label_map` (an action_tx.data.ava.LabelMap)."""
    from action_tx.model_builder import build_detector

    return _with_banks(
        build_detector(
            num_classes=label_map.num_classes,
            trunk=FLAGS.trunk,
            width_multiplier=FLAGS.width_multiplier,
            freeze_bn=FLAGS.freeze_bn,
            trunk_endpoint=FLAGS.trunk_endpoint,
            head=FLAGS.head,
            head_options=_head_options(FLAGS.head),
            proposals=FLAGS.proposals,
            anchor_sizes=[float(s) for s in FLAGS.anchor_sizes],
            rpn_filters=FLAGS.rpn_filters,
            post_nms_top_k=FLAGS.post_nms_top_k,
            num_roi_samples=FLAGS.num_roi_samples,
            pose_indices=softmax_indices(label_map),
            focal_gamma=FLAGS.focal_gamma,
            max_detections=FLAGS.max_detections,
            class_specific_nms=FLAGS.class_specific_nms,
            person_score=FLAGS.person_score,
            background_rois=FLAGS.background_rois,
            seed=FLAGS.seed,
        )
    )


def build_model_from_flags(label_map):
    """The model the flags describe: the ActionDetector (`--input=frames`) or, for
    `--input=features`, a FeatureActionModel with the same head on stored features."""
    if FLAGS.input != "features":
        return build_detector_from_flags(label_map)
    from action_tx.feature_model import FeatureActionModel
    from action_tx.heads import HEADS

    if FLAGS.head not in HEADS:
        raise ValueError(f"unknown --head={FLAGS.head}; available heads: {sorted(HEADS)}")
    options = {"class_specific_nms": True} if FLAGS.class_specific_nms else {}
    if FLAGS.eval_actors == "gt":
        options["nms"] = False  # ground-truth boxes keep one row each (issue 27)
    return _with_banks(
        FeatureActionModel(
            head=HEADS[FLAGS.head](num_classes=label_map.num_classes, **_head_options(FLAGS.head)),
            num_classes=label_map.num_classes,
            pose_indices=softmax_indices(label_map),
            focal_gamma=FLAGS.focal_gamma,
            max_detections=FLAGS.max_detections,
            **options,
        )
    )


def feature_dataset_from_flags(label_map, training: bool, batch_size: int):
    """`action_tx.data.features.build_feature_dataset` of --feature_dir (training) or
    --eval_feature_dir (evaluation). Raises ValueError when that flag is not set."""
    from action_tx.data.features import build_feature_dataset

    name = "feature_dir" if training else "eval_feature_dir"
    directory = getattr(FLAGS, name)
    if not directory:
        raise ValueError(f"--input=features needs --{name}")
    return build_feature_dataset(
        directory,
        num_classes=label_map.num_classes,
        batch_size=batch_size,
        training=training,
        seed=FLAGS.seed,
        actors=FLAGS.train_actors if training else FLAGS.eval_actors,
        context=FLAGS.context_keyframes,
        max_objects=FLAGS.max_objects,
    )


def dataset_kwargs_from_flags(label_map, training: bool) -> dict:
    """Keyword arguments of `action_tx.data.pipeline.build_dataset` (without file pattern and
    batch size)."""
    return dict(
        num_classes=label_map.num_classes,
        num_frames=FLAGS.num_frames,
        frame_stride=FLAGS.frame_stride,
        image_size=FLAGS.image_size,
        training=training,
        seed=FLAGS.seed,
        max_boxes=FLAGS.max_boxes,
        max_proposals=FLAGS.max_proposals,
        max_objects=FLAGS.max_objects,
        box_jitter=FLAGS.box_jitter,
        consecutive=FLAGS.consecutive_keyframes,
        context=FLAGS.context_keyframes if FLAGS.consecutive_keyframes else 0,
    )


def apply_model_flags_json(model_dir: str) -> dict:
    """Sets the model/data flags not given on the command line (or in a flagfile) from
    `model_dir/model_flags.json`, which the trainer writes (a JSON object flag name -> value).

    Returns the JSON object ({} when the file is absent). Raises ValueError, naming the file,
    when it is not such an object or holds a value a flag rejects.
    """
    path = os.path.join(model_dir, "model_flags.json")
    if not os.path.isfile(path):
        return {}
    try:
        with open(path) as f:
            values = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a JSON object of flag values ({e})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: not a JSON object of flag values")
    if isinstance(values.get("flags"), dict):  # also {"flags": {...}}
        values = values["flags"]
    known = {f.name for f in FLAGS.get_flags_for_module(__name__)}
    for name, value in values.items():
        if name not in known or FLAGS[name].present:
            continue  # not a model flag, or set on the command line (which wins)
        try:
            if value is None:
                FLAGS[name].value = None
            else:
                FLAGS[name].parse(value)
                FLAGS[name].present = 0
        except (flags.Error, ValueError, TypeError) as e:
            raise ValueError(f"{path}: flag {name}={value!r}: {e}") from None
    print(f"model flags from {path}", file=sys.stderr)
    return values
