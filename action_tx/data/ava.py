"""AVA-format readers and writers: label maps, annotation / detection CSVs, excluded timestamps.

Everything returned uses normalized `[y1, x1, y2, x2]` float32 boxes (the library convention); the
CSV order `x1,y1,x2,y2` is handled by the row parser and `write_annotations`. Class ids stay AVA
ids here; `LabelMap.index_of` maps them to contiguous indices `0..C-1` (the order of
`LabelMap.ids`).

The file formats themselves live in `object_detection_ext` (the AVA evaluator reads them too and
imports nothing from `action_tx`): the row parser and its rules in `object_detection_ext.ava_csv`,
label maps in `object_detection_ext.ava_label_map`. Their public names are re-exported here.

Bad rows raise `AvaFormatError` listing `FILE:LINE: reason: detail` for every bad row (up to a
cap); with `skip_bad=True` they are skipped and counted per reason in the `RowReport`. Reasons:
"column count", "not a number", "bad value", "box outside [0,1]", "empty box",
"unknown action id", "duplicate row".
"""

import dataclasses

import numpy as np

from object_detection_ext import ava_csv
from object_detection_ext.ava_csv import (  # noqa: F401  (re-exported: action_tx's AVA API)
    MAX_EXAMPLES,
    MAX_LISTED_ERRORS,
    AvaFormatError,
    RowReport,
    read_excluded_timestamps,
)
from object_detection_ext.ava_label_map import (  # noqa: F401  (re-exported)
    CATEGORY_RANGES,
    LabelMap,
    read_label_map,
    write_label_map,
)


# ----------------------------------------------------------------------------- annotations
@dataclasses.dataclass
class Annotations:
    """One entry per CSV row, in file order (bad rows skipped).

    video_id: [N] object array of str, exactly as written (ids may start with '-' or '_').
    timestamp: [N] int32 seconds. boxes: [N, 4] float32 normalized [y1, x1, y2, x2], NaN rows
    for 2-column rows. action_id: [N] int32 AVA id (object class for object detections), -1 when
    absent. person_id: [N] int32, -1 when absent. score: [N] float32, NaN when absent.
    line: [N] int64 1-based line number in the source file.
    """

    video_id: np.ndarray
    timestamp: np.ndarray
    boxes: np.ndarray
    action_id: np.ndarray
    person_id: np.ndarray
    score: np.ndarray
    line: np.ndarray

    def __len__(self):
        return len(self.timestamp)


def _annotations(rows, col8):
    """ava_csv.Rows -> Annotations; col8 says what the 8th column held."""
    n = len(rows.line)
    is_person = col8 == "person_id"
    extra = rows.col8
    return Annotations(
        video_id=rows.video_id.astype(object),
        timestamp=rows.timestamp.astype(np.int32),
        boxes=rows.box[:, [1, 0, 3, 2]].astype(np.float32).reshape(n, 4),
        action_id=rows.col7.astype(np.int32),
        person_id=(
            np.where(np.isnan(extra), -1, extra).astype(np.int32)
            if is_person
            else np.full(n, -1, np.int32)
        ),
        score=np.full(n, np.nan, np.float32) if is_person else extra.astype(np.float32),
        line=rows.line.astype(np.int64),
    )


def _schema(kind, label_map=None, **overrides):
    known = None if label_map is None else frozenset(label_map.ids)
    return ava_csv.annotation_schema(kind, known=known, **overrides)


def read_annotations(path, label_map=None, kind="groundtruth", skip_bad=False):
    """Reads an AVA annotation or detection CSV -> (Annotations, RowReport).

    Rows have 2, 7 or 8 columns: video_id,timestamp[,x1,y1,x2,y2,action_id[,col8]] where col8 is
    person_id (kind="groundtruth") or score (kind="detections"). With a label_map, action ids
    outside it are bad rows; groundtruth rows identical to an earlier row are bad rows.
    Raises AvaFormatError listing every bad row ("FILE:LINE: reason: detail") unless skip_bad.
    """
    rows, report = ava_csv.read_rows(path, _schema(kind, label_map), skip_bad)
    return _annotations(rows, "person_id" if kind == "groundtruth" else "score"), report


def read_person_detections(path, skip_bad=False):
    """AVA person-detection CSV: video_id,timestamp,x1,y1,x2,y2,[action_id or empty],score
    -> (Annotations with score, action_id -1 where empty; RowReport)."""
    schema = _schema("detections", counts=(8,), col7_optional=True)
    rows, report = ava_csv.read_rows(path, schema, skip_bad)
    return _annotations(rows, "score"), report


def read_object_detections(path, skip_bad=False):
    """Object-detection CSV: video_id,timestamp,x1,y1,x2,y2,object_class,score
    -> (Annotations with object_class in action_id, score; RowReport)."""
    schema = _schema("detections", counts=(8,), col7="object_class")
    rows, report = ava_csv.read_rows(path, schema, skip_bad)
    return _annotations(rows, "score"), report


def write_annotations(path, annotations, kind="groundtruth"):
    """Writes an AVA CSV: x1,y1,x2,y2 with 3 decimals, timestamps zero padded to 4 digits.

    Rows whose box is NaN get 2 columns; otherwise 7, plus the 8th column when present:
    person_id >= 0 (kind="groundtruth") or a finite score, written with 4 decimals
    (kind="detections"), so that close scores keep their order.
    """
    if kind not in ("groundtruth", "detections"):
        raise ValueError(f"kind must be 'groundtruth' or 'detections', got {kind!r}")
    a = annotations
    boxes = np.asarray(a.boxes, np.float64).reshape(-1, 4)[:, [1, 0, 3, 2]]  # -> x1,y1,x2,y2
    has_box = ~np.isnan(boxes).any(axis=1)
    extra = a.person_id if kind == "groundtruth" else a.score
    has_extra = (extra >= 0) if kind == "groundtruth" else np.isfinite(extra)
    extra_fmt = "%d" if kind == "groundtruth" else "%.4f"
    kinds = np.where(~has_box, 0, np.where(has_extra, 2, 1))  # 2, 7 or 8 columns
    formats = (
        "%s,%04d\n",
        "%s,%04d,%.3f,%.3f,%.3f,%.3f,%d\n",
        "%s,%04d,%.3f,%.3f,%.3f,%.3f,%d," + extra_fmt + "\n",
    )
    columns = [
        np.asarray(a.video_id, object),
        np.asarray(a.timestamp),
        *boxes.T,
        np.asarray(a.action_id),
        np.asarray(extra),
    ]
    lines = np.empty(len(kinds), object)
    # One %-format per row over columns turned into lists once: the fastest plain-Python way.
    for k, width in enumerate((2, 7, 8)):
        index = np.flatnonzero(kinds == k)
        if index.size:
            fmt = formats[k]
            lines[index] = [fmt % row for row in zip(*(c[index].tolist() for c in columns[:width]))]
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(lines.tolist()))
