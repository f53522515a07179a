"""Detector outputs -> AVA rows (one row per detected person and action class), and one
keyframe's detections -> JSON values (`tools/detect.py`'s per-keyframe JSON)."""

from typing import Dict, List, Sequence

import numpy as np

# Smallest box side kept (normalized): a tenth of a percent of the frame.
MIN_SIDE = 1e-3


def detections_to_ava(
    outputs: Dict[str, np.ndarray],
    video_id: Sequence[str],
    timestamp: Sequence[int],
    class_ids: Sequence[int],
    min_score: float = 0.0,
) -> Dict[str, np.ndarray]:
    """Flattens batched detections into AVA detection rows (arrays, boxes yxyx).

    Args:
      outputs: numpy values of `detection_boxes` [B, K, 4] (normalized yxyx),
        `action_scores` [B, K, C] and `num_detections` [B].
      video_id: [B] video ids; timestamp: [B] keyframe seconds.
      class_ids: [C] AVA id of each contiguous class index (`LabelMap.ids`).
      min_score: rows with an action score <= this are dropped.
      Boxes thinner than `MIN_SIDE` (a proposal clipped to the frame's edge) are dropped too:
      they overlap nothing, so they could only be false positives, and the AVA CSV (4
      decimals) would store them as empty boxes, which its reader rightly refuses.
    Returns:
      dict with video_id [R] (object), timestamp [R] int32, boxes [R, 4] float32 yxyx,
      action_id [R] int32, score [R] float32: what `object_detection_ext.ava_eval.evaluate`
      and `action_tx.data.ava.write_annotations(kind="detections")` take.
    """
    boxes = np.asarray(outputs["detection_boxes"])
    scores = np.asarray(outputs["action_scores"])
    num = np.asarray(outputs["num_detections"]).astype(int)
    batch, k, c = scores.shape
    sides = np.minimum(boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1])
    valid = ((np.arange(k)[None, :] < num[:, None]) & (sides >= MIN_SIDE))[..., None] & (
        scores > min_score
    )
    b_idx, k_idx, c_idx = np.nonzero(valid)
    vids = np.asarray(
        [v.decode() if isinstance(v, bytes) else str(v) for v in video_id], dtype=object
    )
    return {
        "video_id": vids[b_idx],
        "timestamp": np.asarray(timestamp, np.int32)[b_idx],
        "boxes": boxes[b_idx, k_idx].astype(np.float32),
        "action_id": np.asarray(class_ids, np.int32)[c_idx],
        "score": scores[b_idx, k_idx, c_idx].astype(np.float32),
    }


def detections_to_json(
    boxes: np.ndarray,
    person_scores: np.ndarray,
    action_scores: np.ndarray,
    class_ids: Sequence[int],
    class_names: Sequence[str],
    min_score: float = 0.0,
) -> List[dict]:
    """One keyframe's detections -> [{"box_x1y1x2y2", "person_score", "actions": [{"id",
    "name", "score"}]}], values rounded to 4 decimals, boxes in the AVA CSV's x1,y1,x2,y2 order.

    Args:
      boxes: [K, 4] normalized yxyx; person_scores: [K]; action_scores: [K, C].
      class_ids, class_names: [C] AVA id and name of each contiguous class index.
      min_score: actions with a score <= this are left out; the others are listed best first
        (ties in class order).
    """
    dets = []
    for box, score, actions in zip(boxes, person_scores, action_scores):
        order = [i for i in (-actions).argsort(kind="stable") if actions[i] > min_score]
        y1, x1, y2, x2 = (round(float(v), 4) for v in box)
        dets.append(
            {
                "box_x1y1x2y2": [x1, y1, x2, y2],
                "person_score": round(float(score), 4),
                "actions": [
                    {
                        "id": int(class_ids[i]),
                        "name": class_names[i],
                        "score": round(float(actions[i]), 4),
                    }
                    for i in order
                ],
            }
        )
    return dets
