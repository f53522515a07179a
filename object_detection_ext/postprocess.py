"""Second-stage post-processing: refine RoIs, score, NMS (class-agnostic or per class), top K.

AVA convention: one detection = one person box with C action scores; the score of action c =
person score x action probability (docs/DESIGN.md). NMS is class-agnostic on the person score by
default; `class_specific_nms` runs it per action class on those products instead (HGRNN §3.3).
Only ops that run in tf.function and export in a SavedModel (NMS: `box_ops.batched_nms`, or the
`tf.while_loop` of `_per_class_nms`).
"""

from typing import Dict, Optional, Sequence

import tensorflow as tf

from object_detection_ext import box_ops

# How a detection's person score is made from the proposal score p (RPN objectness or external
# detector score) and the second-stage actor probability a (`combine_person_scores`).
PERSON_SCORE_RULES = ("proposal", "actor", "product", "geometric")


def combine_person_scores(
    proposal_scores: tf.Tensor, actor_probs: Optional[tf.Tensor], rule: str
) -> tf.Tensor:
    """Person score of each RoI from the first and second stage.

    Args:
      proposal_scores: float [B, N] in [0, 1]: RPN objectness or external detector score.
      actor_probs: float [B, N] in [0, 1]: sigmoid of the second-stage actor logit, or None
        (a head without a background class): then the proposal score is returned whatever
        the rule.
      rule: 'proposal' (p: the first stage alone), 'actor' (a: Faster R-CNN's second-stage
        rescoring), 'product' (p a), 'geometric' (sqrt(p a)).

    Returns:
      float32 [B, N] in [0, 1].
    """
    if rule not in PERSON_SCORE_RULES:
        raise ValueError(f"person score rule must be one of {PERSON_SCORE_RULES}, got {rule!r}")
    p = tf.cast(proposal_scores, tf.float32)
    if actor_probs is None or rule == "proposal":
        return p
    a = tf.cast(actor_probs, tf.float32)
    if rule == "actor":
        return a
    if rule == "product":
        return p * a
    return tf.sqrt(p * a)


def postprocess(
    rois: tf.Tensor,
    roi_mask: tf.Tensor,
    person_scores: tf.Tensor,
    action_probs: tf.Tensor,
    box_deltas: Optional[tf.Tensor] = None,
    *,
    weights: Sequence[float] = box_ops.SECOND_STAGE_WEIGHTS,
    nms_iou: float = 0.6,
    max_detections: int = 100,
    score_threshold: float = 0.0,
    class_specific_nms: bool = False,
    nms: bool = True,
) -> Dict[str, tf.Tensor]:
    """Final detections of a batch.

    Defaults follow the TF OD API Faster R-CNN second stage (class-agnostic IoU 0.6, 100 boxes,
    score threshold 0); the AVA evaluator keeps the 50 best per keyframe anyway.

    Args:
      rois: float [B, N, 4] normalized yxyx (proposals, external detections or GT boxes).
      roi_mask: bool [B, N].
      person_scores: float [B, N] in [0, 1]: RPN objectness / detector score of each RoI (1 for
        GT boxes).
      action_probs: float [B, N, C] per-action probabilities (sigmoid, or softmax for poses).
      box_deltas: optional float [B, N, 4] class-agnostic deltas (`weights`) refining the RoIs.
      weights: box coder weights of `box_deltas`.
      nms_iou: NMS IoU threshold on person boxes.
      max_detections: K.
      score_threshold: RoIs with person score <= this are dropped.
      class_specific_nms: NMS per action class c on person score x action probability c (HGRNN
        §3.3: "class specific non-maximum suppression ... to remove duplicate detections"),
        keeping at most `max_detections` boxes per class. The outputs keep their keys and shapes:
        one row per box that survives the NMS of at least one class (the best K by person score,
        descending); in `action_scores` the classes whose NMS suppressed that box are 0.
      nms: False keeps every RoI (the best `max_detections` by person score): for given boxes
        (ground truth, or external detections already suppressed by their detector) that must
        keep one row each even where people overlap.

    Returns:
      dict of
        detection_boxes: float32 [B, K, 4] normalized yxyx clipped to [0, 1], zeros at padding.
        detection_scores: float32 [B, K] person scores, descending, zeros at padding.
        action_scores: float32 [B, K, C] person score x action probability.
        num_detections: int32 [B].
        detection_indices: int32 [B, K] index into N of each detection (0 at padding).
    """
    boxes = tf.cast(rois, tf.float32)
    if box_deltas is not None:
        boxes = box_ops.decode_boxes(box_deltas, boxes, weights)
    boxes = box_ops.clip_boxes(boxes)
    scores = tf.cast(person_scores, tf.float32)
    # No NMS: an IoU threshold no overlap exceeds (suppression needs IoU > threshold).
    nms_iou = nms_iou if nms else 1.0
    if class_specific_nms:
        return _class_specific(
            boxes,
            tf.cast(roi_mask, tf.bool),
            scores,
            tf.cast(action_probs, tf.float32),
            nms_iou=nms_iou,
            max_detections=max_detections,
            score_threshold=score_threshold,
        )
    idx, valid = box_ops.batched_nms(
        boxes,
        scores,
        roi_mask,
        max_output_size=max_detections,
        iou_threshold=nms_iou,
        score_threshold=score_threshold,
    )
    valid_f = tf.cast(valid, tf.float32)
    det_scores = tf.gather(scores, idx, batch_dims=1) * valid_f
    probs = tf.gather(tf.cast(action_probs, tf.float32), idx, batch_dims=1)
    return {
        "detection_boxes": tf.gather(boxes, idx, batch_dims=1) * valid_f[..., None],
        "detection_scores": det_scores,
        "action_scores": probs * det_scores[..., None],
        "num_detections": tf.reduce_sum(tf.cast(valid, tf.int32), axis=-1),
        "detection_indices": idx,
    }


