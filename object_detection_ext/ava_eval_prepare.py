"""The evaluator's filtering and ordering: `Rows` (ava_eval_io) -> `Prepared` arrays to score.

Applies the official rules listed in `object_detection_ext.ava_eval` (label map, ground-truth keys,
exclusions, the per-key cap, invalid boxes) with integer keys, and warns (`AvaEvalWarning`) about
detections on videos that the ground truth does not have; an empty ground truth is a ValueError.
"""

import dataclasses

import numpy as np
import pandas as pd

from object_detection_ext import voc_ap
from object_detection_ext.ava_eval_io import Rows, detection_rows, warn

MAX_LISTED_IDS = 3  # video ids named in a warning
NEGATIVE_SUFFIX = "_negative"  # evidence `<type>_negative`: a matched negative of `<type>`


@dataclasses.dataclass
class Prepared:
    """What the evaluator scores. Detections are in processing order (descending score)."""

    gt_key: np.ndarray  # [G] int64 key index (into the sorted ground-truth keys)
    gt_class: np.ndarray  # [G] int64 contiguous class index
    gt_boxes: np.ndarray  # [G, 4] float64
    gt_evidence: np.ndarray  # [G] str evidence type, "" when none
    det_key: np.ndarray  # [D] int64
    det_class: np.ndarray  # [D] int64
    det_boxes: np.ndarray  # [D, 4] float64
    det_score: np.ndarray  # [D] float64, descending
    person_key: np.ndarray  # [P] int64 key of every ground-truth row with a box (any class)
    person_boxes: np.ndarray  # [P, 4]
    person_first: np.ndarray  # [P] bool, first row of each distinct (key, box): the persons
    box_key: np.ndarray  # [B] int64 key of each distinct detection box (of det_*)
    box_boxes: np.ndarray  # [B, 4] float64, in descending order of their max score
    persons_per_key: np.ndarray  # [K] int64 unique person boxes per key
    counts: dict
    # Matched negatives (evidence rows `<type>_negative`, e.g. synthetic AVA's look-alikes;
    # None and {} without such rows): det_person_iou [D] float64, the IoU of each detection
    # with the ground-truth person box it overlaps most in its key (-inf: none);
    # det_on_negative {<type>_negative: [D] bool}, that person is a matched negative of the
    # detection's class.
    det_person_iou: np.ndarray = None
    det_on_negative: dict = dataclasses.field(default_factory=dict)


def _keys(codes: np.ndarray, timestamp: np.ndarray) -> np.ndarray:
    """int64 image key: video code in the high 32 bits, timestamp in the low 32 bits."""
    return (codes.astype(np.int64) << 32) | (timestamp.astype(np.int64) & 0xFFFFFFFF)


class _KeyIndex:
    """(video code, timestamp) -> index of the key in the sorted ground-truth keys, or -1.

    A dense table when videos x timestamp span is small (AVA: 64 x ~900), which is ~10x
    faster than a binary search over millions of detection rows; a binary search otherwise.
    """

    MAX_TABLE = 1 << 24

    def __init__(self, keys: np.ndarray, num_codes: int):
        self.keys = keys
        self.table = None
        if len(keys):
            ts = keys & 0xFFFFFFFF
            self.t0, span = int(ts.min()), int(ts.max() - ts.min()) + 1
            if num_codes * span <= self.MAX_TABLE:
                self.table = np.full((num_codes, span), -1, dtype=np.int64)
                self.table[keys >> 32, ts - self.t0] = np.arange(len(keys))

    def __call__(self, codes: np.ndarray, timestamp: np.ndarray) -> np.ndarray:
        if len(self.keys) == 0:
            return np.full(len(codes), -1, dtype=np.int64)
        if self.table is not None:
            t = (timestamp.astype(np.int64) & 0xFFFFFFFF) - self.t0
            inside = (t >= 0) & (t < self.table.shape[1])
            return np.where(inside, self.table[codes, np.where(inside, t, 0)], -1)
        key64 = _keys(codes, timestamp)
        index = np.minimum(np.searchsorted(self.keys, key64), len(self.keys) - 1)
        return np.where(self.keys[index] == key64, index, -1)


