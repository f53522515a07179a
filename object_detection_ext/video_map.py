"""Video-mAP: per-frame detections linked into tubes, scored against ground-truth tubes.

Inputs are AVA-format rows (CSV paths or arrays, as `ava_eval.evaluate` takes): a ground-truth
tube is the rows of one (video, person_id, action_id); its frames are the keyframe timestamps.
Timestamps are mapped to positions, the index of each keyframe among the sorted timestamps of
its video (ground truth and detections together), so a layout with keyframes every k-th frame
links and measures tubes over keyframes.

* Linking: `video_link.link_tubes`, the greedy online linking of Singh et al. (ICCV 2017).
* Spatio-temporal IoU of a detected and a ground-truth tube of the same video and class (as in
  Weinzaepfel et al., ICCV 2015, and Kalogeiton et al., ACT, ICCV 2017): the temporal IoU of
  their [first, last] ranges times the mean spatial IoU over the positions in both ranges
  (a position inside a ground-truth range without a box, a gap, counts IoU 0).
* Matching and AP as the frame-mAP evaluator (`voc_ap`): tubes in descending score order over
  all videos; each is assigned the ground-truth tube of its video and class with the highest
  ST-IoU (the first on ties), a true positive if that IoU >= threshold and it is the first
  to reach that tube; AP is the VOC area under the precision envelope. video-mAP is the mean
  over classes with ground truth; "0.5:0.95" averages the mAP at 0.5, 0.55, ..., 0.95.
"""

import dataclasses

import numpy as np

from object_detection_ext import ava_eval_io, video_link, voc_ap

THRESHOLDS = (0.2, 0.5, 0.75)
COCO_THRESHOLDS = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2))


@dataclasses.dataclass
class VideoMapResult:
    """map: threshold -> video-mAP; map_50_95: mean over COCO_THRESHOLDS; per_class:
    threshold -> {class id: AP or NaN}; counts: sizes of the inputs and tubes."""

    map: dict
    map_50_95: float
    per_class: dict
    counts: dict
    class_names: dict

    def to_json(self) -> dict:
        def clean(v):
            return None if np.isnan(v) else float(v)

        return {
            "video_mAP": {f"{t:g}": clean(v) for t, v in self.map.items()},
            "video_mAP@0.5:0.95": clean(self.map_50_95),
            "per_class": {
                f"{t:g}": {str(c): clean(ap) for c, ap in aps.items()}
                for t, aps in self.per_class.items()
            },
            "counts": self.counts,
        }

    def format_table(self) -> str:
        shown = [t for t in THRESHOLDS if t in self.per_class]
        lines = ["class_id  " + "  ".join(f"AP@{t:<5g}" for t in shown) + "  name"]
        for c in sorted(self.class_names):
            aps = "  ".join(f"{self.per_class[t][c]:8.4f}" for t in shown)
            lines.append(f"{c:8d}  {aps}  {self.class_names[c]}")
        lines.append(
            "video-mAP "
            + "  ".join(f"@{t:g}={self.map[t]:.4f}" for t in shown)
            + f"  @0.5:0.95={self.map_50_95:.4f}"
        )
        return "\n".join(lines)


def _ranges(owner, pos, num):
    first = np.full(num, np.iinfo(np.int64).max)
    last = np.full(num, -1)
    np.minimum.at(first, owner, pos)
    np.maximum.at(last, owner, pos)
    return first, last


def groundtruth_tubes(stream, tube_key, position):
    """Ground-truth tubes from rows.

    Args:
      stream: [N] int64 video_index * C + class_index. tube_key: [N] int64, equal within a
        tube of a stream (e.g. the person id). position: [N] int64 keyframe position.
    Returns:
      tube_stream [G], first [G], last [G] (inclusive positions), the tube of each row in
      `order` [N], and order [N]: the rows sorted by (tube, position).
    """
    codes = np.stack([stream, tube_key], 1)
    uniq, tube = np.unique(codes, axis=0, return_inverse=True)
    tube = tube.reshape(-1)
    order = np.lexsort((position, tube))
    first, last = _ranges(tube, position, len(uniq))
    return uniq[:, 0], first, last, tube[order], order


