"""The second-stage actor (person vs background) logit: targets, loss, and how it scores the
detections (action_transformer.txt §3; issue 27)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from action_tx.detector import ActionDetector
from action_tx.heads.base import ActionHead, HeadOutputs
from action_tx.heads.linear import LinearHead
from action_tx.trunks.i3d import make_trunk
from object_detection_ext.postprocess import combine_person_scores
from object_detection_ext.proposer import Proposer

CLASSES, FRAMES, SIZE = 2, 8, 64
GT = (0.0, 0.0, 0.5, 0.5)


def _batch(proposals, scores, gt_boxes=(GT,)):
    rng = np.random.default_rng(0)
    b = {
        "clip": tf.constant(rng.uniform(-1, 1, (1, FRAMES, SIZE, SIZE, 3)), tf.float32),
        "boxes": tf.constant([gt_boxes], tf.float32),
        "box_mask": tf.ones([1, len(gt_boxes)], tf.bool),
        "labels": tf.constant([[[1.0, 0.0]] * len(gt_boxes)]),
        "proposals": tf.constant([proposals], tf.float32),
        "proposal_scores": tf.constant([scores], tf.float32),
        "proposal_mask": tf.ones([1, len(proposals)], tf.bool),
    }
    return b


def _detector(head, mode="external", **kwargs):
    keras.utils.set_random_seed(0)
    return ActionDetector(
        trunk=make_trunk("i3d_tiny", freeze_bn=True),
        proposer=Proposer(mode=mode),
        head=head,
        num_classes=CLASSES,
        num_roi_samples=16,
        max_detections=4,
        seed=0,
        **kwargs,
    )


def test_actor_targets_follow_iou_with_a_person():
    # IoU with the ground-truth box: 0.15 / 0.25 = 0.6 (a person) and 0.10 / 0.25 = 0.4 (not).
    batch = _batch([(0.0, 0.0, 0.5, 0.3), (0.0, 0.0, 0.5, 0.2)], [0.9, 0.9])
    out = _detector(LinearHead(CLASSES))(batch, training=True)
    rois, mask = out["rois"].numpy()[0], out["roi_mask"].numpy()[0]
    targets = out["roi_actor_targets"].numpy()[0]
    by_box = {
        tuple(round(float(v), 3) for v in r): float(t) for r, t, m in zip(rois, targets, mask) if m
    }
    # The two proposals and the added ground-truth box (Faster R-CNN), nothing else.
    assert by_box == {
        (0.0, 0.0, 0.5, 0.3): 1.0,
        (0.0, 0.0, 0.5, 0.2): 0.0,
        (0.0, 0.0, 0.5, 0.5): 1.0,
    }
    assert out["actor_logits"].shape == (1, 16)
    terms = _detector(LinearHead(CLASSES)).compute_losses(out)
    expected = np.mean(
        [
            np.log1p(np.exp(-x)) if t else np.log1p(np.exp(x))
            for x, t, m in zip(out["actor_logits"].numpy()[0], targets, mask)
            if m
        ]
    )
    np.testing.assert_allclose(terms["actor_loss"].numpy(), expected, rtol=1e-5)


def test_no_actor_loss_on_ground_truth_boxes():
    batch = _batch([GT], [1.0])
    out = _detector(LinearHead(CLASSES), mode="gt")(batch, training=True)
    assert "roi_actor_targets" not in out
    assert "actor_loss" not in _detector(LinearHead(CLASSES), mode="gt").compute_losses(out)


def test_actor_loss_falls_on_a_tiny_detector():
    # A bright person on a dark clip; background proposals elsewhere.
    batch = _batch(
        [(0.0, 0.0, 0.5, 0.45), (0.5, 0.5, 1.0, 1.0), (0.0, 0.6, 0.4, 1.0), (0.6, 0.0, 1.0, 0.4)],
        [0.5] * 4,
    )
    clip = np.full((1, FRAMES, SIZE, SIZE, 3), -0.8, np.float32)
    clip[:, :, :32, :32] = 0.8
    batch["clip"] = tf.constant(clip)
    det = _detector(LinearHead(CLASSES))
    optimizer = keras.optimizers.Adam(0.2)
    det(batch, training=True)
    # The head only (the trunk stays as initialised): fast, and the actor logit must learn.
    variables = det.head.trainable_variables

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            terms = det.compute_losses(det(batch, training=True))
        optimizer.apply_gradients(zip(tape.gradient(terms["total_loss"], variables), variables))
        return terms["actor_loss"]

    losses = [float(step()) for _ in range(40)]
    # From chance (log 2: the untrained logit is ~0) down by more than 30 %.
    assert losses[0] == pytest.approx(np.log(2), abs=0.05)
    assert np.mean(losses[-5:]) < 0.7 * losses[0], losses


class _XHead(ActionHead):
    """Test head: actor logit 8 (x1 - 0.5): boxes further right look more like persons."""

    def call(self, inputs, training=None):
        rois = tf.cast(inputs.rois, tf.float32)
        return HeadOutputs(
            logits=tf.zeros(tf.concat([tf.shape(rois)[:2], [CLASSES]], 0)),
            actor_logits=8.0 * (rois[..., 1] - 0.5),
        )


@pytest.mark.parametrize(
    "rule,first", [("proposal", 0), ("actor", 1), ("product", 1), ("geometric", 1)]
)
def test_person_score_rule_orders_the_detections(rule, first):
    left, right = (0.1, 0.05, 0.6, 0.35), (0.1, 0.65, 0.6, 0.95)
    batch = _batch([left, right], [0.9, 0.6])
    out = _detector(_XHead(), person_score=rule)(batch, training=False)
    a = 1 / (1 + np.exp(-8.0 * (np.array([0.05, 0.65]) - 0.5)))
    p = np.array([0.9, 0.6])
    want = {"proposal": p, "actor": a, "product": p * a, "geometric": np.sqrt(p * a)}[rule]
    np.testing.assert_allclose(out["person_scores"].numpy()[0], want, rtol=1e-5)
    np.testing.assert_allclose(
        out["detection_boxes"].numpy()[0, 0], (left, right)[first], atol=1e-6
    )
    np.testing.assert_allclose(
        out["detection_scores"].numpy()[0, :2], np.sort(want)[::-1], rtol=1e-5
    )


def test_ground_truth_boxes_keep_their_score():
    batch = _batch([], [], gt_boxes=[(0.1, 0.05, 0.6, 0.35), (0.1, 0.65, 0.6, 0.95)])
    del batch["proposals"], batch["proposal_scores"], batch["proposal_mask"]
    out = _detector(_XHead(), mode="gt", person_score="actor")(batch, training=False)
    np.testing.assert_array_equal(out["person_scores"].numpy(), [[1.0, 1.0]])
    assert int(out["num_detections"][0]) == 2


def test_combine_person_scores_rejects_unknown_rule():
    with pytest.raises(ValueError, match="person score rule"):
        combine_person_scores(tf.ones([1, 1]), tf.ones([1, 1]), "max")
    with pytest.raises(ValueError, match="person score rule"):
        _detector(LinearHead(CLASSES), person_score="max")
