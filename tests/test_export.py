"""SavedModel export: preprocessing values, frame sampling, and the exported model in a fresh
Python process without action_tx giving the Keras model's outputs."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from action_tx.export import boxes_twin, export_saved_model, preprocess_clip, sample_frame_indices
from action_tx.model_builder import build_detector

CLASSES, FRAMES, SIZE = 3, 8, 64
IDS, NAMES = [4, 11, 80], ["walk", "sit", "listen"]
BOXES = np.array([[0.1, 0.1, 0.6, 0.5], [0.3, 0.5, 0.95, 0.9]], np.float32)

# Runs in a fresh interpreter: plain TensorFlow + NumPy, and proves action_tx never loads.
FRESH = r"""
import sys, numpy as np, tensorflow as tf
path, inputs, out = sys.argv[1:4]
m = tf.saved_model.load(path)
clip, boxes = np.load(inputs)["clip"], np.load(inputs)["boxes"]
res = {}
for key, fn, kwargs in [
        ("rpn", "serving_default", dict(clip=clip)),
        ("rpn16", "serving_default", dict(clip=np.repeat(clip, 2, axis=0))),
        ("boxes", "with_boxes", dict(clip=clip, person_boxes=boxes)),
        ("none", "with_boxes", dict(clip=clip, person_boxes=np.zeros([0, 4], np.float32)))]:
    o = m.signatures[fn](**{k: tf.constant(v) for k, v in kwargs.items()})
    res.update({key + "/" + k: v.numpy() for k, v in o.items()})
labels = m.signatures["labels"]()
res["labels/class_ids"] = labels["class_ids"].numpy()
res["labels/class_names"] = np.array([n.decode() for n in labels["class_names"].numpy()])
res.update({"meta/" + k: v.numpy() for k, v in m.signatures["metadata"]().items()})
res["inputs"] = np.array(sorted(m.signatures["serving_default"].structured_input_signature[1]))
assert not any(name.startswith("action_tx") or name.startswith("object_detection_ext")
               for name in sys.modules), "the SavedModel must load without project code"
