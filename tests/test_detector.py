"""ActionDetector end to end on a tiny hand-made batch: shapes, config, and overfitting."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import keras

from action_tx.detector import ActionDetector
from action_tx.heads.action_transformer import ActionTransformerHead
from action_tx.heads.base import HeadInputs
from action_tx.heads.i3d_head import I3DHead
from action_tx.heads.linear import LinearHead
from action_tx.outputs import detections_to_ava
from action_tx.trunks.i3d import make_trunk
from object_detection_ext import box_ops
from object_detection_ext.ava_eval import evaluate
from object_detection_ext.proposer import Proposer

SIZE, FRAMES, CLASSES = 64, 8, 3
# Each person's colour decides its actions, so the labels are learnable from the box alone.
COLOURS = {0: (1.0, -1.0, -1.0), 1: (-1.0, 1.0, -1.0), 2: (-1.0, -1.0, 1.0)}
LABELS = {0: (1, 0, 1), 1: (0, 1, 0), 2: (1, 1, 0)}
# Per clip: (colour, box yxyx normalized).
PEOPLE = [
    [(0, (0.10, 0.05, 0.85, 0.40)), (1, (0.20, 0.55, 0.95, 0.90))],
    [(2, (0.05, 0.30, 0.70, 0.70))],
]


def tiny_batch():
    rng = np.random.default_rng(0)
    clip = rng.uniform(-0.2, 0.2, (len(PEOPLE), FRAMES, SIZE, SIZE, 3)).astype(np.float32)
    boxes = np.zeros((len(PEOPLE), 2, 4), np.float32)
    mask = np.zeros((len(PEOPLE), 2), bool)
    labels = np.zeros((len(PEOPLE), 2, CLASSES), np.float32)
    for b, people in enumerate(PEOPLE):
        for n, (colour, box) in enumerate(people):
            y1, x1, y2, x2 = (int(round(v * SIZE)) for v in box)
            clip[b, :, y1:y2, x1:x2] = COLOURS[colour]
            boxes[b, n], mask[b, n], labels[b, n] = box, True, LABELS[colour]
    return {
        "clip": tf.constant(clip),
        "boxes": tf.constant(boxes),
        "box_mask": tf.constant(mask),
        "labels": tf.constant(labels),
        "video_id": tf.constant(["v0", "v1"]),
        "timestamp": tf.constant([1, 1]),
    }


def make_detector(head="i3d", proposals="rpn"):
    # Frozen BatchNorm (paper §3.5): with live statistics, 300 steps barely move the moving
    # averages (decay 0.999) and inference would see different features than training.
    trunk = make_trunk("i3d_tiny", freeze_bn=True)
    head_layer = (
        I3DHead(CLASSES, width_multiplier=0.25, freeze_bn=True, dropout=0.0)
        if head == "i3d"
        else LinearHead(CLASSES)
    )
    proposer = Proposer(
        mode=proposals, sizes=(16.0, 32.0, 48.0), filters=32, pre_nms_top_k=200, post_nms_top_k=20
    )
    return ActionDetector(
        trunk=trunk,
        proposer=proposer,
        head=head_layer,
        num_classes=CLASSES,
        num_roi_samples=16,
        max_detections=10,
        nms_iou=0.3,
        seed=1,
    )


def test_forward_shapes_and_padding():
    det = make_detector()
    batch = tiny_batch()
    out = det(batch, training=False)
    assert out["logits"].shape == (2, 20, CLASSES)
    assert out["detection_boxes"].shape == (2, 10, 4)
    assert out["action_scores"].shape == (2, 10, CLASSES)
    train_out = det(batch, training=True)
    assert train_out["rois"].shape == (2, 16, 4)
    # The ground-truth boxes are added to the candidates, so every person has a positive RoI
    # carrying exactly its labels.
    pos = train_out["roi_is_positive"].numpy()
    assert pos[0].sum() >= 2 and pos[1].sum() >= 1
    got = {tuple(l) for l in train_out["roi_labels"].numpy()[0][pos[0]]}
    assert got == {LABELS[0], LABELS[1]}
    # Sampled RoIs are scored by their IoU with their person (1 for the added GT box), 0 for
    # background.
    iou = box_ops.pairwise_iou(
        train_out["rois"],
        tf.constant(batch["boxes"], tf.float32),
        train_out["roi_mask"],
        tf.cast(batch["box_mask"], tf.bool),
    )
    np.testing.assert_allclose(
        train_out["roi_scores"].numpy()[pos], tf.reduce_max(iou, -1).numpy()[pos], rtol=1e-5
    )
    assert np.all(train_out["roi_scores"].numpy()[~pos] == 0.0)
    assert np.isclose(train_out["roi_scores"].numpy()[pos].max(), 1.0)
    terms = det.compute_losses(train_out)
    assert set(terms) == {
        "action_loss",
        "actor_loss",
        "box_loss",
        "rpn_objectness_loss",
        "rpn_box_loss",
        "total_loss",
    }
    assert all(np.isfinite(v.numpy()) for v in terms.values())


def test_tx_detector_pools_only_the_central_slice():
    # Tx reads only the slice T'//2 of the RoI tube (its query): the detector pools that slice
    # alone, and the logits equal those of the head given the whole tube.
    head = ActionTransformerHead(CLASSES, hidden_size=16, ffn_hidden=32, dropout=0.0)
    det = ActionDetector(
        trunk=make_trunk("i3d_tiny", freeze_bn=True),
        proposer=Proposer(mode="gt"),
        head=head,
        num_classes=CLASSES,
        seed=1,
    )
    batch = tiny_batch()
    logits = det(batch, training=False)["logits"]
    features = det.trunk(batch["clip"], training=False)
    boxes, mask = batch["boxes"], batch["box_mask"]
    tube = det.roi_extractor(features, boxes, mask)  # [B, N, T', 7, 7, C]
    centre = det.pool_rois(features, boxes, mask)
    t = features.shape[1]
    assert t > 1 and centre.shape == tube.shape[:2] + (1,) + tube.shape[3:]
    np.testing.assert_allclose(centre[:, :, 0], tube[:, :, t // 2], atol=1e-6)
    whole = head(HeadInputs(features=features, rois=boxes, roi_mask=mask, roi_features=tube))
    np.testing.assert_allclose(logits, whole.logits, atol=1e-5)
    # A head that reads every slice gets the whole tube.
    i3d = make_detector("i3d", proposals="gt")
    assert i3d.pool_rois(features, boxes, mask).shape[2] == t


def test_config_round_trip():
    det = make_detector(head="linear", proposals="gt")
    config = det.get_config()
    clone = ActionDetector.from_config(config)
    assert clone.get_config() == config


def overfit(steps=300):
    """Trains a tiny detector on `tiny_batch` and returns (first loss, mean loss of the last 20
    steps, frame-mAP of its detections on that batch)."""
    keras.utils.set_random_seed(0)
    det = make_detector(head="i3d")
    batch = tiny_batch()
    # A step down of the learning rate for the last third lets the loss settle: the RoIs are
    # sampled anew every step, so single-step losses are noisy.
    optimizer = keras.optimizers.Adam(
        keras.optimizers.schedules.PiecewiseConstantDecay([200], [3e-3, 3e-4])
    )

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            terms = det.compute_losses(det(batch, training=True))
        grads = tape.gradient(terms["total_loss"], det.trainable_variables)
        optimizer.apply_gradients(zip(grads, det.trainable_variables))
        return terms["total_loss"]

    det(batch, training=True)
    first = float(step())
    losses = [float(step()) for _ in range(steps - 1)]
    out = {k: v.numpy() for k, v in det(batch, training=False).items()}
    rows = detections_to_ava(out, ["v0", "v1"], [1, 1], class_ids=[1, 2, 3])
    gt = {"video_id": [], "timestamp": [], "boxes": [], "action_id": []}
    for b, people in enumerate(PEOPLE):
        for colour, box in people:
            for c, on in enumerate(LABELS[colour]):
                if on:
                    gt["video_id"].append(f"v{b}")
                    gt["timestamp"].append(1)
                    gt["boxes"].append(box)
                    gt["action_id"].append(c + 1)
    gt = {k: np.asarray(v) for k, v in gt.items()}
    result = evaluate(gt, rows, [1, 2, 3], breakdowns=False)
    return first, float(np.mean(losses[-20:])), result.map


def test_tiny_detector_overfits_tiny_batch():
    # In its own process with TF op determinism (which cannot be switched off again inside the
    # test session): multi-threaded float sums otherwise make every run a different trajectory.
    env = dict(
        os.environ, TF_DETERMINISTIC_OPS="1", TF_ENABLE_ONEDNN_OPTS="1", TF_CPP_MIN_LOG_LEVEL="2"
    )
    proc = subprocess.run(
        [sys.executable, __file__], env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, last, frame_map = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last < first / 10, (first, last)
    assert frame_map >= 0.9, frame_map


def test_checkpoint_holds_every_variable_and_seed_state(tmp_path):
    import tensorflow as tf
    from action_tx.checkpointing import checkpointable

    det = make_detector()
    batch = tiny_batch()
    det(batch, training=True)
    path = tf.train.Checkpoint(model=checkpointable(det)).save(str(tmp_path / "ckpt"))
    saved = {name for name, _ in tf.train.list_variables(path)}
    # Every variable: trunk blocks kept in Python lists and the sampler's seed state included.
    assert sum(1 for n in saved if n.startswith("model/") and "/table/" in n) == len(det.variables)
    clone = make_detector()
    clone(batch, training=True)
    det.seed_generator.next()  # move the state on; the restore must bring it back
    tf.train.Checkpoint(model=checkpointable(clone)).restore(path).assert_consumed()
    tf.train.Checkpoint(model=checkpointable(det)).restore(path).assert_consumed()
    for a, b in zip(det.variables, clone.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_gt_proposal_detector_restores_an_rpn_checkpoint(tmp_path):
    """The classification upper bound (paper §4.2) scores an RPN-trained checkpoint with
    ground-truth boxes: trunk and head must restore although the RPN is absent."""
    import tensorflow as tf
    from action_tx.checkpointing import checkpointable
    from action_tx.eval_lib import restore

    batch = tiny_batch()
    det = make_detector()
    det(batch, training=True)
    path = tf.train.Checkpoint(model=checkpointable(det)).save(str(tmp_path / "ckpt"))
    gt_det = make_detector(proposals="gt")
    gt_det(batch, training=False)
    restore(gt_det, path)
    for a, b in zip(
        det.trunk.variables + det.head.variables, gt_det.trunk.variables + gt_det.head.variables
    ):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    other = make_detector(head="linear")
    other(batch, training=False)
    with pytest.raises(ValueError, match="does not match this model"):
        restore(other, path)


if __name__ == "__main__":  # the overfit run of test_tiny_detector_overfits_tiny_batch
    print(json.dumps(overfit()))
