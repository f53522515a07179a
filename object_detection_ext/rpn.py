"""Region proposal network math: anchors, training targets, losses, proposal generation.

Single feature level (the trunk's Mixed_4f output, stride 16), as in the Action Transformer
(§3.1: "the temporally-central frame ... through a region proposal network [Faster R-CNN]").
All boxes are normalized yxyx; anchors are made by Model Garden's `anchor.Anchor` in pixels and
normalized here. Anchor order everywhere: row-major over (y, x), then anchor type, with type =
(size, aspect ratio) size-major: index = ((y * W' + x) * len(sizes) + s) * len(ratios) + r. The
RPN head's outputs [B, H', W', A] / [B, H', W', A*4] reshape to this order.
"""

import math
from typing import Dict, Sequence, Tuple

import tensorflow as tf
from official.vision.ops import anchor as mg_anchor
from official.vision.ops import box_matcher as mg_box_matcher

from object_detection_ext import box_ops
from object_detection_ext.sampling import balanced_sample

# TF Object Detection API Faster R-CNN defaults (base 256 px x scales 0.25..2, ratios w/h
# 0.5, 1, 2), the code base of the Action Transformer authors; the paper gives no anchor list.
DEFAULT_SIZES = (64.0, 128.0, 256.0, 512.0)
DEFAULT_ASPECT_RATIOS = (0.5, 1.0, 2.0)


def num_anchors_per_location(
    sizes: Sequence[float] = DEFAULT_SIZES, aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS
) -> int:
    """A, the anchor types per feature-map cell."""
    return len(sizes) * len(aspect_ratios)


def generate_anchors(
    feature_size: Tuple[int, int],
    *,
    stride: int = 16,
    sizes: Sequence[float] = DEFAULT_SIZES,
    aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
) -> tf.Tensor:
    """Anchors of one feature level, normalized yxyx.

    The image is taken as (H' * stride, W' * stride) pixels (exact for input sizes that are
    multiples of 16, such as 224 or 400); anchor `sizes` are in those pixels, `aspect_ratios` are
    width / height. Cell (i, j) is centred at pixel ((i + 0.5) * stride, (j + 0.5) * stride).
    Anchors are not clipped: boxes partly outside the image are legitimate anchors.

    Args:
      feature_size: (H', W') static python ints.
      stride: feature stride in pixels.
      sizes: square-root areas in pixels.
      aspect_ratios: width / height ratios.

    Returns:
      float32 [H' * W' * A, 4] anchors, A = len(sizes) * len(aspect_ratios).
    """
    height, width = (int(v) for v in feature_size)
    level = int(round(math.log2(stride)))
    if 2**level != stride:
        raise ValueError(f"generate_anchors: stride must be a power of 2, got {stride}")
    image_size = [height * stride, width * stride]
    per_size = []
    for size in sizes:  # Model Garden's octave scales cannot express 64/128/256/512 in one level
        boxes = mg_anchor.Anchor(
            min_level=level,
            max_level=level,
            num_scales=1,
            aspect_ratios=list(aspect_ratios),
            anchor_size=size / stride,
            image_size=image_size,
        ).multilevel_boxes[str(level)]
        per_size.append(tf.reshape(boxes, [height, width, len(aspect_ratios), 4]))
    anchors = tf.stack(per_size, axis=2)  # [H', W', S, R, 4]
    return box_ops.to_normalized(tf.reshape(anchors, [-1, 4]), image_size)


