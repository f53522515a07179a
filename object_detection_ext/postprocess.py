"""Second-stage post-processing: refine RoIs, score, class-agnostic NMS, top K.

AVA convention: one detection = one person box with C action scores; NMS is class-agnostic on
the person score, and the score of action c = person score x action probability (DESIGN.md).
Only ops that run in tf.function and export in a SavedModel (NMS: `box_ops.batched_nms`).
"""
from typing import Dict, Optional, Sequence

import tensorflow as tf

from object_detection_ext import box_ops


def postprocess(rois: tf.Tensor, roi_mask: tf.Tensor, person_scores: tf.Tensor,
                action_probs: tf.Tensor, box_deltas: Optional[tf.Tensor] = None, *,
                weights: Sequence[float] = box_ops.SECOND_STAGE_WEIGHTS, nms_iou: float = 0.6,
                max_detections: int = 100, score_threshold: float = 0.0
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
  idx, valid = box_ops.batched_nms(boxes, scores, roi_mask, max_output_size=max_detections,
                                   iou_threshold=nms_iou, score_threshold=score_threshold)
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
