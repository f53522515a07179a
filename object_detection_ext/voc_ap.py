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
    return _iou_columns(np.asarray(boxes1, np.float64).T, np.asarray(boxes2, np.float64).T)


def _iou_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes given as coordinate rows a, b: [4, N] (y1, x1, y2, x2); returns [N]."""
    height = np.minimum(a[2], b[2])
    height -= np.maximum(a[0], b[0])
    np.maximum(height, 0.0, out=height)
    width = np.minimum(a[3], b[3])
    width -= np.maximum(a[1], b[1])
    np.maximum(width, 0.0, out=width)
    height *= width  # intersection
    union = (a[2] - a[0]) * (a[3] - a[1])
    union += (b[2] - b[0]) * (b[3] - b[1])
    union -= height
    with np.errstate(divide="ignore", invalid="ignore"):
        height /= union
    return height


def stable_argsort_uint(values: np.ndarray, max_value: int) -> np.ndarray:
    """Stable argsort of non-negative integers [N] (any int dtype, values <= max_value).

    An LSD radix sort made of NumPy's radix sort on 16-bit digits: about 3x faster than
    `np.argsort(kind="stable")` on millions of int64 or uint32 values.
    """
    order = np.arange(len(values))
    shift = 0
    while shift == 0 or (max_value >> shift) > 0:
        digit = ((values[order] >> shift) & 0xFFFF).astype(np.uint16)
        order = order[np.argsort(digit, kind="stable")]
        shift += 16
    return order


def descending_score_order(scores: np.ndarray) -> np.ndarray:
    """Stable argsort of scores [N], highest first (equal scores keep their order)."""
    if scores.dtype == np.float32:
        # IEEE bits -> uint32 in ascending float order; complemented for descending. Adding
        # +0.0 turns -0.0 into +0.0 (equal scores); NaN goes last, as in np.argsort(-scores).
        bits = (scores + np.float32(0.0)).view(np.uint32)
        ascending = bits ^ np.where(bits >> 31, np.uint32(0xFFFFFFFF), np.uint32(0x80000000))
        ascending[np.isnan(scores)] = 0
        return stable_argsort_uint(~ascending, 0xFFFFFFFF)
    return np.argsort(-scores, kind="stable")


# Above this many (key, class) groups the assignment looks groups up by binary search
# instead of a dense table.
MAX_DENSE_GROUPS = 1 << 26


def assign_to_groundtruth(
    det_group: np.ndarray,
    det_boxes: np.ndarray,
    gt_group: np.ndarray,
    gt_boxes: np.ndarray,
    num_groups: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The best-overlapping ground-truth box of each detection's group.

    Args:
      det_group: [D] int64 group code of each detection (e.g. key_index * C + class_index).
      det_boxes: [D, 4] float64 yxyx.
      gt_group: [G] int64 group code of each ground-truth box.
      gt_boxes: [G, 4] float64 yxyx.
      num_groups: optional bound on the codes (all < num_groups): enables a dense lookup.
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
    if num_groups is not None and num_groups <= MAX_DENSE_GROUPS:
        per_group = np.bincount(gt_group, minlength=num_groups)
        count = per_group[det_group]
        start = (np.cumsum(per_group) - per_group)[det_group]
    else:
        sorted_groups = gt_group[gt_order]
        start = np.searchsorted(sorted_groups, det_group, side="left")
        count = np.searchsorted(sorted_groups, det_group, side="right") - start
    # Only detections whose group has ground truth need an IoU.
    candidates = np.flatnonzero(count)
    if len(candidates) == 0:
        return best_gt, best_iou
    count, start = count[candidates], start[candidates]
    total = int(count.sum())
    # Enumerate every (detection, same-group ground truth) pair as one flat array.
    pair_det = np.repeat(np.arange(len(candidates)), count)
    offsets = np.cumsum(count) - count
    pair_gt = gt_order[start[pair_det] + np.arange(total) - offsets[pair_det]]
    # Coordinate rows [4, pairs]: contiguous, so the IoU arithmetic streams.
    det_columns = np.ascontiguousarray(det_boxes[candidates].T)
    iou = _iou_columns(det_columns[:, pair_det], np.ascontiguousarray(gt_boxes.T)[:, pair_gt])
    pair_max = np.maximum.reduceat(iou, offsets)
    # First pair reaching the maximum (np.argmax semantics); NaN never compares equal.
    hits = np.flatnonzero(iou == pair_max[pair_det])
    first = np.ones(len(hits), dtype=bool)
    first[1:] = pair_det[hits[1:]] != pair_det[hits[:-1]]
    hits = hits[first]
    pair_det = candidates[pair_det]
    best_gt[pair_det[hits]] = pair_gt[hits]
    best_iou[pair_det[hits]] = iou[hits]
    return best_gt, best_iou


def first_matches(
    best_gt: np.ndarray, best_iou: np.ndarray, iou_threshold: float, num_gt: int
) -> tuple[np.ndarray, np.ndarray]:
    """Which detections match their box, and which reach it first.

    Args:
      best_gt, best_iou: [D] from `assign_to_groundtruth`, detections in processing order
        (descending score).
      iou_threshold: a detection matches its box when IoU >= iou_threshold.
      num_gt: number of ground-truth boxes G.
    Returns:
      matched: [D] bool. first: [D] bool, the first matched detection of each box. Whether a
      box is difficult does not change who reaches it first, so breakdowns reuse these.
    """
    matched = (best_gt >= 0) & (best_iou >= iou_threshold)
    hit = np.flatnonzero(matched)
    first_position = np.full(num_gt, len(best_gt), dtype=np.int64)
    np.minimum.at(first_position, best_gt[hit], hit)
    first = np.zeros(len(best_gt), dtype=bool)
    first[first_position[first_position < len(best_gt)]] = True
    return matched, first


def label_detections(
    best_gt: np.ndarray,
    best_iou: np.ndarray,
    iou_threshold: float,
    gt_difficult: np.ndarray,
    matches=None,
) -> tuple[np.ndarray, np.ndarray]:
    """True positives and ignored detections from `assign_to_groundtruth`'s output.

    Args:
      best_gt, best_iou: [D] as returned by `assign_to_groundtruth`, with the detections in
        processing order (descending score; the first detection reaching a box takes it).
      iou_threshold: a detection matches its box when IoU >= iou_threshold.
      gt_difficult: [G] bool, ground-truth boxes whose matches are ignored.
      matches: optional precomputed `first_matches(...)` output.
    Returns:
      tp: [D] bool true positives.
      ignored: [D] bool detections matched to a difficult box (neither TP nor FP).
    """
    matched, first = matches or first_matches(best_gt, best_iou, iou_threshold, len(gt_difficult))
    difficult = np.zeros(len(best_gt), dtype=bool)
    difficult[matched] = gt_difficult[best_gt[matched]]
    return first & ~difficult, matched & difficult


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


def per_class_average_precision(
    class_index: np.ndarray, tp: np.ndarray, num_gt: np.ndarray, order: np.ndarray | None = None
) -> np.ndarray:
    """AP of every class at once.

    Args:
      class_index: [K] int contiguous class index (0..C-1) of each counted detection (ignored
        detections already removed), in descending score order over all classes.
      tp: [K] bool true-positive flags of those detections.
      num_gt: [C] int number of non-difficult ground-truth boxes per class.
      order: optional [K] stable argsort of class_index, when the caller has it already.
    Returns:
      [C] float64 AP per class (NaN where num_gt is 0).
    """
    num_classes = len(num_gt)
    # A stable sort by class keeps the descending score order inside each class.
    if order is None:
        order = stable_argsort_uint(class_index, num_classes)
    bounds = np.concatenate([[0], np.cumsum(np.bincount(class_index, minlength=num_classes))])
    tp_sorted = tp[order]
    return np.array(
        [
            average_precision(tp_sorted[bounds[c] : bounds[c + 1]], int(num_gt[c]))
            for c in range(num_classes)
        ],
        dtype=np.float64,
    )