def rpn_targets(
    anchors: tf.Tensor,
    gt_boxes: tf.Tensor,
    gt_mask: tf.Tensor,
    *,
    seed: tf.Tensor,
    positive_iou: float = 0.7,
    negative_iou: float = 0.3,
    num_samples: int = 256,
    positive_fraction: float = 0.5,
    weights: Sequence[float] = box_ops.RPN_WEIGHTS,
) -> Dict[str, tf.Tensor]:
    """Faster R-CNN RPN training targets for a batch.

    Matching by Model Garden's `BoxMatcher` (IoU >= positive_iou: positive, < negative_iou:
    negative, in between: ignored), then every GT box's best anchors (all ties, as in Faster
    R-CNN / Detectron2 "low-quality matches") become positive. Model Garden's own
    `force_match_for_each_col` is not used: it also force-matches padded GT columns. Then a
    balanced sample of `num_samples` anchors with at most `positive_fraction` positives.

    Args:
      anchors: float [A_total, 4] normalized yxyx (`generate_anchors`).
      gt_boxes: float [B, G, 4] normalized yxyx.
      gt_mask: bool [B, G].
      seed: int [2] stateless seed of the sampler.
      positive_iou, negative_iou: matching thresholds.
      num_samples, positive_fraction: sampler (Faster R-CNN: 256, 0.5).
      weights: box coder weights (RPN: 1, 1, 1, 1).

    Returns:
      dict of
        labels: int32 [B, A_total]: 1 sampled positive, 0 sampled negative, -1 not sampled.
        box_targets: float32 [B, A_total, 4] encoded deltas to the matched GT (zeros unless
          positive).
        matched_gt: int32 [B, A_total] matched GT index, -1 unless a (sampled or not) positive.
    """
    anchors = tf.cast(anchors, tf.float32)
    gt_boxes = tf.cast(gt_boxes, tf.float32)
    gt_mask = tf.cast(gt_mask, tf.bool)
    batch = tf.shape(gt_boxes)[0]
    tiled = tf.tile(anchors[None], tf.stack([batch, 1, 1]))
    iou = box_ops.pairwise_iou(tiled, gt_boxes, None, gt_mask)  # [B, A, G], -1 at padding
    matcher = mg_box_matcher.BoxMatcher(
        thresholds=[negative_iou, positive_iou], indicators=[-1, -2, 1]
    )
    matched, indicators = matcher(iou)
    # Low-quality matches: anchors whose IoU equals a real GT's best (and > 0) are positive.
    best_per_gt = tf.reduce_max(iou, axis=1, keepdims=True)  # [B, 1, G]
    is_best = (iou >= best_per_gt) & (best_per_gt > 0.0) & gt_mask[:, None, :]
    forced = tf.reduce_any(is_best, axis=-1)
    forced_gt = tf.argmax(tf.where(is_best, iou, -2.0), axis=-1, output_type=tf.int32)
    matched = tf.where(forced, forced_gt, matched)
    positive = forced | tf.equal(indicators, 1)
    negative = tf.equal(indicators, -1) & ~positive
    sample = balanced_sample(
        positive, negative, num_samples=num_samples, positive_fraction=positive_fraction, seed=seed
    )
    labels = tf.where(sample["positive"], 1, tf.where(sample["negative"], 0, -1))
    matched_boxes = tf.gather(gt_boxes, matched, batch_dims=1)
    targets = box_ops.encode_boxes(matched_boxes, tiled, weights)
    targets = tf.where(positive[..., None], targets, 0.0)
    return {"labels": labels, "box_targets": targets, "matched_gt": tf.where(positive, matched, -1)}


def smooth_l1(x: tf.Tensor, beta: float) -> tf.Tensor:
    """Elementwise smooth L1 (Huber / beta): 0.5 x^2 / beta for |x| < beta, |x| - 0.5 beta else."""
    ax = tf.abs(x)
    if beta <= 0.0:
        return ax
    return tf.where(ax < beta, 0.5 * ax * ax / beta, ax - 0.5 * beta)


