"""PASCAL VOC matching and average precision, vectorised with NumPy (no loop over detections).

These reproduce the semantics of the TF Object Detection API evaluator that the official
ActivityNet AVA script uses (`per_image_evaluation.py`, `metrics.py`):

* IoU without the "+1" pixel convention: intersection / (area1 + area2 - intersection).
* Each detection is compared only with the ground-truth boxes of its own group (image key and
  class). It is assigned the box of highest IoU (the first one on equal IoU), whether or not
  that box was already taken: the TF OD API does not fall back to the second-best box.
* Detections are processed in descending score order. A detection whose assigned box has
  IoU >= threshold is a true positive if it is the first to reach that box, a false positive
  otherwise; if the assigned box is "difficult" the detection is ignored (neither TP nor FP).
  Everything else is a false positive.
* AP is the VOC area under the precision envelope (precision made non-increasing in recall).
  A class with no (non-difficult) ground truth has AP NaN; one with ground truth and no
  detection has AP 0.
"""
import numpy as np


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Areas of boxes [..., 4] given as [y1, x1, y2, x2]; returns [...]."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def paired_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """Row-wise IoU of boxes1[i] and boxes2[i], both [N, 4] yxyx; returns [N] float64.

    The same arithmetic as TF OD API's `np_box_ops.iou` (no +1), so that comparisons with
    the threshold agree with the official evaluator to the last bit.
    """
    heights = np.maximum(0.0, np.minimum(boxes1[:, 2], boxes2[:, 2]) -
                         np.maximum(boxes1[:, 0], boxes2[:, 0]))
    widths = np.maximum(0.0, np.minimum(boxes1[:, 3], boxes2[:, 3]) -
                        np.maximum(boxes1[:, 1], boxes2[:, 1]))
    intersection = heights * widths
    with np.errstate(divide="ignore", invalid="ignore"):
        return intersection / (box_area(boxes1) + box_area(boxes2) - intersection)


def assign_to_groundtruth(det_group: np.ndarray, det_boxes: np.ndarray,
                          gt_group: np.ndarray, gt_boxes: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
    """The best-overlapping ground-truth box of each detection's group.

    Args:
      det_group: [D] int64 group code of each detection (e.g. key_index * C + class_index).
      det_boxes: [D, 4] float64 yxyx.
      gt_group: [G] int64 group code of each ground-truth box.
      gt_boxes: [G, 4] float64 yxyx.
    Returns:
      best_gt: [D] int64 index into the ground truth of the highest-IoU box of the same group
        (the first in ground-truth order on equal IoU), -1 when the group has no ground truth
        or every IoU is NaN.
      best_iou: [D] float64 that IoU, -inf where best_gt is -1.
    """
    num_det = len(det_group)
    best_gt = np.full(num_det, -1, dtype=np.int64)
    best_iou = np.full(num_det, -np.inf)
    if num_det == 0 or len(gt_group) == 0:
        return best_gt, best_iou
    gt_order = np.argsort(gt_group, kind="stable")
    sorted_groups = gt_group[gt_order]
    start = np.searchsorted(sorted_groups, det_group, side="left")
    count = np.searchsorted(sorted_groups, det_group, side="right") - start
    total = int(count.sum())
    if total == 0:
        return best_gt, best_iou
    # Enumerate every (detection, same-group ground truth) pair as one flat array.
    pair_det = np.repeat(np.arange(num_det), count)
    offsets = np.cumsum(count) - count
    pair_gt = gt_order[start[pair_det] + np.arange(total) - offsets[pair_det]]
    iou = paired_iou(det_boxes[pair_det], gt_boxes[pair_gt])
    has = count > 0
    group_max = np.maximum.reduceat(iou, offsets[has])
    pair_max = np.full(num_det, np.nan)
    pair_max[has] = group_max
    # First pair reaching the maximum (np.argmax semantics); NaN never compares equal.
    hits = np.flatnonzero(iou == pair_max[pair_det])
    first = np.ones(len(hits), dtype=bool)
    first[1:] = pair_det[hits[1:]] != pair_det[hits[:-1]]
    hits = hits[first]
    best_gt[pair_det[hits]] = pair_gt[hits]
    best_iou[pair_det[hits]] = iou[hits]
    return best_gt, best_iou


def label_detections(best_gt: np.ndarray, best_iou: np.ndarray, iou_threshold: float,
                     gt_difficult: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True positives and ignored detections from `assign_to_groundtruth`'s output.

    Args:
      best_gt, best_iou: [D] as returned by `assign_to_groundtruth`, with the detections in
        processing order (descending score; the first detection reaching a box takes it).
      iou_threshold: a detection matches its box when IoU >= iou_threshold.
      gt_difficult: [G] bool, ground-truth boxes whose matches are ignored.
    Returns:
      tp: [D] bool true positives.
      ignored: [D] bool detections matched to a difficult box (neither TP nor FP).
    """
    matched = (best_gt >= 0) & (best_iou >= iou_threshold)
    ignored = np.zeros(len(best_gt), dtype=bool)
    ignored[matched] = gt_difficult[best_gt[matched]]
    candidates = np.flatnonzero(matched & ~ignored)
    # return_index uses a stable sort: the index is that of the first detection in order.
    _, first = np.unique(best_gt[candidates], return_index=True)
    tp = np.zeros(len(best_gt), dtype=bool)
    tp[candidates[first]] = True
    return tp, ignored


def average_precision(tp: np.ndarray, num_gt: int) -> float:
    """VOC AP with the precision envelope for one class.

    Args:
      tp: [K] bool, the class's detections in descending score order (True = true positive).
      num_gt: number of (non-difficult) ground-truth boxes of the class.
    Returns:
      AP in [0, 1]; NaN when num_gt == 0; 0.0 when there is no detection.
    """
    if num_gt == 0:
        return float("nan")
    if len(tp) == 0:
        return 0.0
    cum_tp = np.cumsum(tp.astype(int))
    cum_fp = np.cumsum(1 - tp.astype(int))
    precision = cum_tp.astype(float) / (cum_tp + cum_fp)
    recall = cum_tp.astype(float) / num_gt
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    # Envelope: the best precision reachable at this recall or any higher one.
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def per_class_average_precision(class_index: np.ndarray, tp: np.ndarray, num_gt: np.ndarray
                                ) -> np.ndarray:
    """AP of every class at once.

    Args:
      class_index: [K] int contiguous class index (0..C-1) of each counted detection (ignored
        detections already removed), in descending score order over all classes.
      tp: [K] bool true-positive flags of those detections.
      num_gt: [C] int number of non-difficult ground-truth boxes per class.
    Returns:
      [C] float64 AP per class (NaN where num_gt is 0).
    """
    num_classes = len(num_gt)
    # A stable sort by class keeps the descending score order inside each class.
    order = np.argsort(class_index, kind="stable")
    bounds = np.searchsorted(class_index[order], np.arange(num_classes + 1))
    tp_sorted = tp[order]
    return np.array([average_precision(tp_sorted[bounds[c]:bounds[c + 1]], int(num_gt[c]))
                     for c in range(num_classes)], dtype=np.float64)
