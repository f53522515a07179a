"""Second-stage losses: multi-label action classification, the person (actor) logit and
class-agnostic box regression.

All functions are pure TF, reduce to a scalar, and take a per-RoI weight (0 for padding) so
that padded RoIs never contribute. Normalisation: summed over classes, averaged over weighted
RoIs (the TF Object Detection API convention the Action Transformer was trained with).
"""

from typing import Optional, Sequence

import tensorflow as tf


def _safe_mean(per_roi: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """sum(per_roi * weights) / max(sum(weights), 1)."""
    return tf.reduce_sum(per_roi * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


def sigmoid_focal_terms(
    labels: tf.Tensor, logits: tf.Tensor, gamma: float = 0.0, alpha: Optional[float] = None
) -> tf.Tensor:
    """Element-wise sigmoid cross-entropy, optionally focal (Lin et al. 2017).

    Args:
      labels: float32 [..., C] in {0, 1}.
      logits: float32 [..., C].
      gamma: focal exponent; 0 gives plain sigmoid cross-entropy. HGRNN §3.3 uses γ = 2.
      alpha: optional class balance weight for positives (1 - alpha for negatives). HGRNN is
        silent on α; like `keras.losses.BinaryFocalCrossentropy` we apply none by default.
    Returns:
      float32 [..., C] per-element loss.
    """
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    if gamma:
        p = tf.sigmoid(logits)
        p_t = labels * p + (1.0 - labels) * (1.0 - p)
        ce = ce * tf.pow(1.0 - p_t, gamma)
    if alpha is not None:
        ce = ce * (labels * alpha + (1.0 - labels) * (1.0 - alpha))
    return ce


def action_classification_loss(
    labels: tf.Tensor,
    logits: tf.Tensor,
    weights: tf.Tensor,
    *,
    pose_indices: Optional[Sequence[int]] = None,
    focal_gamma: float = 0.0,
    focal_alpha: Optional[float] = None,
) -> tf.Tensor:
    """Multi-label action loss over RoIs.

    Args:
      labels: float32 [B, N, C] multi-hot (all zero for background RoIs).
      logits: float32 [B, N, C].
      weights: float32 [B, N], 0 for padded RoIs.
      pose_indices: contiguous indices of the mutually exclusive pose classes. When given, those
        classes go under one softmax and the pose term is binary cross-entropy on those softmax
        probabilities, per pose class (ACAR-Net §4.1: "softmax for poses and sigmoid for
        interactions before binary cross-entropy loss"; the authors' release, `losses.py`
        `ava_pose_softmax_criterion`, does the same: BCE on softmax(pose logits)), applied to
        RoIs that carry a pose label (every labelled AVA person has one); the other classes
        stay sigmoid. As elsewhere here it is summed over classes and averaged over RoIs (the
        release averages over classes too, a factor 1/C on the loss scale).
      focal_gamma, focal_alpha: focal loss on the sigmoid part (see `sigmoid_focal_terms`).
    Returns:
      scalar float32.
    """
    labels = tf.cast(labels, logits.dtype)
    weights = tf.cast(weights, logits.dtype)
    num_classes = logits.shape[-1]
    if not pose_indices:
        per_roi = tf.reduce_sum(sigmoid_focal_terms(labels, logits, focal_gamma, focal_alpha), -1)
        return _safe_mean(per_roi, weights)
    if len(set(pose_indices)) < 2:
        raise ValueError(
            f"pose_indices {list(pose_indices)}: the pose softmax needs at least two classes"
        )
    pose = tf.constant(sorted(pose_indices), tf.int32)
    other = tf.constant([c for c in range(num_classes) if c not in set(pose_indices)], tf.int32)
    pose_labels = tf.gather(labels, pose, axis=-1)
    pose_logits = tf.gather(logits, pose, axis=-1)
    has_pose = tf.cast(tf.reduce_sum(pose_labels, -1) > 0, logits.dtype)
    # BCE on the softmax probabilities: -t log p - (1 - t) log(1 - p) per pose class, floored
    # at -100 as PyTorch's BCE does. Both logs in logit space: 1 - p_k is the softmax mass of
    # the other poses, so log(1 - p_k) = logsumexp_{j != k} l_j - logsumexp_j l_j. The form
    # log1p(-p) rounds p to 1 once one pose dominates; its gradient is then 0 * inf = NaN
    # even under the floor (ACAR on frozen features diverged so at step 11-87).
    log_p = tf.nn.log_softmax(pose_logits, axis=-1)
    k = len(pose_indices)
    others = tf.where(  # [K, K]: -inf on the diagonal drops pose k from row k's sum
        tf.eye(k, dtype=tf.bool),
        tf.constant(float("-inf"), logits.dtype),
        tf.zeros([], logits.dtype),
    )
    log_rest = tf.reduce_logsumexp(pose_logits[..., None, :] + others, axis=-1)  # [B, N, K]
    log_not_p = tf.maximum(
        log_rest - tf.reduce_logsumexp(pose_logits, axis=-1, keepdims=True), -100.0
    )
    pose_ce = -tf.reduce_sum(pose_labels * log_p + (1.0 - pose_labels) * log_not_p, -1)
    other_ce = tf.reduce_sum(
        sigmoid_focal_terms(
            tf.gather(labels, other, axis=-1),
            tf.gather(logits, other, axis=-1),
            focal_gamma,
            focal_alpha,
        ),
        -1,
    )
    return _safe_mean(pose_ce, weights * has_pose) + _safe_mean(other_ce, weights)


def action_probabilities(
    logits: tf.Tensor, pose_indices: Optional[Sequence[int]] = None
) -> tf.Tensor:
    """Logits [..., C] -> probabilities [..., C], consistent with `action_classification_loss`
    (softmax over the pose classes when `pose_indices` is given, sigmoid elsewhere)."""
    probs = tf.sigmoid(logits)
    if not pose_indices:
        return probs
    pose = tf.constant(sorted(pose_indices), tf.int32)
    pose_probs = tf.nn.softmax(tf.gather(logits, pose, axis=-1), axis=-1)
    num_classes = logits.shape[-1]
    is_pose = tf.constant([c in set(pose_indices) for c in range(num_classes)])
    # Scatter the softmax back to the pose positions (static class count, so a gather suffices).
    position = {c: i for i, c in enumerate(sorted(pose_indices))}
    gather_idx = tf.constant([position.get(c, 0) for c in range(num_classes)], tf.int32)
    return tf.where(is_pose, tf.gather(pose_probs, gather_idx, axis=-1), probs)


def actor_loss(targets: tf.Tensor, logits: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """Sigmoid cross-entropy of the second-stage person (non-background) logit.

    Args:
      targets: float32 [B, N], 1 for RoIs with IoU >= 0.5 with a ground-truth person, else 0.
      logits: float32 [B, N].
      weights: float32 [B, N], 0 for padded RoIs.
    Returns:
      scalar float32, averaged over weighted RoIs.
    """
    per_roi = tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.cast(targets, logits.dtype), logits=logits
    )
    return _safe_mean(per_roi, tf.cast(weights, logits.dtype))


def box_regression_loss(
    targets: tf.Tensor, deltas: tf.Tensor, positive: tf.Tensor, delta: float = 1.0
) -> tf.Tensor:
    """Smooth L1 (Huber) on encoded box deltas of positive RoIs (paper §3.4, Faster R-CNN).

    Args:
      targets: float32 [B, N, 4] encoded targets.
      deltas: float32 [B, N, 4] predicted class-agnostic deltas.
      positive: [B, N] bool or float, 1 for foreground RoIs (IoU >= 0.5 with a person).
      delta: Huber transition point (1.0 as in Model Garden's Fast R-CNN box loss).
    Returns:
      scalar float32: summed over the 4 coordinates, averaged over positive RoIs.
    """
    diff = tf.abs(tf.cast(targets, deltas.dtype) - deltas)
    huber = tf.where(diff < delta, 0.5 * tf.square(diff), delta * (diff - 0.5 * delta))
    return _safe_mean(tf.reduce_sum(huber, -1), tf.cast(positive, deltas.dtype))