def st_iou_pairs(
    det: video_link.Tubes, gt_stream, gt_first, gt_last, gt_start, gt_boxes, gt_present
):
    """ST-IoU of every (detected tube, ground-truth tube of the same stream) pair.

    Returns pair_det [P], pair_gt [P] int64 (grouped by detected tube, ground truth in order)
    and st_iou [P] float64.
    """
    g_order = np.argsort(gt_stream, kind="stable")
    start = np.searchsorted(gt_stream[g_order], det.stream, "left")
    count = np.searchsorted(gt_stream[g_order], det.stream, "right") - start
    pair_det = np.repeat(np.arange(len(det.stream)), count)
    offs = np.cumsum(count) - count
    pair_gt = g_order[start[pair_det] + np.arange(len(pair_det)) - offs[pair_det]]
    lo = np.maximum(det.first[pair_det], gt_first[pair_gt])
    hi = np.minimum(det.last[pair_det], gt_last[pair_gt])
    inter = np.maximum(hi - lo + 1, 0)
    union = (
        det.last[pair_det]
        - det.first[pair_det]
        + 1
        + gt_last[pair_gt]
        - gt_first[pair_gt]
        + 1
        - inter
    )
    # One row per (pair, overlapping position): spatial IoUs summed per pair.
    row_pair = np.repeat(np.arange(len(pair_det)), inter)
    row_offs = np.cumsum(inter) - inter
    row_pos = lo[row_pair] + np.arange(len(row_pair)) - row_offs[row_pair]
    d_row = det.start[pair_det[row_pair]] + row_pos - det.first[pair_det[row_pair]]
    g_row = gt_start[pair_gt[row_pair]] + row_pos - gt_first[pair_gt[row_pair]]
    iou = np.nan_to_num(voc_ap.paired_iou(det.boxes[d_row], gt_boxes[g_row]))
    iou[~gt_present[g_row]] = 0.0
    spatial = np.bincount(row_pair, weights=iou, minlength=len(pair_det))
    with np.errstate(invalid="ignore", divide="ignore"):
        st = np.where(inter > 0, spatial / np.maximum(inter, 1) * inter / union, 0.0)
    return pair_det, pair_gt, st