def first_occurrences(key: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """[N] bool: True for the first row of each distinct (key, box) pair, in array order.

    Hashes the float64 bits of (key, box) into uint64, factorizes the hashes and checks the
    rows against their group's first row; on a hash collision (never seen) falls back to
    pandas' exact `duplicated`.
    """
    boxes = np.ascontiguousarray(boxes, dtype=np.float64) + 0.0  # -0.0 -> 0.0
    bits = boxes.view(np.uint64)
    digest = key.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    for j in range(4):
        digest = (digest ^ bits[:, j]) * np.uint64(0x100000001B3)
        digest ^= digest >> np.uint64(29)
    codes, uniques = pd.factorize(digest)
    first = np.full(len(uniques), len(key), dtype=np.int64)
    np.minimum.at(first, codes, np.arange(len(key)))
    representative = first[codes]
    if ((key[representative] == key) & (boxes[representative] == boxes).all(axis=1)).all():
        return representative == np.arange(len(key))
    frame = pd.DataFrame(
        {"k": key, "y1": boxes[:, 0], "x1": boxes[:, 1], "y2": boxes[:, 2], "x2": boxes[:, 3]}
    )
    return ~frame.duplicated().to_numpy()


def check_groundtruth(gt: Rows, ids, excluded) -> None:
    """Raises ValueError (one line) when nothing can be scored: no ground-truth row, every
    keyframe excluded, or no box with an action id of the label map outside the exclusions."""
    if len(gt.video_id) == 0:
        raise ValueError(f"{gt.source}: empty ground truth (no rows): nothing to score")
    codes, _ = pd.factorize(np.concatenate([gt.video_id, excluded[0]]))
    key64 = _keys(codes, np.concatenate([gt.timestamp, excluded[1]]).astype(np.int64))
    kept = ~np.isin(key64[: len(gt.video_id)], key64[len(gt.video_id) :])
    if not kept.any():
        n = len(np.unique(key64[: len(gt.video_id)]))
        raise ValueError(
            f"{gt.source}: empty ground truth ({n:,} keyframe{'s' * (n != 1)}, "
            "all excluded): nothing to score"
        )
    scorable = kept & np.isfinite(gt.boxes).all(axis=1) & np.isin(gt.action_id, ids)
    if not scorable.any():
        raise ValueError(
            f"{gt.source}: empty ground truth: none of its {len(kept):,} rows has "
            f"a box with an action id of the label map ({min(ids)}..{max(ids)}) "
            "outside the excluded keyframes: nothing to score"
        )


def prepare(gt: Rows, det: Rows, ids, excluded, evidence, max_per_key: int) -> Prepared:
    """Applies the official filters and orders (see ava_eval's docstring)."""
    ids = np.asarray(ids, dtype=np.int64)
    ev_vids = (
        np.asarray(evidence["video_id"], dtype=object)
        if evidence is not None
        else np.array([], dtype=object)
    )
    parts = [gt.video_id, det.video_id, excluded[0], ev_vids]
    codes, uniques = pd.factorize(np.concatenate(parts))
    bounds = np.cumsum([0] + [len(p) for p in parts])
    gt_codes, det_codes = codes[bounds[0] : bounds[1]], codes[bounds[1] : bounds[2]]
    gt_key64 = _keys(gt_codes, gt.timestamp)
    excluded_keys = np.unique(_keys(codes[bounds[2] : bounds[3]], excluded[1]))
    counts = {"groundtruth_rows": len(gt_key64), "detection_rows": len(det_codes)}
    gt_in = ~np.isin(gt_key64, excluded_keys)
    keys = np.unique(gt_key64[gt_in])
    key_of = _KeyIndex(keys, len(uniques))
    counts.update(groundtruth_keys=len(keys), excluded_keys=int(len(excluded_keys)))

    lookup = np.full(int(ids.max()) + 2, -1, dtype=np.int64)  # AVA id -> class index
    lookup[ids] = np.arange(len(ids))

    def class_of(action_id):
        action_id = np.asarray(action_id, dtype=np.int64)
        inside = (action_id >= 0) & (action_id < len(lookup))
        return np.where(inside, lookup[np.where(inside, action_id, -1)], -1)

    has_box = np.isfinite(gt.boxes).all(axis=1)
    gt_class = class_of(gt.action_id)
    keep = np.flatnonzero(gt_in & has_box & (gt_class >= 0))
    counts["groundtruth_rows_scored"] = len(keep)
    counts["detections_without_score"] = det.missing_score
    counts["detections_on_videos_not_in_groundtruth"] = _check_videos(
        gt_codes, det_codes, uniques, det
    )
    gt_evidence = _join_evidence(
        gt_key64[keep],
        np.asarray(gt.person_id)[keep],
        np.asarray(gt.action_id)[keep],
        evidence,
        codes[bounds[3] :],
    )
    person = np.flatnonzero(gt_in & has_box)
    person_key = key_of(gt_codes[person], gt.timestamp[person])

    det_class = class_of(det.action_id)
    det_key = key_of(det_codes, det.timestamp)
    in_map = det_class >= 0
    counts["detections_outside_label_map"] = int(len(in_map) - in_map.sum())
    rows = np.flatnonzero(in_map & (det_key >= 0))
    counts["detections_on_keys_not_in_groundtruth"] = int(in_map.sum()) - len(rows)
    # Processing order: descending score, file order among equal scores.
    rows = rows[voc_ap.descending_score_order(det.score[rows])]
    counts["detections_over_cap"] = 0
    if max_per_key > 0 and len(rows):
        row_key = det_key[rows]
        if np.bincount(row_key).max() > max_per_key:
            by_key = voc_ap.stable_argsort_uint(row_key, len(keys))
            sorted_keys = row_key[by_key]
            run_start = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
            run_of = np.repeat(run_start, np.diff(np.r_[run_start, len(rows)]))
            under_cap = np.empty(len(rows), dtype=bool)
            under_cap[by_key] = (np.arange(len(rows)) - run_of) < max_per_key
            counts["detections_over_cap"] = int(len(rows) - under_cap.sum())
            rows = rows[under_cap]
    boxes = det.boxes64(rows)
    valid = (boxes[:, 0] < boxes[:, 2]) & (boxes[:, 1] < boxes[:, 3])
    counts["detections_invalid_box"] = int(len(valid) - valid.sum())
    rows, boxes = rows[valid], boxes[valid]
    counts["detections_scored"] = len(rows)

    person_boxes = gt.boxes64(person)
    person_first = first_occurrences(person_key, person_boxes)
    box_rows = _distinct_boxes(det, det_key, rows)
    det_person_iou, det_on_negative = None, {}
    negatives = _negative_rows(evidence, codes[bounds[3] :], key_of, class_of)
    if negatives:  # only then: real AVA has none, and this pass costs a matching
        first = np.flatnonzero(person_first)
        det_person, det_person_iou = voc_ap.assign_to_groundtruth(
            det_key[rows], boxes, person_key[first], person_boxes[first], len(keys)
        )
        pid = np.asarray(gt.person_id)[person[first]]
        det_pid = np.where(det_person >= 0, pid[np.maximum(det_person, 0)], -1)
        det_rows = pd.MultiIndex.from_arrays([det_key[rows], det_pid, det_class[rows]])
        det_on_negative = {t: (det_pid >= 0) & det_rows.isin(n) for t, n in negatives.items()}
    return Prepared(
        gt_key=key_of(gt_codes[keep], gt.timestamp[keep]),
        gt_class=gt_class[keep],
        gt_boxes=gt.boxes64(keep),
        gt_evidence=gt_evidence,
        det_key=det_key[rows],
        det_class=det_class[rows],
        det_boxes=boxes,
        det_score=det.score[rows],
        person_key=person_key,
        person_boxes=person_boxes,
        person_first=person_first,
        box_key=det_key[box_rows],
        box_boxes=det.boxes64(box_rows),
        persons_per_key=np.bincount(person_key[person_first], minlength=len(keys)),
        counts=counts,
        det_person_iou=det_person_iou,
        det_on_negative=det_on_negative,
    )


def _negative_rows(evidence, ev_codes, key_of, class_of) -> dict:
    """{<type>_negative: MultiIndex of (key index, person id, class index)}: the evidence rows
    `<type>_negative` of a scored key and a label-map class ({}: none, or no evidence)."""
    if evidence is None:
        return {}
    ev_type = np.asarray(evidence["evidence"], dtype=object).astype(str)
    ev_key = key_of(ev_codes, np.asarray(evidence["timestamp"]))
    ev_class = class_of(np.asarray(evidence["action_id"]))
    ev_pid = np.asarray(evidence["person_id"], dtype=np.int64)
    keep = np.char.endswith(ev_type, NEGATIVE_SUFFIX) & (ev_key >= 0) & (ev_class >= 0)
    return {
        t: pd.MultiIndex.from_arrays([ev_key[sel], ev_pid[sel], ev_class[sel]])
        for t in np.unique(ev_type[keep])
        for sel in [keep & (ev_type == t)]
    }


def _check_videos(gt_codes, det_codes, uniques, det: Rows) -> int:
    """Warns about detection rows on videos absent from the ground truth; returns their count."""
    gt_video = np.zeros(len(uniques), dtype=bool)
    gt_video[gt_codes] = True
    outside = ~gt_video[det_codes]
    count = int(outside.sum())
    if count:
        videos = pd.unique(det_codes[outside])
        named = ", ".join(str(uniques[v]) for v in videos[:MAX_LISTED_IDS])
        more = ", ..." if len(videos) > MAX_LISTED_IDS else ""
        videos_text = (
            f"{len(videos):,} video{'s' * (len(videos) > 1)} absent from the "
            f"ground truth ({named}{more})"
        )
        if count == len(outside):
            warn(
                f"{det.where(0)}: no detection row is on a video of the ground truth "
                f"({detection_rows(count)} on {videos_text}): all ignored, as the official "
                "evaluator does"
            )
        else:
            warn(
                f"{det.where(np.argmax(outside))}: {count:,} of {detection_rows(len(outside))}"
                f" on {videos_text}: ignored, as the official evaluator does"
            )
    return count


def _distinct_boxes(det: Rows, det_key: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows (of `rows`) holding each distinct (key, box) once, with its maximum score, in
    descending order of that score.

    Detectors write a box's classes on consecutive lines, so runs of equal (key, box) in
    file order are first collapsed with a cheap neighbour comparison (max score per run);
    the general hash-based dedupe then only sees one row per run.
    """
    kept = np.zeros(len(det_key), dtype=bool)
    kept[rows] = True
    file_rows = np.flatnonzero(kept)
    if len(file_rows) == 0:
        return file_rows
    key, boxes = det_key[file_rows], det.boxes[file_rows]
    new_run = np.ones(len(file_rows), dtype=bool)
    new_run[1:] = (key[1:] != key[:-1]) | (boxes[1:] != boxes[:-1]).any(axis=1)
    starts = np.flatnonzero(new_run)
    run_rows = file_rows[starts]
    run_score = np.maximum.reduceat(det.score[file_rows], starts)
    run_rows = run_rows[voc_ap.descending_score_order(run_score)]
    return run_rows[first_occurrences(det_key[run_rows], det.boxes64(run_rows))]


def _join_evidence(key64, person_id, action_id, evidence, ev_codes) -> np.ndarray:
    """Evidence type of each ground-truth row ("" when the evidence table has none)."""
    if evidence is None:
        return np.full(len(key64), "", dtype=object)
    right = pd.DataFrame(
        {
            "k": _keys(ev_codes, np.asarray(evidence["timestamp"])),
            "p": np.asarray(evidence["person_id"], dtype=np.int64),
            "a": np.asarray(evidence["action_id"], dtype=np.int64),
            "e": np.asarray(evidence["evidence"], dtype=object),
        }
    )
    right = right.drop_duplicates(["k", "p", "a"])
    left = pd.DataFrame({"k": key64, "p": person_id, "a": action_id})
    merged = left.merge(right, on=["k", "p", "a"], how="left")
    return merged["e"].fillna("").to_numpy(dtype=object)