def _per_class_nms(
    boxes: tf.Tensor,
    class_scores: tf.Tensor,
    candidates: tf.Tensor,
    *,
    iou_threshold: float,
    max_per_class: int,
) -> tf.Tensor:
    """Greedy NMS of every class at once: boxes [B, N, 4], class_scores [B, N, C], candidates
    bool [B, N]. Returns keep: bool [B, N, C].

    All classes share the boxes, so the IoU matrix is computed once; each step of the
    `tf.while_loop` keeps the best remaining candidate of every (image, class) and suppresses
    the candidates overlapping it with IoU > `iou_threshold` (as `box_ops.batched_nms`). Memory
    O(B C N + B N^2) instead of one NMS call per (image, class).
    """
    iou = box_ops.pairwise_iou(boxes, boxes)  # [B, N, N]
    scores = tf.transpose(class_scores, [0, 2, 1])  # [B, C, N]
    n = tf.shape(scores)[2]
    remaining = tf.broadcast_to(candidates[:, None, :], tf.shape(scores))  # [B, C, N]
    keep = tf.zeros_like(remaining)

    def body(step, remaining, keep):
        best = tf.argmax(
            tf.where(remaining, scores, tf.float32.min), axis=-1, output_type=tf.int32
        )  # [B, C]
        live = tf.reduce_any(remaining, axis=-1)[..., None]  # [B, C, 1]
        chosen = tf.cast(tf.one_hot(best, n), tf.bool) & live  # [B, C, N]
        overlap = tf.gather(iou, best, batch_dims=1) > iou_threshold  # [B, C, N]
        return step + 1, remaining & ~((overlap & live) | chosen), keep | chosen

    steps = tf.minimum(n, max_per_class)
    _, _, keep = tf.while_loop(
        lambda step, remaining, keep: (step < steps) & tf.reduce_any(remaining),
        body,
        (tf.constant(0), remaining, keep),
    )
    return tf.transpose(keep, [0, 2, 1])


def _class_specific(boxes, roi_mask, scores, probs, *, nms_iou, max_detections, score_threshold):
    """`postprocess` with `class_specific_nms`: see there for the row convention."""
    candidates = roi_mask & (scores > score_threshold)
    class_scores = probs * scores[..., None]  # [B, N, C]
    keep = _per_class_nms(
        boxes, class_scores, candidates, iou_threshold=nms_iou, max_per_class=max_detections
    )  # [B, N, C]
    survive = tf.reduce_any(keep, axis=-1)  # [B, N]
    # The K best survivors by person score (padded with non-survivors when fewer than K).
    key = tf.where(survive, scores, tf.float32.min)
    pad = tf.fill([tf.shape(key)[0], max_detections], tf.float32.min)
    idx = tf.math.top_k(tf.concat([key, pad], axis=1), k=max_detections).indices
    valid = tf.gather(tf.concat([survive, tf.zeros_like(pad, tf.bool)], axis=1), idx, batch_dims=1)
    idx = tf.where(valid, idx, 0)
    valid_f = tf.cast(valid, tf.float32)
    det_scores = tf.gather(scores, idx, batch_dims=1) * valid_f
    kept = tf.cast(tf.gather(keep, idx, batch_dims=1), tf.float32)  # [B, K, C]
    return {
        "detection_boxes": tf.gather(boxes, idx, batch_dims=1) * valid_f[..., None],
        "detection_scores": det_scores,
        "action_scores": tf.gather(class_scores, idx, batch_dims=1) * kept * valid_f[..., None],
        "num_detections": tf.reduce_sum(tf.cast(valid, tf.int32), axis=-1),
        "detection_indices": idx,
    }
