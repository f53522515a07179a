"""AVA-format readers and writers: label maps, annotation / detection CSVs, excluded timestamps.

This is the only module that knows the CSV box order `x1,y1,x2,y2`; everything it returns uses
normalized `[y1, x1, y2, x2]` float32 boxes (the library convention). Class ids stay AVA ids here;
`LabelMap.index_of` maps them to contiguous indices `0..C-1` (the order of `LabelMap.ids`).

Bad rows raise `AvaFormatError` listing `FILE:LINE: reason: detail` for every bad row (up to a
cap); with `skip_bad=True` they are skipped and counted per reason in the `RowReport`. Reasons:
"column count", "not a number", "bad value", "box outside [0,1]", "empty box",
"unknown action id", "duplicate row". Parsing rules are in `action_tx.data.csv_fast`.
"""
import collections
import dataclasses
import os
import re

import numpy as np

from action_tx.data import csv_fast

MAX_LISTED_ERRORS = 20  # rows listed in an AvaFormatError; the rest are counted
MAX_EXAMPLES = 10  # messages kept in RowReport.examples
# AVA's three action groups, by AVA id (ava_action_list_v2.*: PERSON_MOVEMENT, OBJECT_MANIPULATION,
# PERSON_INTERACTION).
CATEGORY_RANGES = {"pose": (1, 14), "person_object": (15, 63), "person_person": (64, 80)}


class AvaFormatError(ValueError):
    """A malformed AVA file. str(e) lists "FILE:LINE: what is wrong" lines; e.errors holds them."""

    def __init__(self, errors, total=None):
        self.errors = list(errors)
        more = (total or len(self.errors)) - len(self.errors)
        text = "\n".join(self.errors) + (f"\n... and {more} more bad rows" if more > 0 else "")
        super().__init__(text)


# ----------------------------------------------------------------------------- label maps
@dataclasses.dataclass(frozen=True)
class LabelMap:
    """AVA label map. ids: AVA ids sorted ascending (contiguous index i <-> ids[i]);
    names: AVA id -> class name."""
    ids: tuple
    names: dict

    def __post_init__(self):
        ids = tuple(int(i) for i in self.ids)
        if list(ids) != sorted(set(ids)):
            raise ValueError(f"LabelMap ids must be unique and ascending, got {ids}")
        if set(self.names) != set(ids):
            raise ValueError("LabelMap names must have exactly one entry per id")
        object.__setattr__(self, "ids", ids)

    @property
    def num_classes(self):
        return len(self.ids)

    def index_of(self, ids):
        """ids: int array of any shape (AVA ids) -> int64 array, same shape: contiguous index,
        -1 where the id is not in the map."""
        ids = np.asarray(ids, dtype=np.int64)
        table = np.asarray(self.ids, dtype=np.int64)
        if table.size == 0:
            return np.full(ids.shape, -1, np.int64)
        pos = np.clip(np.searchsorted(table, ids), 0, table.size - 1)
        return np.where(table[pos] == ids, pos, -1)

    def categories(self):
        """AVA groups -> the map's ids in them: "pose" 1-14, "person_object" 15-63,
        "person_person" 64-80. Groups with no id in the map are left out."""
        groups = {name: [i for i in self.ids if lo <= i <= hi]
                  for name, (lo, hi) in CATEGORY_RANGES.items()}
        return {name: ids for name, ids in groups.items() if ids}


_BLOCK = re.compile(r"(\w+)\s*\{([^{}]*)\}")
_FIELD = re.compile(r'(\w+)\s*:\s*("(?:[^"\\]|\\.)*"|[^\s"]+)')
_TEXT_ENTRY = re.compile(r"\s*(-?\d+)\s*:\s*(.*?)\s*\Z")


def read_label_map(path):
    """Reads a label map -> LabelMap.

    Accepts pbtxt (`item { name: "..." id: N }` or `label { name: "..." label_id: N ... }`, as in
    the ActivityNet and AVA v2.2 action lists; other fields are ignored) or text lines `N: name`.
    Raises AvaFormatError naming file:line for an entry without id, a non-integer or duplicate id.
    """
    path = os.fspath(path)
    with open(path, encoding="utf-8-sig") as f:
        text = f.read()
    entries = []  # (line, id, name)
    errors = []
    if "{" in text:
        for block in _BLOCK.finditer(text):
            line = text.count("\n", 0, block.start()) + 1
            fields = {k: v for k, v in _FIELD.findall(block.group(2))}
            raw = fields.get("id", fields.get("label_id"))
            name = fields.get("name", fields.get("display_name", '""'))
            name = re.sub(r"\\(.)", r"\1", name[1:-1]) if name.startswith('"') else name
            if raw is None or not re.fullmatch(r"-?\d+", raw):
                errors.append(f"{path}:{line}: {block.group(1)} block without an integer "
                              f"id/label_id (got {raw!r})")
            else:
                entries.append((line, int(raw), name))
    else:
        for line, row in enumerate(text.splitlines(), 1):
            if not row.strip():
                continue
            match = _TEXT_ENTRY.match(row)
            if match is None:
                errors.append(f"{path}:{line}: expected 'N: name', got {row!r}")
            else:
                entries.append((line, int(match.group(1)), match.group(2)))
    seen = {}
    for line, i, _ in entries:
        if i in seen:
            errors.append(f"{path}:{line}: duplicate id {i} (first on line {seen[i]})")
        seen.setdefault(i, line)
    if not entries and not errors:
        errors.append(f"{path}:1: no label map entries found")
    if errors:
        raise AvaFormatError(errors)
    names = {i: name for _, i, name in entries}
    return LabelMap(ids=tuple(sorted(names)), names=names)


