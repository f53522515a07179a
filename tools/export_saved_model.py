r"""Exports a trained detector as a SavedModel that runs on raw uint8 video clips.

    python tools/export_saved_model.py --flagfile=configs/X.flags --checkpoint_dir=MODEL_DIR \
        --output_dir=EXPORT_DIR [--label_map=...] [--fps=30]
    python tools/export_saved_model.py --model_dir=MODEL_DIR --output_dir=EXPORT_DIR
    python tools/export_saved_model.py --model_dir=MODEL_DIR --output_dir=DIR --trunk_only

Model and data flags come from `--flagfile` or, without one, from the trainer's
`model_dir/config.json` (or `model_flags.json` of older runs; flags on the command line win).
The weights are those of the latest checkpoint of `--checkpoint_dir` (default `--model_dir`) or
of `--checkpoint_path`; a damaged latest one is named in a warning line and the one before it
is used (as the trainer resumes). A `--model_dir` without config.json (or model_flags.json) or
checkpoints is refused: it holds no trained model.
The SavedModel's signatures are described in `action_tx/export.py`; load it with plain
`tf.saved_model.load(EXPORT_DIR)` and run it with `tools/detect.py`.

`--trunk_only` writes no SavedModel but the detector's Inception-I3D weights (the trunk, and the
`i3d` head's Mixed_5 tail when it has one) under the release's names at `DIR/i3d_trunk`, the
format of `tools/convert_i3d_checkpoint.py`: `tools/train.py --init_checkpoint=DIR/i3d_trunk`
then fine-tunes any head from this trained trunk.

SavedModels and checkpoints are programs: load only ones you trust.

Exit status 2 with a one-line message on bad input.
"""

import json
import os
import sys

import cli  # first: TF's log level and start-up options
import model_flags  # model/data flags
from action_tx import config as C
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Trainer directory (ckpt-N files, config.json).")
flags.DEFINE_string(
    "checkpoint_dir", None, "Directory whose latest checkpoint is exported (default --model_dir)."
)
flags.DEFINE_string(
    "checkpoint_path",
    None,
    "A checkpoint prefix (e.g. MODEL_DIR/ckpt-1000); overrides --checkpoint_dir.",
)
flags.DEFINE_string(
    "output_dir",
    None,
    "Where to write the SavedModel, or with --trunk_only "
    "the I3D weights (must not exist or be empty).",
)
flags.DEFINE_float(
    "fps",
    None,
    "Frame rate of the training videos, in which --frame_stride "
    "counts frames (default: AVA's 30, or the 'fps' of an older run's "
    "model_flags.json).",
)
flags.DEFINE_enum(
    "precision",
    model_flags.config_default(C.EvalConfig, "precision"),
    list(C.PRECISIONS),
    "Keras dtype policy the SavedModel computes in; its inputs and outputs stay "
    "uint8/float32 (any of them reads any checkpoint: variables are float32 in "
    "all three).",
)
flags.DEFINE_bool(
    "trunk_only",
    False,
    "Write only the Inception-I3D weights (trunk and any "
    "I3D head tail), as OUTPUT_DIR/i3d_trunk for tools/train.py --init_checkpoint, "
    "instead of a SavedModel.",
)

InputError = cli.CliError  # bad flags or files: one line, exit status 2


def _legacy_fps(model_dir) -> float:
    """The 'fps' a legacy model_flags.json may hold (written by hand), else AVA's 30."""
    path = os.path.join(model_dir or "", "model_flags.json")
    if model_dir and os.path.isfile(path):
        try:
            with open(path) as f:
                return float(json.load(f).get("fps") or 30.0)
        except (OSError, ValueError, TypeError, AttributeError):
            pass
    return 30.0


def _checkpoint_paths():
    """The checkpoint prefixes to try, oldest first: --checkpoint_path alone, or those of the
    directory (its state file's list; its ckpt-N.index files when that file is lost)."""
    if FLAGS.checkpoint_path:
        if not os.path.isfile(FLAGS.checkpoint_path + ".index"):
            raise InputError(
                f"--checkpoint_path: no checkpoint at {FLAGS.checkpoint_path} "
                f"({FLAGS.checkpoint_path}.index is missing)"
            )
        return [FLAGS.checkpoint_path]
    directory = FLAGS.checkpoint_dir or FLAGS.model_dir
    if not directory:
        raise InputError("give --checkpoint_dir, --checkpoint_path or --model_dir")
    if not os.path.isdir(directory):
        raise InputError(f"--checkpoint_dir: no such directory: {directory}")
    from action_tx import checkpointing

    paths = [
        p
        for p in checkpointing.find_checkpoints(directory, log=_warn)
        if os.path.isfile(p + ".index")
    ]
    if not paths:
        raise InputError(
            f"{directory}: no checkpoint (no 'checkpoint' file naming an existing "
            "ckpt-N, no ckpt-N.index file)"
        )
    return paths


def _warn(message):
    print(f"export_saved_model.py: warning: {message}", file=sys.stderr, flush=True)