np.savez(out, **res)
"""


def test_sample_frame_indices_uniform():
    np.testing.assert_array_equal(sample_frame_indices(8, 8), np.arange(8))
    np.testing.assert_array_equal(sample_frame_indices(16, 8), [1, 3, 5, 7, 9, 11, 13, 15])
    np.testing.assert_array_equal(sample_frame_indices(4, 8), [0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(sample_frame_indices(1, 3), [0, 0, 0])


def test_preprocess_clip_resizes_like_the_pipeline_and_scales():
    # Two 2x2 frames; the 3x3 output of crop_and_resize on the whole frame keeps the corners
    # and averages between them (the pipeline's make_clip), then x / 127.5 - 1.
    frame = np.array([[0, 255], [51, 102]], np.uint8)
    clip = np.stack([np.repeat(frame[..., None], 3, -1), np.full((2, 2, 3), 255, np.uint8)])
    out = preprocess_clip(tf.constant(clip), num_frames=4, image_size=3).numpy()
    assert out.shape == (1, 4, 3, 3, 3)
    expected = np.array([[0, 127.5, 255], [25.5, 102, 178.5], [51, 76.5, 102]]) / 127.5 - 1
    np.testing.assert_allclose(out[0, 0, ..., 0], expected, atol=1e-6)
    np.testing.assert_allclose(out[0, 1], out[0, 0])  # frames 0, 0, 1, 1
    np.testing.assert_allclose(out[0, 2:], 1.0, atol=1e-6)  # 255 -> 1


def _canonical(boxes, scores, actions, num):
    """Detections sorted by score, then box (NMS output order is free among exact ties)."""
    n = int(num)
    b, s, a = boxes[:n], scores[:n], actions[:n]
    order = np.lexsort((b[:, 3], b[:, 2], b[:, 1], b[:, 0], -np.round(s, 4)))
    return b[order], s[order], a[order]


def _assert_same(keras_out, saved, prefix):
    assert int(saved[prefix + "/num_detections"]) == int(keras_out["num_detections"][0])
    got = _canonical(
        saved[prefix + "/detection_boxes"],
        saved[prefix + "/detection_scores"],
        saved[prefix + "/action_scores"],
        saved[prefix + "/num_detections"],
    )
    want = _canonical(
        keras_out["detection_boxes"][0].numpy(),
        keras_out["detection_scores"][0].numpy(),
        keras_out["action_scores"][0].numpy(),
        keras_out["num_detections"][0],
    )
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-4)
    # Padding rows are zero.
    n = int(saved[prefix + "/num_detections"])
    assert not saved[prefix + "/detection_scores"][n:].any()


def test_saved_model_in_fresh_process_matches_keras(tmp_path):
    detector = build_detector(
        num_classes=CLASSES,
        trunk="i3d_tiny",
        head="tx",
        head_options=dict(num_layers=1, num_heads=2, hidden_size=32),
        anchor_sizes=(16.0, 32.0, 48.0),
        rpn_filters=32,
        post_nms_top_k=20,
        num_roi_samples=16,
        max_detections=10,
        seed=3,
    )
    clip = np.random.default_rng(0).integers(0, 256, (FRAMES, 48, 80, 3), dtype=np.uint8)
    batch = {"clip": preprocess_clip(clip, num_frames=FRAMES, image_size=SIZE)}
    keras_rpn = detector(batch, training=False)
    keras_boxes = boxes_twin(detector)(
        dict(
            batch,
            proposals=tf.constant(BOXES[None]),
            proposal_scores=tf.ones([1, 2]),
            proposal_mask=tf.ones([1, 2], tf.bool),
        ),
        training=False,
    )
    export_dir = str(tmp_path / "export")
    export_saved_model(
        detector,
        export_dir,
        num_frames=FRAMES,
        image_size=SIZE,
        class_ids=IDS,
        class_names=NAMES,
        frame_stride=2,
        fps=10.0,
    )
    with pytest.raises(ValueError, match="not empty"):
        export_saved_model(
            detector,
            export_dir,
            num_frames=FRAMES,
            image_size=SIZE,
            class_ids=IDS,
            class_names=NAMES,
        )

    inputs, out = str(tmp_path / "inputs.npz"), str(tmp_path / "outputs.npz")
    np.savez(inputs, clip=clip, boxes=BOXES)
    proc = subprocess.run(
        [sys.executable, "-c", FRESH, export_dir, inputs, out],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = dict(np.load(out))

    _assert_same(keras_rpn, saved, "rpn")
    # 16 frames in: frames 1, 3, ..., 15 of the repeated clip, i.e. the original 8 frames.
    _assert_same(keras_rpn, saved, "rpn16")
    _assert_same(keras_boxes, saved, "boxes")
    assert int(saved["none/num_detections"]) == 0
    assert not saved["none/detection_boxes"].any()
    # Attention of each detection = the attention of the RoI it came from.
    att = tf.gather(keras_rpn["attention"], keras_rpn["detection_indices"], batch_dims=1)[0]
    n = int(saved["rpn/num_detections"])
    assert saved["rpn/attention"].shape == (10,) + tuple(keras_rpn["attention"].shape[2:])
    order_k = np.argsort(-keras_rpn["detection_scores"][0].numpy()[:n], kind="stable")
    order_s = np.argsort(-saved["rpn/detection_scores"][:n], kind="stable")
    np.testing.assert_allclose(
        saved["rpn/attention"][:n][order_s], att.numpy()[:n][order_k], atol=1e-4
    )
    assert not saved["rpn/attention"][n:].any()

    np.testing.assert_array_equal(saved["labels/class_ids"], IDS)
    assert saved["labels/class_names"].tolist() == NAMES
    meta = {k[5:]: saved[k].tolist() for k in saved if k.startswith("meta/")}
    assert meta == {
        "num_frames": 8,
        "image_size": [64, 64],
        "frame_stride": 2,
        "fps": 10.0,
        "requires_person_boxes": False,
        "num_classes": 3,
        "max_detections": 10,
    }
    assert saved["inputs"].tolist() == ["clip"]
    json.dumps(meta)  # plain values, as detect.py writes them
