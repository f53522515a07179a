"""Seeded, vectorised balanced sampling and the second-stage RoI sampler.

Why not Model Garden's `BalancedPositiveNegativeSampler`: it takes one image at a time (1-D
indicator, so a `map_fn` over the batch) and draws with the stateful `tf.random.shuffle`, whose
only seed is the global seed plus an op counter; a train step could not be replayed from
`(seed, step)`. `balanced_sample` keeps its rule (at most `positive_fraction * num_samples`
positives, chosen uniformly; the rest filled with uniformly chosen negatives) but ranks random
keys from `tf.random.stateless_uniform`, for the whole batch at once.
"""

from typing import Dict, Optional, Sequence

import tensorflow as tf

from object_detection_ext import box_ops


def _ranks(keys: tf.Tensor) -> tf.Tensor:
    """Rank [B, N] int32 (0 = smallest) of every entry of `keys` [B, N] within its row."""
    return tf.argsort(tf.argsort(keys, axis=-1, stable=True), axis=-1, stable=True)


def balanced_sample(
    positive: tf.Tensor,
    negative: tf.Tensor,
    *,
    num_samples: int,
    positive_fraction: float,
    seed: tf.Tensor,
) -> Dict[str, tf.Tensor]:
    """Samples at most `num_samples` entries per row, at most `positive_fraction` of them positive.

    Args:
      positive: bool [B, N] candidates labelled positive.
      negative: bool [B, N] candidates labelled negative (disjoint from `positive`; entries that
        are neither are ignored, e.g. padding or RPN anchors with 0.3 <= IoU < 0.7).
      num_samples: per-row sample size (Faster R-CNN: 256 anchors, 64-512 RoIs).
      positive_fraction: maximum fraction of positives; negatives fill the remainder.
      seed: int [2] stateless seed: same seed, same sample.

    Returns:
      dict with bool [B, N] `positive` and `negative` (the sampled ones), and float32 [B, N]
      `keys`: the uniform random keys used (reused by callers to order the sample).
    """
    positive = tf.cast(positive, tf.bool)
    negative = tf.cast(negative, tf.bool) & ~positive
    keys = tf.random.stateless_uniform(tf.shape(positive), seed=seed)
    max_pos = int(num_samples * positive_fraction)
    # Shift non-candidates past every candidate (keys < 1) so their rank is never small.
    pos_rank = _ranks(tf.where(positive, keys, 2.0))
    sampled_pos = positive & (pos_rank < max_pos)
    num_pos = tf.reduce_sum(tf.cast(sampled_pos, tf.int32), axis=-1, keepdims=True)
    neg_rank = _ranks(tf.where(negative, keys, 2.0))
    sampled_neg = negative & (neg_rank < num_samples - num_pos)
    return {"positive": sampled_pos, "negative": sampled_neg, "keys": keys}


