"""tools/export_saved_model.py: a trainer-style checkpoint of a ground-truth-box detector becomes
a SavedModel that requires person boxes and gives the Keras model's outputs; `--trunk_only`
writes its trunk's weights for `--init_checkpoint`; wrong or missing checkpoints exit 2 with
one line."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import tensorflow as tf

from action_tx.checkpointing import checkpointable
from action_tx.data import ava
from action_tx.export import preprocess_clip
from action_tx.model_builder import build_detector
from action_tx.trunks.i3d import make_trunk
from action_tx.trunks.i3d_checkpoint import restore_trunk

REPO = pathlib.Path(__file__).resolve().parents[2]
TOOL = str(REPO / "tools" / "export_saved_model.py")
FLAGS = [
    "--trunk=i3d_tiny",
    "--head=linear",
    "--proposals=gt",
    "--anchor_sizes=16,32,48",
    "--rpn_filters=32",
    "--post_nms_top_k=20",
    "--max_detections=5",
    "--num_frames=8",
    "--image_size=64",
    "--frame_stride=3",
]
BOXES = np.array([[0.1, 0.1, 0.6, 0.5], [0.3, 0.5, 0.95, 0.9]], np.float32)


def export(*args):
    return subprocess.run(
        [sys.executable, TOOL, *args], capture_output=True, text=True, timeout=300
    )


def one_line_error(proc, fragment):
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and fragment in lines[0], proc.stderr[-2000:]


def test_export_tool_from_checkpoint(tmp_path):
    label_map = ava.LabelMap(ids=(3, 8), names={3: "carry", 8: "lie"})
    ava.write_label_map(str(tmp_path / "labels.pbtxt"), label_map)
    flagfile = tmp_path / "model.flags"
    flagfile.write_text("\n".join(FLAGS + [f"--label_map={tmp_path / 'labels.pbtxt'}"]) + "\n")
    # The detector FLAGS describe, with a trainer-style checkpoint.
    detector = build_detector(
        num_classes=2,
        trunk="i3d_tiny",
        head="linear",
        proposals="gt",
        anchor_sizes=(16.0, 32.0, 48.0),
        rpn_filters=32,
        post_nms_top_k=20,
        max_detections=5,
        seed=7,
    )
    clip = np.random.default_rng(1).integers(0, 256, (8, 40, 56, 3), dtype=np.uint8)
    batch = {
        "clip": preprocess_clip(clip, num_frames=8, image_size=64),
        "boxes": tf.constant(BOXES[None]),
        "box_mask": tf.ones([1, 2], tf.bool),
    }
    want = detector(batch, training=False)
    model_dir = tmp_path / "train"
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=checkpointable(detector), step=tf.Variable(5)),
        str(model_dir),
        max_to_keep=2,
    )
    manager.save(checkpoint_number=5)

    one_line_error(
        export(
            f"--flagfile={flagfile}",
            f"--checkpoint_dir={tmp_path}",
            f"--output_dir={tmp_path / 'x'}",
        ),
        "no checkpoint",
    )
    one_line_error(
        export(
            f"--flagfile={flagfile}", f"--checkpoint_dir={model_dir}", f"--output_dir={tmp_path}"
        ),
        "exists and is not empty",
    )
    one_line_error(
        export(f"--checkpoint_dir={model_dir}", f"--output_dir={tmp_path / 'x'}"),
        "--label_map is required",
    )

    out = tmp_path / "export"
    proc = export(
        f"--flagfile={flagfile}", f"--checkpoint_dir={model_dir}", f"--output_dir={out}", "--fps=25"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ckpt-5" in proc.stderr

    loaded = tf.saved_model.load(str(out))
    serving = loaded.signatures["serving_default"]
    assert sorted(serving.structured_input_signature[1]) == ["clip", "person_boxes"]
    got = serving(clip=tf.constant(clip), person_boxes=tf.constant(BOXES))
    n = int(want["num_detections"][0])
    assert int(got["num_detections"]) == n
    for key in ("detection_boxes", "detection_scores", "action_scores"):
        np.testing.assert_allclose(got[key].numpy()[:n], want[key][0].numpy()[:n], atol=1e-4)
    meta = {k: v.numpy().tolist() for k, v in loaded.signatures["metadata"]().items()}
    assert meta["requires_person_boxes"] is True
    assert (meta["frame_stride"], meta["fps"], meta["num_classes"]) == (3, 25.0, 2)
    assert loaded.signatures["labels"]()["class_ids"].numpy().tolist() == [3, 8]

    # A model_dir of the code before config.json: its model_flags.json (flag name -> value, as
    # that trainer wrote it) is the model's config; the export equals the flagfile's.
    (model_dir / "model_flags.json").write_text(
        json.dumps(
            {
                "trunk": "i3d_tiny",
                "head": "linear",
                "proposals": "gt",
                "anchor_sizes": ["16", "32", "48"],
                "rpn_filters": 32,
                "post_nms_top_k": 20,
                "max_detections": 5,
                "num_frames": 8,
                "image_size": 64,
                "frame_stride": 3,
                "seed": 7,
                "head_dropout": None,
                "label_map": str(tmp_path / "labels.pbtxt"),
            }
        )
    )
    legacy_out = tmp_path / "export_legacy"
    proc = export(f"--model_dir={model_dir}", f"--output_dir={legacy_out}", "--fps=25")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "model_flags.json" in proc.stderr
    again = tf.saved_model.load(str(legacy_out)).signatures["serving_default"](
        clip=tf.constant(clip), person_boxes=tf.constant(BOXES)
    )
    for key in ("detection_boxes", "detection_scores", "action_scores"):
        np.testing.assert_allclose(again[key].numpy()[:n], want[key][0].numpy()[:n], atol=1e-4)

    # Same checkpoint, other head: nothing of the linear head matches.
    mismatch = export(
        f"--flagfile={flagfile}",
        "--head=i3d",
        f"--checkpoint_dir={model_dir}",
        f"--output_dir={tmp_path / 'other'}",
    )
    one_line_error(mismatch, "does not hold this model's weights")

    # --trunk_only: the trunk's weights under the release names, which a fresh trunk loads
    # (as tools/train.py --init_checkpoint does) to exactly the detector's values.
    trunk_dir = tmp_path / "trunk"
    proc = export(
        f"--flagfile={flagfile}",
        f"--checkpoint_dir={model_dir}",
        f"--output_dir={trunk_dir}",
        "--trunk_only",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--init_checkpoint=" in proc.stdout and not (trunk_dir / "saved_model.pb").exists()
    fresh, trained = make_trunk("i3d_tiny"), detector.trunk.release_variables()
    report = restore_trunk(fresh, str(trunk_dir / "i3d_trunk"))
    assert not report.problems and len(report.loaded) == len(trained)
    for name, var in fresh.release_variables().items():
        np.testing.assert_array_equal(var.numpy(), trained[name].numpy())
