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
