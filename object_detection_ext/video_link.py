"""Linking per-frame detections into action tubes, per class: greedy online linking.

The algorithm is the online tube generation of Singh et al., "Online Real-time Multiple
Spatiotemporal Action Localisation and Prediction", ICCV 2017, §3.3 (as also used, with
tubelets, by Kalogeiton et al., "Action Tubelet Detector", ICCV 2017, §3.4):

* Classes are linked independently. In each frame only the `top_n` highest-scoring detections
  of the class are kept.
* Frames are visited in order. The tubes alive in the frame are taken in descending order of
  their score (the mean score of their detections); each takes, among the frame's detections
  not yet taken, the highest-scoring one whose IoU with the tube's last box is >= `link_iou`.
* A detection no tube took starts a new tube.
* A tube that went `max_gap` frames without a detection ends (Singh et al.'s k). Frames it
  skipped repeat its last box, so every tube has one box per frame from its first to its last.

"Frame" here is a position: the index of a keyframe among the video's sorted keyframes, so that
keyframes every k-th frame link as consecutive ones.

Vectorised over every (video, class) stream at once: the only Python loops are over frame
positions and, within a frame, over the tubes' rank inside their stream.
"""

import dataclasses

import numpy as np

from object_detection_ext.voc_ap import paired_iou


@dataclasses.dataclass
class Tubes:
    """Linked tubes and their dense per-frame boxes.

    stream: [T] int64 group code (video_index * num_classes + class_index) of each tube.
    score: [T] float64 mean detection score.
    first, last: [T] int64 first and last position (inclusive).
    start: [T] int64 index of the tube's first row in `boxes` (rows first..last, contiguous).
    boxes: [R, 4] float64 yxyx, R = sum(last - first + 1).
    num_detections: [T] int64 detections linked into the tube.
    """

    stream: np.ndarray
    score: np.ndarray
    first: np.ndarray
    last: np.ndarray
    start: np.ndarray
    boxes: np.ndarray
    num_detections: np.ndarray


def _group_ranges(sorted_codes: np.ndarray, codes: np.ndarray):
    """Start and count of each of `codes` in the ascending array `sorted_codes`."""
    start = np.searchsorted(sorted_codes, codes, side="left")
    return start, np.searchsorted(sorted_codes, codes, side="right") - start


def dense_rows(first, last, row_owner, row_position, row_boxes):
    """Boxes on every position first..last of each owner; missing positions repeat the box
    before them (an owner's first position must have a row).

    Args:
      first, last: [T] int64 ranges. row_owner, row_position: [N] int64, sorted by
        (owner, position), one row per (owner, position). row_boxes: [N, 4].
    Returns:
      start: [T] int64 offsets into the dense rows; boxes [R, 4]; present [R] bool (a row
      of the input is at that position).
    """
    length = last - first + 1
    start = np.cumsum(length) - length
    total = int(length.sum())
    slot = start[row_owner] + row_position - first[row_owner]
    source = np.zeros(total, dtype=np.int64)
    present = np.zeros(total, dtype=bool)
    source[slot] = np.arange(len(row_owner))
    present[slot] = True
    # Index of the latest row at or before each slot; every owner's first slot is present.
    marker = np.where(present, np.arange(total), 0)
    np.maximum.accumulate(marker, out=marker)
    return start, np.asarray(row_boxes, np.float64)[source[marker]], present


