import math

import numpy as np
import pytest
import tensorflow as tf

from action_tx import losses


def _both(fn):
    """Run `fn` eagerly and inside tf.function; both must agree."""
    eager = fn()
    graph = tf.function(fn)()
    np.testing.assert_allclose(eager.numpy(), graph.numpy(), rtol=1e-6)
    return float(eager.numpy())


def test_sigmoid_loss_known_value_and_padding_ignored():
    labels = tf.constant([[[1.0, 0.0], [0.0, 0.0]]])
    logits = tf.constant([[[0.0, 0.0], [50.0, -50.0]]])
    # RoI 0: two classes at logit 0 -> 2 * log 2; RoI 1 is padding (weight 0), huge loss ignored.
    value = _both(
        lambda: losses.action_classification_loss(labels, logits, tf.constant([[1.0, 0.0]]))
    )
    assert value == pytest.approx(2 * math.log(2), rel=1e-6)


def test_focal_downweights_easy_examples():
    labels = tf.constant([[[1.0]]])
    logits = tf.constant([[[2.0]]])
    p = 1 / (1 + math.exp(-2.0))
    expected = -math.log(p) * (1 - p) ** 2
    value = _both(
        lambda: losses.action_classification_loss(labels, logits, tf.ones([1, 1]), focal_gamma=2.0)
    )
    assert value == pytest.approx(expected, rel=1e-5)


def test_pose_softmax_part():
    # classes: 0, 1 are poses; 2 is an interaction.
    labels = tf.constant([[[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]])
    logits = tf.constant([[[0.0, 0.0, 0.0], [0.0, 3.0, 0.0]]])
    weights = tf.constant([[1.0, 1.0]])
    value = _both(
        lambda: losses.action_classification_loss(labels, logits, weights, pose_indices=[0, 1])
    )
    # Pose term on RoI 0 only (RoI 1 has no pose label): binary cross-entropy on the softmax
    # (ACAR-Net's release), p = (0.5, 0.5): -log 0.5 - log(1 - 0.5) = 2 log 2; sigmoid on
    # class 2 over both RoIs: (log 2 + log 2) / 2.
    assert value == pytest.approx(2 * math.log(2) + math.log(2), rel=1e-6)
    probs = losses.action_probabilities(logits, pose_indices=[0, 1]).numpy()
    np.testing.assert_allclose(probs[0, 1, :2].sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(probs[0, 1, 2], 0.5, rtol=1e-6)


def test_pose_term_is_binary_cross_entropy_on_the_softmax():
    # Three poses, logits (2, 0, -1), pose 0 labelled: -log p0 - log(1 - p1) - log(1 - p2),
    # not the softmax cross-entropy -log p0 (ACAR-Net release, losses.py).
    logits = np.array([2.0, 0.0, -1.0])
    p = np.exp(logits) / np.exp(logits).sum()
    expected = -math.log(p[0]) - math.log(1 - p[1]) - math.log(1 - p[2])
    value = _both(
        lambda: losses.action_classification_loss(
            tf.constant([[[1.0, 0.0, 0.0]]]),
            tf.constant(logits[None, None], tf.float32),
            tf.ones([1, 1]),
            pose_indices=[0, 1, 2],
        )
    )
    assert value == pytest.approx(expected, rel=1e-5)


def test_box_regression_smooth_l1():
    targets = tf.constant([[[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])
    deltas = tf.constant([[[0.5, -2.0, 0.0, 0.0], [9.0, 9.0, 9.0, 9.0]]])
    value = _both(lambda: losses.box_regression_loss(targets, deltas, tf.constant([[True, False]])))
    assert value == pytest.approx(0.125 + 1.5, rel=1e-6)


def test_pose_term_has_finite_gradients_when_one_pose_dominates():
    # Pose 1's softmax probability rounds to 1 in float32 (logit gap 40): log(1 - p1) is then
    # taken in logit space (logsumexp of the other poses minus that of all), so the loss keeps
    # its value, -log p0 - log(1 - p1) - log(1 - p2) floored at -100 per term, and the
    # gradient stays finite (log1p(-p) gave 0 * inf = NaN here).
    logits64 = np.array([0.0, 40.0, -5.0])
    lse = np.log(np.exp(logits64 - 40.0).sum()) + 40.0
    log_p = logits64 - lse
    log_not_p = [np.log(np.exp(np.delete(logits64, k)).sum()) - lse for k in range(3)]
    expected = -log_p[0] - max(log_not_p[1], -100.0) - max(log_not_p[2], -100.0)
    labels = tf.constant([[[1.0, 0.0, 0.0, 1.0]]])
    logits = tf.Variable([[[0.0, 40.0, -5.0, 1.0]]])

    def loss():
        return losses.action_classification_loss(
            labels, logits, tf.ones([1, 1]), pose_indices=[0, 1, 2]
        )

    sigmoid_part = math.log1p(math.exp(-1.0))
    assert _both(loss) == pytest.approx(expected + sigmoid_part, rel=1e-5)
    for fn in (loss, tf.function(loss)):
        with tf.GradientTape() as tape:
            value = fn()
        grad = tape.gradient(value, logits).numpy()
        assert np.all(np.isfinite(grad)), grad
        # d/dl of -log p0 - log(1 - p1) - log(1 - p2) at these logits: pose 0 pulled up, 1 down.
        assert grad[0, 0, 0] < 0 and grad[0, 0, 1] > 0


def test_pose_softmax_needs_two_classes():
    with pytest.raises(ValueError, match="at least two"):
        losses.action_classification_loss(
            tf.zeros([1, 1, 2]), tf.zeros([1, 1, 2]), tf.ones([1, 1]), pose_indices=[0]
        )
