"""Inputs of the AVA evaluator: CSV paths or arrays -> the filtered, ordered arrays it scores.

CSV files are read through `action_tx.data.ava` (the project's only AVA CSV parser); this module
turns its arrays, or the caller's, into integer keys and applies the official filtering rules
(see `object_detection_ext.ava_eval`).
"""
import dataclasses
import os

import numpy as np
import pandas as pd

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
    """One entry per CSV row. boxes are float64 yxyx, NaN for key-only rows."""
    video_id: np.ndarray    # [N] object str
    timestamp: np.ndarray   # [N] int64
    boxes: np.ndarray       # [N, 4] float64
    action_id: np.ndarray   # [N] int64, -1 = none
    person_id: np.ndarray   # [N] int64, -1 = none
    score: np.ndarray       # [N] float64 (1.0 for ground truth, as the official reader)


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
    raw_boxes = np.asarray(_field(source, "boxes"))
    boxes = raw_boxes.astype(np.float64).reshape(n, 4)
    if from_csv and raw_boxes.dtype == np.float32:
        # The reader stores float32; rounding to 7 decimals gives back exactly the float64 the
        # official script parses for every CSV with <= 7 decimals (AVA files have 3), so IoUs
        # on the 0.5 boundary compare the same way.
        boxes = np.round(boxes, 7)
    score = _field(source, "score")
    if kind == "detections" and score is None:
        raise ValueError("detections need a `score` array")
    return Rows(
        video_id=video_id,
        timestamp=np.asarray(_field(source, "timestamp"), dtype=np.int64).reshape(n),
        boxes=boxes,
        action_id=np.asarray(_field(source, "action_id"), dtype=np.int64).reshape(n),
        person_id=np.asarray(_field(source, "person_id", np.full(n, -1)),
                             dtype=np.int64).reshape(n),
        score=(np.ones(n) if score is None else np.asarray(score, np.float64).reshape(n)))


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


def prepare(gt: Rows, det: Rows, ids, excluded, evidence, max_per_key: int) -> Prepared:
    """Applies the official filters and orders (see ava_eval's docstring)."""
    ids = np.asarray(ids, dtype=np.int64)
    ev_vids = (np.asarray(evidence["video_id"], dtype=object) if evidence is not None
               else np.array([], dtype=object))
    parts = [gt.video_id, det.video_id, excluded[0], ev_vids]
    codes, _ = pd.factorize(np.concatenate(parts))
    bounds = np.cumsum([0] + [len(p) for p in parts])
    gt_key64 = _keys(codes[bounds[0]:bounds[1]], gt.timestamp)
    det_key64 = _keys(codes[bounds[1]:bounds[2]], det.timestamp)
    excluded_keys = np.unique(_keys(codes[bounds[2]:bounds[3]], excluded[1]))
    counts = {"groundtruth_rows": len(gt_key64), "detection_rows": len(det_key64)}

    gt_in = ~np.isin(gt_key64, excluded_keys)
    keys = np.unique(gt_key64[gt_in])
    counts.update(groundtruth_keys=len(keys), excluded_keys=int(len(excluded_keys)))

    def class_of(action_id):
        index = np.minimum(np.searchsorted(ids, action_id), len(ids) - 1)
        return np.where(ids[index] == action_id, index, -1)

    def key_of(key64):
        if len(keys) == 0:
            return np.full(len(key64), -1, dtype=np.int64)
        index = np.minimum(np.searchsorted(keys, key64), len(keys) - 1)
        return np.where(keys[index] == key64, index, -1)

    has_box = np.isfinite(gt.boxes).all(axis=1)
    gt_class = class_of(gt.action_id)
    keep = gt_in & has_box & (gt_class >= 0)
    gt_key = key_of(gt_key64[keep])
    counts["groundtruth_rows_scored"] = int(keep.sum())
    gt_evidence = _join_evidence(gt_key64[keep], gt.person_id[keep], gt.action_id[keep],
                                 evidence, codes[bounds[3]:])
    person = gt_in & has_box

    det_class = class_of(det.action_id)
    det_key = key_of(det_key64)
    in_map = det_class >= 0
    on_gt_key = det_key >= 0
    counts["detections_outside_label_map"] = int((~in_map).sum())
    counts["detections_on_keys_not_in_groundtruth"] = int((in_map & ~on_gt_key).sum())
    rows = np.flatnonzero(in_map & on_gt_key)
    # Processing order: descending score, file order among equal scores.
    rows = rows[np.argsort(-det.score[rows], kind="stable")]
    if max_per_key > 0 and len(rows) and np.bincount(det_key[rows]).max() > max_per_key:
        by_key = np.argsort(det_key[rows], kind="stable")
        sorted_keys = det_key[rows][by_key]
        run_start = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        run_of = np.repeat(run_start, np.diff(np.r_[run_start, len(rows)]))
        under_cap = np.empty(len(rows), dtype=bool)
        under_cap[by_key] = (np.arange(len(rows)) - run_of) < max_per_key
        counts["detections_over_cap"] = int((~under_cap).sum())
        rows = rows[under_cap]
    else:
        counts["detections_over_cap"] = 0
    boxes = det.boxes[rows]
    valid = (boxes[:, 0] < boxes[:, 2]) & (boxes[:, 1] < boxes[:, 3])
    counts["detections_invalid_box"] = int((~valid).sum())
    rows = rows[valid]
    counts["detections_scored"] = len(rows)

    person_key = key_of(gt_key64[person])
    person_boxes = gt.boxes[person]
    frame = pd.DataFrame({"k": person_key, "y1": person_boxes[:, 0], "x1": person_boxes[:, 1],
                          "y2": person_boxes[:, 2], "x2": person_boxes[:, 3]})
    unique_key = person_key[~frame.duplicated().to_numpy()]
    return Prepared(
        gt_key=gt_key, gt_class=gt_class[keep], gt_boxes=gt.boxes[keep],
        gt_evidence=gt_evidence, det_key=det_key[rows], det_class=det_class[rows],
        det_boxes=det.boxes[rows], det_score=det.score[rows], person_key=person_key,
        person_boxes=person_boxes,
        persons_per_key=np.bincount(unique_key, minlength=len(keys)).astype(np.int64),
        counts=counts)


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