def _dummy_batch(tf, label_map, data):
    """One example of every batch key the detector may read, to create its variables."""
    size, c = data.image_size, label_map.num_classes
    return {
        "clip": tf.zeros([1, data.num_frames, size, size, 3]),
        "boxes": tf.constant([[[0.1, 0.1, 0.9, 0.9]]]),
        "box_mask": tf.ones([1, 1], tf.bool),
        "labels": tf.zeros([1, 1, c]),
        "person_ids": tf.zeros([1, 1], tf.int32),
        "proposals": tf.constant([[[0.1, 0.1, 0.9, 0.9]]]),
        "proposal_scores": tf.ones([1, 1]),
        "proposal_mask": tf.ones([1, 1], tf.bool),
        "objects": tf.constant([[[0.1, 0.1, 0.5, 0.5]]]),
        "object_scores": tf.ones([1, 1]),
        "object_classes": tf.ones([1, 1], tf.int32),
        "object_mask": tf.ones([1, 1], tf.bool),
        "video_index": tf.zeros([1], tf.int32),
        "timestamp": tf.zeros([1], tf.int32),
        "keyframe_index": tf.zeros([1], tf.int32),
    }


def _write_i3d_weights(detector):
    """The trunk's (and any I3D tail's) weights under release names: a checkpoint that
    `tools/train.py --init_checkpoint` loads like a converted Kinetics one."""
    from action_tx.trunks.i3d_checkpoint import detector_i3d_parts, save_trunk

    parts = detector_i3d_parts(detector)
    prefix = save_trunk(parts, os.path.join(FLAGS.output_dir, "i3d_trunk"))
    count = sum(len(part.release_variables()) for part in parts)
    print(
        f"I3D weights written: {prefix} ({count} variables; fine-tune another head "
        f"with tools/train.py --init_checkpoint={prefix})"
    )


def export():
    if not FLAGS.output_dir:
        raise InputError("--output_dir is required")
    if os.path.isdir(FLAGS.output_dir) and os.listdir(FLAGS.output_dir):
        raise InputError(f"--output_dir: {FLAGS.output_dir} exists and is not empty")
    if FLAGS.model_dir and not os.path.isdir(FLAGS.model_dir):
        raise InputError(f"--model_dir: no such directory: {FLAGS.model_dir}")
    if (
        FLAGS.model_dir
        and not cli.flagfile_given()
        and not FLAGS.checkpoint_path
        and not any(
            os.path.isfile(os.path.join(FLAGS.model_dir, n))
            for n in ("config.json", "model_flags.json")
        )
    ):
        from action_tx import checkpointing  # (imports TensorFlow)

        if not checkpointing.find_checkpoints(FLAGS.checkpoint_dir or FLAGS.model_dir, log=None):
            raise InputError(
                f"--model_dir: {FLAGS.model_dir} holds no trained model (no "
                "config.json, no ckpt-N checkpoint): train one there "
                "with tools/train.py"
            )
    config = model_flags.config_for_model_dir(FLAGS.model_dir)
    from action_tx.tasks import make_task

    task = make_task(config)
    if not task.runs_on_frames:
        raise InputError(
            "a feature-mode model (--input=features) reads stored features, not "
            "frames: it cannot be exported; export an end-to-end checkpoint"
        )
    label_map_path = config.data.label_map
    if not label_map_path:
        raise InputError(
            "--label_map is required (in the flagfile, config.json or the command line)"
        )
    if not os.path.isfile(label_map_path):
        raise InputError(f"--label_map: no such file: {label_map_path}")
    fps = FLAGS.fps or _legacy_fps(FLAGS.model_dir)
    if fps <= 0:
        raise InputError(f"--fps must be positive, got {fps}")
    paths = _checkpoint_paths()

    import tensorflow as tf  # after the flag checks: errors and --help stay instant
    from action_tx import checkpointing, eval_lib
    from action_tx.export import export_saved_model

    try:
        label_map = task.label_map
    except (ValueError, OSError) as e:
        raise InputError(f"--label_map: {' '.join(str(e).split())}")
    from action_tx import precision

    data = config.data
    with precision.policy(config.eval.precision):  # --precision
        detector = task.build_model()
        detector(_dummy_batch(tf, label_map, data), training=False)
    try:
        # A damaged newest checkpoint: a warning line, and the one before it (as the trainer).
        path = checkpointing.restore_newest(paths, lambda p: eval_lib.restore(detector, p), _warn)
    except checkpointing.CheckpointMismatchError as e:
        raise InputError(
            f"the checkpoint does not hold this model's weights (were the model "
            f"flags different?): {' '.join(str(e).split())[:400]}"
        )
    except checkpointing.CheckpointError as e:  # none of them can be read
        raise InputError(" ".join(str(e).split()))
    print(f"restored {path}", file=sys.stderr)
    if FLAGS.trunk_only:
        _write_i3d_weights(detector)
        return
    export_saved_model(
        detector,
        FLAGS.output_dir,
        num_frames=data.num_frames,
        image_size=data.image_size,
        class_ids=label_map.ids,
        class_names=[label_map.names[i] for i in label_map.ids],
        frame_stride=data.frame_stride,
        fps=fps,
    )
    signature = "clip, person_boxes" if detector.proposer.mode != "rpn" else "clip"
    print(
        f"SavedModel written: {FLAGS.output_dir} (serving_default({signature}), with_boxes, "
        f"labels, metadata)"
    )


def main(argv):
    del argv
    export()


if __name__ == "__main__":
    cli.run(main)
