"""Inputs of the AVA evaluator: CSV paths or arrays -> the filtered, ordered arrays it scores.

CSV files are read through `action_tx.data.ava` (the project's only AVA CSV parser); this module
turns its arrays, or the caller's, into integer keys and applies the official filtering rules
(see `object_detection_ext.ava_eval`).
"""
import dataclasses
import os

import numpy as np
import pandas as pd

from object_detection_ext import voc_ap

# AVA's action groups by id range (ava_action_list_v2.x): poses, person-object, person-person.
AVA_CATEGORIES = {"pose": range(1, 15), "person_object": range(15, 64),
                  "person_person": range(64, 81)}


@dataclasses.dataclass
class Labels:
    ids: tuple          # AVA ids, ascending
    names: dict         # AVA id -> name
    categories: dict    # category -> list of AVA ids present in `ids`


@dataclasses.dataclass
class Rows:
    """One entry per CSV row, arrays as given (not copied). boxes yxyx, NaN for key-only rows."""
    video_id: np.ndarray    # [N] str
    timestamp: np.ndarray   # [N] int
    boxes: np.ndarray       # [N, 4] float
    action_id: np.ndarray   # [N] int, -1 = none
    person_id: np.ndarray   # [N] int, -1 = none
    score: np.ndarray       # [N] float (float32 kept: it sorts faster)
    from_csv: bool = False  # boxes are the reader's float32 of decimal text

    def boxes64(self, rows: np.ndarray) -> np.ndarray:
        """float64 boxes of `rows`, as the official script's float() parse of the CSV gives.

        The reader stores float32; rounding to 7 decimals gives back exactly the float64 of
        every value written with <= 7 decimals (AVA files have 3), so IoUs on the 0.5
        boundary compare as in the official evaluator.
        """
        boxes = self.boxes[rows].astype(np.float64)
        if self.from_csv and self.boxes.dtype == np.float32:
            boxes *= 1e7                # np.round(boxes, 7), in place
            np.rint(boxes, out=boxes)
            boxes /= 1e7
        return boxes


@dataclasses.dataclass
class Prepared:
    """What the evaluator scores. Detections are in processing order (descending score)."""
    gt_key: np.ndarray        # [G] int64 key index (into the sorted ground-truth keys)
    gt_class: np.ndarray      # [G] int64 contiguous class index
    gt_boxes: np.ndarray      # [G, 4] float64
    gt_evidence: np.ndarray   # [G] str evidence type, "" when none
    det_key: np.ndarray       # [D] int64
    det_class: np.ndarray     # [D] int64
    det_boxes: np.ndarray     # [D, 4] float64
    det_score: np.ndarray     # [D] float64, descending
    person_key: np.ndarray    # [P] int64 key of every ground-truth row with a box (any class)
    person_boxes: np.ndarray  # [P, 4]
    person_first: np.ndarray  # [P] bool, first row of each distinct (key, box): the persons
    box_key: np.ndarray       # [B] int64 key of each distinct detection box (of det_*)
    box_boxes: np.ndarray     # [B, 4] float64, in descending order of their max score
    persons_per_key: np.ndarray  # [K] int64 unique person boxes per key
    counts: dict


def _categories(ids) -> dict:
    return {name: [i for i in ids if i in span] for name, span in AVA_CATEGORIES.items()
            if any(i in span for i in ids)}


def as_label_map(label_map) -> Labels:
    """A label-map path, `LabelMap`, dict id -> name, or sequence of ids -> `Labels`."""
    if isinstance(label_map, (str, os.PathLike)):
        from action_tx.data import ava  # the project's reader; imported late (light start)
        label_map = ava.read_label_map(os.fspath(label_map))
    if hasattr(label_map, "ids") and hasattr(label_map, "names"):
        ids = tuple(sorted(int(i) for i in label_map.ids))
        cats = label_map.categories() if hasattr(label_map, "categories") else _categories(ids)
        return Labels(ids, {int(k): v for k, v in label_map.names.items()}, dict(cats))
    if isinstance(label_map, dict):
        ids = tuple(sorted(int(i) for i in label_map))
        return Labels(ids, {int(k): str(v) for k, v in label_map.items()}, _categories(ids))
    ids = tuple(sorted(int(i) for i in label_map))
    if len(set(ids)) != len(ids) or not ids:
        raise ValueError(f"label map ids must be unique and non-empty, got {ids[:10]}")
    return Labels(ids, {i: str(i) for i in ids}, _categories(ids))


def _field(source, name, default=None):
    value = source.get(name) if isinstance(source, dict) else getattr(source, name, None)
    return default if value is None else value


def as_rows(source, kind: str) -> Rows:
    """A CSV path, an `Annotations` or a dict of arrays -> `Rows` (kind: groundtruth|detections)."""
    from_csv = isinstance(source, (str, os.PathLike))
    if from_csv:
        from action_tx.data import ava
        source, _ = ava.read_annotations(os.fspath(source), kind=kind)
    video_id = np.asarray(_field(source, "video_id"), dtype=object)
    n = len(video_id)
    score = _field(source, "score")
    if kind == "detections" and score is None:
        raise ValueError("detections need a `score` array")
    score = np.ones(n) if score is None or kind != "detections" else np.asarray(score)
    if score.dtype not in (np.float32, np.float64):
        score = score.astype(np.float64)
    return Rows(
        video_id=video_id,
        timestamp=np.asarray(_field(source, "timestamp")).reshape(n),
        boxes=np.asarray(_field(source, "boxes")).reshape(n, 4),
        action_id=np.asarray(_field(source, "action_id")).reshape(n),
        person_id=np.asarray(_field(source, "person_id", np.full(n, -1))).reshape(n),
        score=score.reshape(n), from_csv=from_csv)