def evaluate(
    groundtruth,
    detections,
    label_map,
    *,
    thresholds=THRESHOLDS,
    link_iou=0.5,
    max_gap=5,
    top_n=10,
    excluded=None,
) -> VideoMapResult:
    """Video-mAP of per-frame detections (see the module docstring).

    Args:
      groundtruth, detections: AVA CSV paths or dicts/objects of arrays (video_id, timestamp,
        boxes yxyx, action_id, person_id / score), as `ava_eval.evaluate`.
      label_map: path, `LabelMap`, dict id -> name or sequence of ids.
      thresholds: ST-IoU thresholds reported besides 0.5:0.95.
      link_iou, max_gap, top_n: linking parameters (`video_link.link_tubes`).
      excluded: optional excluded-timestamps CSV path or (video_id, timestamp) pairs: those
        keyframes are dropped from both sides before linking.
    """
    labels = ava_eval_io.as_label_map(label_map)
    gt = ava_eval_io.as_rows(groundtruth, "groundtruth")
    det = ava_eval_io.as_rows(detections, "detections")
    ids = np.asarray(labels.ids)
    num_classes = len(ids)
    g_keep = np.isin(gt.action_id, ids) & ~np.isnan(gt.boxes[:, 0])
    d_keep = np.isin(det.action_id, ids)
    videos, v_index = np.unique(
        np.r_[gt.video_id[g_keep], det.video_id[d_keep]].astype(str), return_inverse=True
    )
    ts = np.r_[gt.timestamp[g_keep], det.timestamp[d_keep]].astype(np.int64)
    if excluded is not None:
        ex_v, ex_t = ava_eval_io.as_excluded(excluded)  # sorted pairs
        ex = np.isin(
            np.char.add(np.char.add(videos[v_index], "@"), ts.astype(str)),
            np.char.add(np.char.add(np.asarray(ex_v, str), "@"), np.asarray(ex_t).astype(str)),
        )
    else:
        ex = np.zeros(len(ts), dtype=bool)
    # Position = rank of the timestamp among its video's distinct timestamps.
    key = v_index.astype(np.int64) * (int(ts.max(initial=0)) + 1) + ts
    uniq_key, key_index = np.unique(key, return_inverse=True)
    key_video = uniq_key // (int(ts.max(initial=0)) + 1)
    video_first = np.searchsorted(key_video, key_video, "left")
    pos = (np.arange(len(uniq_key)) - video_first)[key_index]
    n_gt = int(g_keep.sum())
    cls = np.searchsorted(ids, np.r_[gt.action_id[g_keep], det.action_id[d_keep]])
    stream = v_index.astype(np.int64) * num_classes + cls
    g_ok, d_ok = ~ex[:n_gt], ~ex[n_gt:]

    g_rows = np.flatnonzero(g_keep)[g_ok]
    g_stream, g_pos = stream[:n_gt][g_ok], pos[:n_gt][g_ok]
    tube_stream, g_first, g_last, g_owner, g_order = groundtruth_tubes(
        g_stream, gt.person_id[g_rows].astype(np.int64), g_pos
    )
    g_start, g_boxes, g_present = video_link.dense_rows(
        g_first, g_last, g_owner, g_pos[g_order], gt.boxes64(g_rows[g_order])
    )
    d_rows = np.flatnonzero(d_keep)[d_ok]
    tubes = video_link.link_tubes(
        stream[n_gt:][d_ok],
        pos[n_gt:][d_ok],
        det.boxes64(d_rows),
        det.score[d_rows],
        link_iou=link_iou,
        max_gap=max_gap,
        top_n=top_n,
    )
    pair_det, pair_gt, st = st_iou_pairs(
        tubes, tube_stream, g_first, g_last, g_start, g_boxes, g_present
    )
    # Best ground-truth tube per detected tube: first maximum of its pair group.
    best_gt = np.full(len(tubes.stream), -1, np.int64)
    best_iou = np.full(len(tubes.stream), -np.inf)
    if len(pair_det):
        group = np.flatnonzero(np.r_[True, pair_det[1:] != pair_det[:-1]])
        gmax = np.maximum.reduceat(st, group)
        hits = np.flatnonzero(st == np.repeat(gmax, np.diff(np.r_[group, len(st)])))
        hits = hits[np.r_[True, pair_det[hits[1:]] != pair_det[hits[:-1]]]]
        best_gt[pair_det[hits]] = pair_gt[hits]
        best_iou[pair_det[hits]] = st[hits]
    order = voc_ap.descending_score_order(tubes.score)
    best_gt, best_iou = best_gt[order], best_iou[order]
    t_class = (tubes.stream % num_classes)[order]
    num_gt = np.bincount(tube_stream % num_classes, minlength=num_classes)
    class_order = voc_ap.stable_argsort_uint(t_class, num_classes)
    per_class, maps = {}, {}
    for thr in sorted(set(thresholds) | set(COCO_THRESHOLDS)):
        _, first = voc_ap.first_matches(best_gt, best_iou, thr, len(tube_stream))
        ap = voc_ap.per_class_average_precision(t_class, first, num_gt, class_order)
        per_class[thr] = {int(i): float(a) for i, a in zip(ids, ap)}
        maps[thr] = float(np.nanmean(ap)) if np.any(num_gt) else float("nan")
    counts = {
        "videos": int(len(videos)),
        "groundtruth_tubes": int(len(tube_stream)),
        "detection_rows": int(d_ok.sum()),
        "linked_tubes": int(len(tubes.stream)),
    }
    return VideoMapResult(
        map={t: maps[t] for t in thresholds},
        map_50_95=float(np.mean([maps[t] for t in COCO_THRESHOLDS])),
        per_class={t: per_class[t] for t in thresholds},
        counts=counts,
        class_names=dict(labels.names),
    )