def write_label_map(path, label_map):
    """Writes pbtxt: one `item { name: "..." id: N }` per id, ascending."""
    with open(path, "w", encoding="utf-8") as f:
        for i in label_map.ids:
            name = label_map.names[i].replace("\\", "\\\\").replace('"', '\\"')
            f.write(f'item {{\n  name: "{name}"\n  id: {i}\n}}\n')


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


@dataclasses.dataclass
class RowReport:
    """What a reader kept and skipped. rejected: reason -> count; examples: first messages."""
    path: str
    kept: int = 0
    rejected: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    examples: list = dataclasses.field(default_factory=list)


def _read(path, schema, skip_bad, force_slow=False):
    """Parses with `schema`; returns (csv_fast.Rows, RowReport) or raises AvaFormatError."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        rows, bad = csv_fast.parse(data, schema, force_slow=force_slow)
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise AvaFormatError([f"{path}:{line}: not UTF-8 text"]) from None
    messages = [f"{path}:{line}: {reason}: {detail}" for line, reason, detail in bad]
    if messages and not skip_bad:
        raise AvaFormatError(messages[:MAX_LISTED_ERRORS], total=len(messages))
    report = RowReport(path=path, kept=len(rows.line),
                       rejected=collections.Counter(reason for _, reason, _ in bad),
                       examples=messages[:MAX_EXAMPLES])
    return rows, report


def _annotations(rows, col8):
    """csv_fast.Rows -> Annotations; col8 says what the 8th column held."""
    n = len(rows.line)
    is_person = col8 == "person_id"
    extra = rows.col8
    return Annotations(
        video_id=rows.video_id.astype(object),
        timestamp=rows.timestamp.astype(np.int32),
        boxes=rows.box[:, [1, 0, 3, 2]].astype(np.float32).reshape(n, 4),
        action_id=rows.col7.astype(np.int32),
        person_id=(np.where(np.isnan(extra), -1, extra).astype(np.int32) if is_person
                   else np.full(n, -1, np.int32)),
        score=np.full(n, np.nan, np.float32) if is_person else extra.astype(np.float32),
        line=rows.line.astype(np.int64))


def _schema(kind, label_map=None, **overrides):
    if kind not in ("groundtruth", "detections"):
        raise ValueError(f"kind must be 'groundtruth' or 'detections', got {kind!r}")
    known = None if label_map is None else frozenset(label_map.ids)
    return csv_fast.RowSchema(col8="person_id" if kind == "groundtruth" else "score",
                              known=known, duplicates=kind == "groundtruth", **overrides)


def read_annotations(path, label_map=None, kind="groundtruth", skip_bad=False):
    """Reads an AVA annotation or detection CSV -> (Annotations, RowReport).

    Rows have 2, 7 or 8 columns: video_id,timestamp[,x1,y1,x2,y2,action_id[,col8]] where col8 is
    person_id (kind="groundtruth") or score (kind="detections"). With a label_map, action ids
    outside it are bad rows; groundtruth rows identical to an earlier row are bad rows.
    Raises AvaFormatError listing every bad row ("FILE:LINE: reason: detail") unless skip_bad.
    """
    rows, report = _read(path, _schema(kind, label_map), skip_bad)
    return _annotations(rows, "person_id" if kind == "groundtruth" else "score"), report


def read_person_detections(path, skip_bad=False):
    """AVA person-detection CSV: video_id,timestamp,x1,y1,x2,y2,[action_id or empty],score
    -> (Annotations with score, action_id -1 where empty; RowReport)."""
    schema = _schema("detections", counts=(8,), col7_optional=True)
    rows, report = _read(path, schema, skip_bad)
    return _annotations(rows, "score"), report


def read_object_detections(path, skip_bad=False):
    """Object-detection CSV: video_id,timestamp,x1,y1,x2,y2,object_class,score
    -> (Annotations with object_class in action_id, score; RowReport)."""
    schema = _schema("detections", counts=(8,), col7="object_class")
    rows, report = _read(path, schema, skip_bad)
    return _annotations(rows, "score"), report


def read_excluded_timestamps(path):
    """CSV of video_id,timestamp rows -> set of (video_id, timestamp) keys."""
    rows, _ = _read(path, csv_fast.RowSchema(counts=(2,)), skip_bad=False)
    return set(zip(rows.video_id.tolist(), rows.timestamp.tolist()))


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
    formats = ("%s,%04d\n", "%s,%04d,%.3f,%.3f,%.3f,%.3f,%d\n",
               "%s,%04d,%.3f,%.3f,%.3f,%.3f,%d," + extra_fmt + "\n")
    columns = [np.asarray(a.video_id, object), np.asarray(a.timestamp), *boxes.T,
               np.asarray(a.action_id), np.asarray(extra)]
    lines = np.empty(len(kinds), object)
    # One %-format per row over columns turned into lists once: the fastest plain-Python way.
    for k, width in enumerate((2, 7, 8)):
        index = np.flatnonzero(kinds == k)
        if index.size:
            fmt = formats[k]
            lines[index] = [fmt % row for row in zip(*(c[index].tolist() for c in columns[:width]))]
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(lines.tolist()))
