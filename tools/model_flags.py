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
flags.DEFINE_string("trunk", "i3d_tiny", "Trunk preset: i3d (published Inception-I3D) or "
                    "i3d_tiny (quarter width, for CPUs).")
flags.DEFINE_float("width_multiplier", None, "Override the trunk preset's channel multiplier.")
flags.DEFINE_bool("freeze_bn", False, "Fix BatchNorm statistics (paper §3.5).")
flags.DEFINE_string("head", "i3d", "Head: a key of action_tx.heads.HEADS.")
flags.DEFINE_enum("proposals", "rpn", ["rpn", "external", "gt"],
                  "Person boxes: the RPN, the person-detection CSV, or ground truth.")
flags.DEFINE_list("anchor_sizes", ["32", "64", "128", "256"], "RPN anchor sizes, input pixels.")
flags.DEFINE_integer("rpn_filters", 512, "RPN 3x3 conv width.")
flags.DEFINE_integer("post_nms_top_k", 300, "R: proposals kept after NMS (paper: 300).")
flags.DEFINE_integer("num_roi_samples", 64, "Second-stage RoIs sampled per clip in training.")
flags.DEFINE_bool("pose_softmax", False, "Softmax over the pose classes (ACAR-Net §4.1).")
flags.DEFINE_float("focal_gamma", 0.0, "Focal loss exponent on sigmoid classes (HGRNN: 2).")
flags.DEFINE_float("head_dropout", None, "Dropout of the head (default: the head's own).")
flags.DEFINE_integer("tx_heads", 2, "Action Transformer: heads per layer.")
flags.DEFINE_integer("tx_layers", 3, "Action Transformer: layers.")
flags.DEFINE_integer("tx_hidden", 128, "Action Transformer: D.")
flags.DEFINE_enum("tx_query", "highres", ["highres", "lowres"], "Action Transformer QPr.")
flags.DEFINE_integer("max_detections", 100, "Detections kept per clip after NMS.")
flags.DEFINE_integer("seed", 0, "Global seed (weights, samplers, input shuffling).")

# --- data ---
flags.DEFINE_string("label_map", None, "Label map (pbtxt or 'N: name' text).")
flags.DEFINE_integer("num_frames", 8, "T: frames per clip.")
flags.DEFINE_integer("frame_stride", 2, "s: stride between clip frames.")
flags.DEFINE_integer("image_size", 112, "Square input size in pixels.")
flags.DEFINE_integer("max_boxes", 16, "Ground-truth boxes per clip (padding).")
flags.DEFINE_integer("max_proposals", 32, "External person detections per clip (padding).")
flags.DEFINE_integer("max_objects", 16, "Object boxes per clip (padding).")


def _head_options(head: str) -> dict:
    options = {}
    if FLAGS.head_dropout is not None:
        options["dropout"] = FLAGS.head_dropout
    if head in ("tx", "tx_i3d"):
        options.update(num_heads=FLAGS.tx_heads, num_layers=FLAGS.tx_layers,
                       hidden_size=FLAGS.tx_hidden, query_mode=FLAGS.tx_query)
    return options


def pose_indices(label_map):
    """Contiguous indices of the label map's pose classes (AVA ids 1-14)."""
    return [i for i, c in enumerate(label_map.ids) if c in label_map.categories().get("pose", [])]


def build_detector_from_flags(label_map):
    """The ActionDetector the flags describe, for `label_map` (an action_tx.data.ava.LabelMap)."""
    from action_tx.model_builder import build_detector
    return build_detector(
        num_classes=label_map.num_classes, trunk=FLAGS.trunk,
        width_multiplier=FLAGS.width_multiplier, freeze_bn=FLAGS.freeze_bn, head=FLAGS.head,
        head_options=_head_options(FLAGS.head), proposals=FLAGS.proposals,
        anchor_sizes=[float(s) for s in FLAGS.anchor_sizes], rpn_filters=FLAGS.rpn_filters,
        post_nms_top_k=FLAGS.post_nms_top_k, num_roi_samples=FLAGS.num_roi_samples,
        pose_indices=pose_indices(label_map) if FLAGS.pose_softmax else None,
        focal_gamma=FLAGS.focal_gamma, max_detections=FLAGS.max_detections, seed=FLAGS.seed)


def dataset_kwargs_from_flags(label_map, training: bool) -> dict:
    """Keyword arguments of `action_tx.data.pipeline.build_dataset` (without file pattern and
    batch size)."""
    return dict(num_classes=label_map.num_classes, num_frames=FLAGS.num_frames,
                frame_stride=FLAGS.frame_stride, image_size=FLAGS.image_size,
                training=training, seed=FLAGS.seed, max_boxes=FLAGS.max_boxes,
                max_proposals=FLAGS.max_proposals, max_objects=FLAGS.max_objects)


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
    if isinstance(values.get("flags"), dict):   # also {"flags": {...}}
        values = values["flags"]
    known = {f.name for f in FLAGS.get_flags_for_module(__name__)}
    for name, value in values.items():
        if name not in known or FLAGS[name].present:
            continue    # not a model flag, or set on the command line (which wins)
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