def as_excluded(excluded) -> tuple[np.ndarray, np.ndarray]:
    """None, an excluded-timestamps CSV path or (video_id, timestamp) pairs -> two arrays."""
    if excluded is None:
        return np.array([], dtype=object), np.array([], dtype=np.int64)
    if isinstance(excluded, (str, os.PathLike)):
        from action_tx.data import ava
        excluded = ava.read_excluded_timestamps(os.fspath(excluded))
    pairs = sorted((str(v), int(t)) for v, t in excluded)
    return (np.array([p[0] for p in pairs], dtype=object),
            np.array([p[1] for p in pairs], dtype=np.int64))


def as_evidence(evidence) -> pd.DataFrame:
    """Evidence CSV path (video_id,timestamp,person_id,action_id,evidence; optional header)
    or a dict of those arrays -> DataFrame with those columns."""
    columns = ["video_id", "timestamp", "person_id", "action_id", "evidence"]
    if not isinstance(evidence, (str, os.PathLike)):
        return pd.DataFrame({c: np.asarray(evidence[c]) for c in columns})
    path = os.fspath(evidence)
    frame = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
    if frame.shape[1] != 5:
        raise ValueError(f"{path}:1: expected 5 columns ({','.join(columns)}), "
                         f"got {frame.shape[1]}")
    frame.columns = columns
    first_line = 1
    if len(frame) and not frame.iloc[0]["timestamp"].strip().lstrip("-").isdigit():
        frame, first_line = frame.iloc[1:], 2     # a header row
    for column in ("timestamp", "person_id", "action_id"):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = np.flatnonzero(values.isna().to_numpy())
        if len(bad):
            raise ValueError(f"{path}:{bad[0] + first_line}: {column} is not an integer: "
                             f"{frame[column].iloc[bad[0]]!r}")
        frame[column] = values.astype(np.int64)
    return frame.reset_index(drop=True)


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
    boxes = np.ascontiguousarray(boxes, dtype=np.float64) + 0.0   # -0.0 -> 0.0
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
    frame = pd.DataFrame({"k": key, "y1": boxes[:, 0], "x1": boxes[:, 1], "y2": boxes[:, 2],
                          "x2": boxes[:, 3]})
    return ~frame.duplicated().to_numpy()


def prepare(gt: Rows, det: Rows, ids, excluded, evidence, max_per_key: int) -> Prepared:
    """Applies the official filters and orders (see ava_eval's docstring)."""
    ids = np.asarray(ids, dtype=np.int64)
    ev_vids = (np.asarray(evidence["video_id"], dtype=object) if evidence is not None
               else np.array([], dtype=object))
    parts = [gt.video_id, det.video_id, excluded[0], ev_vids]
    codes, uniques = pd.factorize(np.concatenate(parts))
    bounds = np.cumsum([0] + [len(p) for p in parts])
    gt_codes, det_codes = codes[bounds[0]:bounds[1]], codes[bounds[1]:bounds[2]]
    gt_key64 = _keys(gt_codes, gt.timestamp)
    excluded_keys = np.unique(_keys(codes[bounds[2]:bounds[3]], excluded[1]))
    counts = {"groundtruth_rows": len(gt_key64), "detection_rows": len(det_codes)}
    gt_in = ~np.isin(gt_key64, excluded_keys)
    keys = np.unique(gt_key64[gt_in])
    key_of = _KeyIndex(keys, len(uniques))
    counts.update(groundtruth_keys=len(keys), excluded_keys=int(len(excluded_keys)))

    lookup = np.full(int(ids.max()) + 2, -1, dtype=np.int64)    # AVA id -> class index
    lookup[ids] = np.arange(len(ids))

    def class_of(action_id):
        action_id = np.asarray(action_id, dtype=np.int64)
        inside = (action_id >= 0) & (action_id < len(lookup))
        return np.where(inside, lookup[np.where(inside, action_id, -1)], -1)

    has_box = np.isfinite(gt.boxes).all(axis=1)
    gt_class = class_of(gt.action_id)
    keep = np.flatnonzero(gt_in & has_box & (gt_class >= 0))
    counts["groundtruth_rows_scored"] = len(keep)
    gt_evidence = _join_evidence(gt_key64[keep], np.asarray(gt.person_id)[keep],
                                 np.asarray(gt.action_id)[keep], evidence, codes[bounds[3]:])
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
    return Prepared(
        gt_key=key_of(gt_codes[keep], gt.timestamp[keep]), gt_class=gt_class[keep],
        gt_boxes=gt.boxes64(keep), gt_evidence=gt_evidence, det_key=det_key[rows],
        det_class=det_class[rows], det_boxes=boxes, det_score=det.score[rows],
        person_key=person_key, person_boxes=person_boxes, person_first=person_first,
        box_key=det_key[box_rows], box_boxes=det.boxes64(box_rows),
        persons_per_key=np.bincount(person_key[person_first], minlength=len(keys)),
        counts=counts)


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
    right = pd.DataFrame({"k": _keys(ev_codes, np.asarray(evidence["timestamp"])),
                          "p": np.asarray(evidence["person_id"], dtype=np.int64),
                          "a": np.asarray(evidence["action_id"], dtype=np.int64),
                          "e": np.asarray(evidence["evidence"], dtype=object)})
    right = right.drop_duplicates(["k", "p", "a"])
    left = pd.DataFrame({"k": key64, "p": person_id, "a": action_id})
    merged = left.merge(right, on=["k", "p", "a"], how="left")
    return merged["e"].fillna("").to_numpy(dtype=object)