def rpn_losses(
    objectness_logits: tf.Tensor,
    box_deltas: tf.Tensor,
    labels: tf.Tensor,
    box_targets: tf.Tensor,
    *,
    beta: float = 1.0 / 9.0,
) -> Tuple[tf.Tensor, tf.Tensor]:
    """RPN objectness and box losses, normalised like Faster R-CNN (Detectron2).

    Objectness: sigmoid cross-entropy averaged over the sampled anchors. Box: smooth L1 summed over
    the 4 deltas of sampled positives, divided by the number of sampled anchors (not positives),
    so that the box term keeps a weight of about positive_fraction relative to objectness. beta =
    1/9 is Faster R-CNN's sigma = 3 (also Model Garden's RPN huber delta).

    Args:
      objectness_logits: float [B, A_total] raw logits.
      box_deltas: float [B, A_total, 4] predicted deltas (RPN weights).
      labels: int [B, A_total] from `rpn_targets` (1, 0, -1 ignored).
      box_targets: float [B, A_total, 4] from `rpn_targets`.
      beta: smooth L1 transition point.

    Returns:
      (objectness_loss, box_loss): float32 scalars.
    """
    labels = tf.cast(labels, tf.int32)
    sampled = tf.cast(labels >= 0, tf.float32)
    positive = tf.cast(labels > 0, tf.float32)
    count = tf.maximum(tf.reduce_sum(sampled), 1.0)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(
        labels=positive, logits=tf.cast(objectness_logits, tf.float32)
    )
    obj_loss = tf.reduce_sum(ce * sampled) / count
    box = tf.reduce_sum(smooth_l1(tf.cast(box_deltas, tf.float32) - box_targets, beta), axis=-1)
    box_loss = tf.reduce_sum(box * positive) / count
    return obj_loss, box_loss


def generate_proposals(
    objectness_logits: tf.Tensor,
    box_deltas: tf.Tensor,
    anchors: tf.Tensor,
    *,
    pre_nms_top_k: int = 6000,
    nms_iou: float = 0.7,
    post_nms_top_k: int = 300,
    min_size: float = 0.0,
    weights: Sequence[float] = box_ops.RPN_WEIGHTS,
) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Decodes RPN outputs into the top R proposals per image.

    Steps (Faster R-CNN): keep the `pre_nms_top_k` highest logits, decode against their anchors,
    clip to the image, drop boxes with height or width < `min_size`, NMS at `nms_iou`, keep the
    best `post_nms_top_k` (R = 300: Action Transformer §3.1). Outputs are stop_gradient'ed
    (approximate joint training, as Faster R-CNN / TF OD API).

    Args:
      objectness_logits: float [B, A_total].
      box_deltas: float [B, A_total, 4] (RPN weights).
      anchors: float [A_total, 4] normalized yxyx.
      pre_nms_top_k: candidates before NMS (capped at A_total).
      nms_iou: NMS IoU threshold.
      post_nms_top_k: R.
      min_size: minimum height and width, normalized units.
      weights: box coder weights.

    Returns:
      proposals: float32 [B, R, 4] normalized yxyx, best first, zeros at padding.
      scores: float32 [B, R] sigmoid objectness, zeros at padding.
      mask: bool [B, R] true for real proposals (fewer than R may survive NMS).
    """
    logits = tf.stop_gradient(tf.cast(objectness_logits, tf.float32))
    deltas = tf.stop_gradient(tf.cast(box_deltas, tf.float32))
    num = anchors.shape[0]
    k = pre_nms_top_k if num is None else min(pre_nms_top_k, num)
    top_logits, top_idx = tf.math.top_k(logits, k=k)
    top_deltas = tf.gather(deltas, top_idx, batch_dims=1)
    top_anchors = tf.gather(tf.cast(anchors, tf.float32), top_idx)
    boxes = box_ops.clip_boxes(box_ops.decode_boxes(top_deltas, top_anchors, weights))
    keep = (
        (boxes[..., 2] - boxes[..., 0] >= min_size)
        & (boxes[..., 3] - boxes[..., 1] >= min_size)
        & (boxes[..., 2] > boxes[..., 0])
        & (boxes[..., 3] > boxes[..., 1])
    )
    scores = tf.sigmoid(top_logits)
    idx, valid = box_ops.batched_nms(
        boxes, scores, keep, max_output_size=post_nms_top_k, iou_threshold=nms_iou
    )
    valid_f = tf.cast(valid, tf.float32)
    proposals = tf.gather(boxes, idx, batch_dims=1) * valid_f[..., None]
    return proposals, tf.gather(scores, idx, batch_dims=1) * valid_f, valid