def sample_rois(
    proposals: tf.Tensor,
    proposal_mask: tf.Tensor,
    gt_boxes: tf.Tensor,
    gt_mask: tf.Tensor,
    gt_labels: tf.Tensor,
    *,
    seed: tf.Tensor,
    num_samples: int = 64,
    positive_fraction: float = 0.25,
    iou_threshold: float = 0.5,
    add_gt: bool = True,
    weights: Optional[Sequence[float]] = box_ops.SECOND_STAGE_WEIGHTS,
) -> Dict[str, tf.Tensor]:
    """Second-stage training sample: RoIs with multi-hot action labels and box targets.

    Every candidate (proposals, plus the ground truth boxes when `add_gt`, as in Faster R-CNN so
    each person has at least one perfect RoI) is matched to the GT box of highest IoU. IoU >=
    `iou_threshold`: positive, labels = that person's multi-hot labels, box target = its encoded
    deltas. Otherwise background: labels all zero, no box target. Defaults (64 RoIs, 25 %
    positives) are the TF Object Detection API Faster R-CNN defaults, on which the Action
    Transformer authors built; the paper evaluates R = 64 and R = 300 (pass `num_samples=300`).

    Args:
      proposals: float [B, P, 4] normalized yxyx (treated as constants: stop_gradient).
      proposal_mask: bool [B, P].
      gt_boxes: float [B, G, 4] normalized yxyx.
      gt_mask: bool [B, G].
      gt_labels: float [B, G, C] multi-hot action labels.
      seed: int [2] stateless seed.
      num_samples: S, RoIs per image (fixed output size; padded with mask False when fewer
        candidates exist).
      positive_fraction: at most this fraction of S is positive.
      iou_threshold: IoU for a positive.
      add_gt: append the GT boxes to the candidates.
      weights: box coder weights of the targets.

    Returns:
      dict of
        rois: float32 [B, S, 4]; positives first (in random order), then negatives.
        roi_mask: bool [B, S].
        labels: float32 [B, S, C] multi-hot (zeros for background and padding).
        is_positive: bool [B, S].
        box_targets: float32 [B, S, 4] deltas of the matched GT (zeros unless positive).
        matched_gt: int32 [B, S] index into G of the matched GT, -1 unless positive.
        max_iou: float32 [B, S] IoU with the matched GT (-1 for padding).
    """
    proposals = tf.stop_gradient(tf.cast(proposals, tf.float32))
    gt_boxes = tf.cast(gt_boxes, tf.float32)
    gt_mask = tf.cast(gt_mask, tf.bool)
    gt_labels = tf.cast(gt_labels, tf.float32)
    if gt_boxes.shape[1] == 0:  # no GT slot at all: add one padding slot so gathers stay valid
        gt_boxes = tf.pad(gt_boxes, [[0, 0], [0, 1], [0, 0]])
        gt_mask = tf.pad(gt_mask, [[0, 0], [0, 1]])
        gt_labels = tf.pad(gt_labels, [[0, 0], [0, 1], [0, 0]])
    cands, cand_mask = proposals, tf.cast(proposal_mask, tf.bool)
    if add_gt:
        cands = tf.concat([cands, gt_boxes], axis=1)
        cand_mask = tf.concat([cand_mask, gt_mask], axis=1)
    iou = box_ops.pairwise_iou(cands, gt_boxes, cand_mask, gt_mask)  # [B, P', G]
    max_iou = tf.reduce_max(iou, axis=-1)
    matched = tf.argmax(iou, axis=-1, output_type=tf.int32)
    positive = cand_mask & (max_iou >= iou_threshold)
    negative = cand_mask & ~positive
    sample = balanced_sample(
        positive, negative, num_samples=num_samples, positive_fraction=positive_fraction, seed=seed
    )
    # Order: sampled positives, sampled negatives, the rest; random within a group.
    group = tf.where(sample["positive"], 0.0, tf.where(sample["negative"], 1.0, 2.0))
    order = tf.argsort(group + sample["keys"], axis=-1, stable=True)
    sampled = tf.gather(sample["positive"] | sample["negative"], order, batch_dims=1)
    # Pad to S slots (fewer candidates than S): padding points at candidate 0, mask False.
    pad_shape = tf.stack([tf.shape(order)[0], num_samples])
    order = tf.concat([order, tf.zeros(pad_shape, tf.int32)], axis=1)[:, :num_samples]
    sampled = tf.concat([sampled, tf.zeros(pad_shape, tf.bool)], axis=1)[:, :num_samples]

    rois = tf.gather(cands, order, batch_dims=1) * tf.cast(sampled, tf.float32)[..., None]
    is_pos = sampled & tf.gather(positive, order, batch_dims=1)
    matched = tf.gather(matched, order, batch_dims=1)
    pos_f = tf.cast(is_pos, tf.float32)[..., None]
    labels = tf.gather(gt_labels, matched, batch_dims=1) * pos_f
    matched_boxes = tf.gather(gt_boxes, matched, batch_dims=1)
    targets = box_ops.encode_boxes(matched_boxes, rois, weights) * pos_f
    return {
        "rois": rois,
        "roi_mask": sampled,
        "labels": labels,
        "is_positive": is_pos,
        "box_targets": targets,
        "matched_gt": tf.where(is_pos, matched, -1),
        "max_iou": tf.where(sampled, tf.gather(max_iou, order, batch_dims=1), -1.0),
    }