def link_tubes(stream, position, boxes, scores, *, link_iou=0.5, max_gap=5, top_n=10):
    """Links detections into tubes per stream (see the module docstring).

    Args:
      stream: [N] int64 (video_index * num_classes + class_index) of each detection.
      position: [N] int64 frame position within the video (0-based).
      boxes: [N, 4] float yxyx. scores: [N] float.
      link_iou: IoU with a tube's last box needed to extend it.
      max_gap: positions a tube may go without a detection before it ends (0: none).
      top_n: detections per (stream, position) kept, highest scores first.
    Returns:
      `Tubes`.
    """
    stream = np.asarray(stream, np.int64)
    position = np.asarray(position, np.int64)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64)
    # Order by (position, stream, descending score); keep the top_n of each group.
    order = np.lexsort((-scores, stream, position))
    stream, position, boxes, scores = stream[order], position[order], boxes[order], scores[order]
    group = np.flatnonzero(
        np.r_[True, (stream[1:] != stream[:-1]) | (position[1:] != position[:-1])]
    )
    sizes = np.diff(np.r_[group, len(stream)])
    rank = np.arange(len(stream)) - np.repeat(group, sizes)
    keep = rank < top_n
    stream, position, boxes, scores = stream[keep], position[keep], boxes[keep], scores[keep]
    det_tube = np.full(len(stream), -1, dtype=np.int64)

    capacity = max(16, len(stream) // 4)
    t_stream = np.zeros(capacity, np.int64)
    t_sum = np.zeros(capacity)
    t_count = np.zeros(capacity, np.int64)
    t_last_pos = np.zeros(capacity, np.int64)
    t_last_box = np.zeros((capacity, 4))
    num_tubes = 0
    alive = np.zeros(0, np.int64)
    bounds = np.searchsorted(position, np.unique(position))
    bounds = np.r_[bounds, len(position)]
    for b in range(len(bounds) - 1):
        lo, hi = bounds[b], bounds[b + 1]
        t = position[lo]
        alive = alive[t_last_pos[alive] >= t - max_gap - 1]
        d_stream = stream[lo:hi]
        taken = np.zeros(hi - lo, dtype=bool)
        if len(alive):
            a_start, a_count = _group_ranges(d_stream, t_stream[alive])
            cand = alive[a_count > 0]
            a_start, a_count = a_start[a_count > 0], a_count[a_count > 0]
            if len(cand):
                # Rank of each candidate tube inside its stream by descending mean score.
                mean = t_sum[cand] / t_count[cand]
                o = np.lexsort((cand, -mean, t_stream[cand]))
                cand, a_start, a_count = cand[o], a_start[o], a_count[o]
                s = t_stream[cand]
                head = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
                t_rank = np.arange(len(cand)) - np.repeat(head, np.diff(np.r_[head, len(cand)]))
                # Every (tube, detection of its stream) pair; detections come score-sorted.
                p_tube = np.repeat(np.arange(len(cand)), a_count)
                offs = np.cumsum(a_count) - a_count
                p_det = a_start[p_tube] + np.arange(len(p_tube)) - offs[p_tube]
                iou = paired_iou(t_last_box[cand[p_tube]], boxes[lo + p_det])
                ok = iou >= link_iou
                p_tube, p_det, p_rank = p_tube[ok], p_det[ok], t_rank[p_tube[ok]]
                for k in range(int(p_rank.max()) + 1 if len(p_rank) else 0):
                    sel = np.flatnonzero((p_rank == k) & ~taken[p_det])
                    if not len(sel):
                        continue
                    # First pair per tube = its best free detection (pairs are score-sorted).
                    first = sel[np.r_[True, p_tube[sel[1:]] != p_tube[sel[:-1]]]]
                    tube, det = cand[p_tube[first]], p_det[first]
                    taken[det] = True
                    det_tube[lo + det] = tube
                    t_sum[tube] += scores[lo + det]
                    t_count[tube] += 1
                    t_last_pos[tube] = t
                    t_last_box[tube] = boxes[lo + det]
        new = np.flatnonzero(~taken)
        if len(new):
            if num_tubes + len(new) > capacity:
                grow = max(capacity, len(new))
                t_stream = np.r_[t_stream, np.zeros(grow, np.int64)]
                t_sum = np.r_[t_sum, np.zeros(grow)]
                t_count = np.r_[t_count, np.zeros(grow, np.int64)]
                t_last_pos = np.r_[t_last_pos, np.zeros(grow, np.int64)]
                t_last_box = np.concatenate([t_last_box, np.zeros((grow, 4))])
                capacity += grow
            ids = np.arange(num_tubes, num_tubes + len(new))
            t_stream[ids] = d_stream[new]
            t_sum[ids] = scores[lo + new]
            t_count[ids] = 1
            t_last_pos[ids] = t
            t_last_box[ids] = boxes[lo + new]
            det_tube[lo + new] = ids
            alive = np.r_[alive, ids]
            num_tubes += len(new)

    o = np.lexsort((position, det_tube))
    owner, pos = det_tube[o], position[o]
    first = np.full(num_tubes, np.iinfo(np.int64).max)
    np.minimum.at(first, owner, pos)
    last = t_last_pos[:num_tubes].copy()
    start, dense, _ = dense_rows(first, last, owner, pos, boxes[o])
    return Tubes(
        stream=t_stream[:num_tubes],
        score=t_sum[:num_tubes] / t_count[:num_tubes],
        first=first,
        last=last,
        start=start,
        boxes=dense,
        num_detections=t_count[:num_tubes].copy(),
    )
