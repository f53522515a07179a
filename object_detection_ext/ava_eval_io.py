"""Inputs of the AVA evaluator: CSV paths or arrays -> the filtered, ordered arrays it scores.

CSV files are read with `object_detection_ext.ava_csv` (the row parser that `action_tx.data.ava`
uses too: bad rows are refused with FILE:LINE) and label maps with
`object_detection_ext.ava_label_map`; this module turns those rows, or the caller's arrays, into
integer keys and applies the official filtering rules (see `object_detection_ext.ava_eval`).

Input the official evaluator scores but that is probably not what the user meant is scored the
same way and reported as one `AvaEvalWarning` line each, with a count and the first FILE:LINE:
detection rows without a score (7 columns, read as 1.0), a detection file where no row has a
score or every score is a whole number (a ground-truth file given as detections), zero-area
detection boxes (counted in the per-key cap, then dropped), detections on videos the ground truth
does not have. An empty ground truth is a ValueError.
"""

import dataclasses
import os
import warnings

import numpy as np
import pandas as pd

from object_detection_ext import ava_csv, ava_label_map


class AvaEvalWarning(UserWarning):
    """Input scored as the official evaluator does, but probably not what was meant."""


@dataclasses.dataclass
class Labels:
    ids: tuple  # AVA ids, ascending
    names: dict  # AVA id -> name
    categories: dict  # category -> list of AVA ids present in `ids`


@dataclasses.dataclass
class Rows:
    """One entry per CSV row, arrays as given (not copied). boxes yxyx, NaN for key-only rows."""

    video_id: np.ndarray  # [N] str
    timestamp: np.ndarray  # [N] int
    boxes: np.ndarray  # [N, 4] float
    action_id: np.ndarray  # [N] int, -1 = none
    person_id: np.ndarray  # [N] int, -1 = none
    score: np.ndarray  # [N] float (float32 kept: it sorts faster)
    from_csv: bool = False  # boxes are the reader's float32 of decimal text
    source: str = ""  # the CSV path, or "groundtruth"/"detections": names rows in messages
    line: np.ndarray | None = None  # [N] int 1-based CSV line numbers (None: arrays)
    missing_score: int = 0  # detection rows with a box but no score, read as 1.0

    def where(self, row: int) -> str:
        """Where row `row` is, for messages: `FILE:LINE` (arrays: `detections row I`, 0-based)."""
        if self.line is None:
            return f"{self.source} row {row}"
        return f"{self.source}:{int(self.line[row])}"

    def boxes64(self, rows: np.ndarray) -> np.ndarray:
        """float64 boxes of `rows`, as the official script's float() parse of the CSV gives.

        The reader stores float32; rounding to 7 decimals gives back exactly the float64 of
        every value written with <= 7 decimals (AVA files have 3), so IoUs on the 0.5
        boundary compare as in the official evaluator.
        """
        boxes = self.boxes[rows].astype(np.float64)
        if self.from_csv and self.boxes.dtype == np.float32:
            boxes *= 1e7  # np.round(boxes, 7), in place
            np.rint(boxes, out=boxes)
            boxes /= 1e7
        return boxes


def warn(message: str) -> None:
    """One AvaEvalWarning line."""
    warnings.warn(message, AvaEvalWarning, stacklevel=3)


def as_label_map(label_map) -> Labels:
    """A label-map path, `LabelMap`, dict id -> name, or sequence of ids -> `Labels`."""
    if isinstance(label_map, (str, os.PathLike)):
        label_map = ava_label_map.read_label_map(label_map)
    if hasattr(label_map, "ids") and hasattr(label_map, "names"):
        names = {int(k): v for k, v in label_map.names.items()}
    elif isinstance(label_map, dict):
        names = {int(k): str(v) for k, v in label_map.items()}
    else:
        ids = [int(i) for i in label_map]
        if len(set(ids)) != len(ids) or not ids:
            raise ValueError(f"label map ids must be unique and non-empty, got {ids[:10]}")
        names = {i: str(i) for i in ids}
    labels = ava_label_map.LabelMap(ids=tuple(sorted(names)), names=names)
    cats = label_map.categories() if hasattr(label_map, "categories") else labels.categories()
    return Labels(labels.ids, labels.names, dict(cats))


def _read_csv(path, kind: str) -> Rows:
    """An AVA CSV -> Rows (float32 boxes and scores, as `action_tx.data.ava` reads them).

    Detection files keep zero-area boxes (the official evaluator reads them); everything else
    the parser refuses is an AvaFormatError naming FILE:LINE.
    """
    rows, _ = ava_csv.read_rows(
        path, ava_csv.annotation_schema(kind, zero_area=kind == "detections")
    )
    n = len(rows.line)
    col8 = rows.col8
    person = kind == "groundtruth"
    return Rows(
        video_id=rows.video_id.astype(object),
        timestamp=rows.timestamp.astype(np.int32),
        boxes=rows.box[:, [1, 0, 3, 2]].astype(np.float32).reshape(n, 4),
        action_id=rows.col7.astype(np.int32),
        person_id=(
            np.where(np.isnan(col8), -1, col8).astype(np.int32)
            if person
            else np.full(n, -1, np.int32)
        ),
        score=np.ones(n, np.float32) if person else col8.astype(np.float32),
        from_csv=True,
        source=os.fspath(path),
        line=rows.line,
    )


def _field(source, name, default=None):
    value = source.get(name) if isinstance(source, dict) else getattr(source, name, None)
    return default if value is None else value


def as_rows(source, kind: str) -> Rows:
    """A CSV path, an `Annotations` or a dict of arrays -> `Rows` (kind: groundtruth|detections).

    Detections: a row with a box and no score (NaN; a 7-column CSV row) gets 1.0, as the
    official `read_csv` does; see the module docstring for the warnings.
    """
    if isinstance(source, (str, os.PathLike)):
        rows = _read_csv(source, kind)
    else:
        video_id = np.asarray(_field(source, "video_id"), dtype=object)
        n = len(video_id)
        score = _field(source, "score")
        if kind == "detections" and score is None:
            raise ValueError("detections need a `score` array")
        score = np.ones(n) if score is None or kind != "detections" else np.asarray(score)
        if score.dtype not in (np.float32, np.float64):
            score = score.astype(np.float64)
        rows = Rows(
            video_id=video_id,
            timestamp=np.asarray(_field(source, "timestamp")).reshape(n),
            boxes=np.asarray(_field(source, "boxes")).reshape(n, 4),
            action_id=np.asarray(_field(source, "action_id")).reshape(n),
            person_id=np.asarray(_field(source, "person_id", np.full(n, -1))).reshape(n),
            score=score.reshape(n),
            source=kind,
        )
    if kind == "detections":
        _check_detections(rows)
    return rows


def detection_rows(n: int) -> str:
    """Text of a row count: `1 detection row`, `1,234 detection rows`."""
    return f"{n:,} detection row{'s' * (n != 1)}"


def _check_detections(rows: Rows) -> None:
    """Fills missing scores with 1.0 and warns about likely mistakes (module docstring)."""
    has_box = np.isfinite(rows.boxes).all(axis=1)
    if not has_box.any():
        warn(f"{rows.source}: no detection row with a box ({len(has_box):,} rows): every AP is 0")
    missing = has_box & np.isnan(rows.score)
    rows.missing_score = int(missing.sum())
    boxed = int(has_box.sum())
    if rows.missing_score:
        rows.score = np.where(missing, rows.score.dtype.type(1.0), rows.score)
        first = rows.where(np.argmax(missing))
        if rows.from_csv and rows.missing_score == boxed:
            warn(
                f"{first}: no detection row has a score (all {boxed:,} rows with a box have 7 "
                "columns): each is read as 1.0, as the official evaluator does, so their order "
                "is arbitrary; is this a ground-truth file given as detections?"
            )
        else:
            columns = "7 columns; " if rows.from_csv else ""
            warn(
                f"{first}: {detection_rows(rows.missing_score)} without a score ({columns}the "
                "first here): read as score 1.0, as the official evaluator does"
            )
    if not rows.from_csv:  # the checks below are about files
        return
    given = has_box & ~missing
    scores = rows.score[given]
    if len(scores) and rows.missing_score < boxed and (scores == np.floor(scores)).all():
        warn(
            f"{rows.where(np.argmax(given))}: every detection score is a whole number "
            f"({scores.min():g} to {scores.max():g}), as the person_id column of a "
            "ground-truth file is: is this a ground-truth file given as detections?"
        )
    b = rows.boxes
    zero = has_box & ((b[:, 0] == b[:, 2]) | (b[:, 1] == b[:, 3]))
    if zero.any():
        warn(
            f"{rows.where(np.argmax(zero))}: {detection_rows(int(zero.sum()))} with a "
            "zero-area box (x1 == x2 or y1 == y2; the first here): they count in the "
            "per-keyframe cap and are then dropped (neither true nor false positives), as in "
            "the official evaluator"
        )


def as_excluded(excluded) -> tuple[np.ndarray, np.ndarray]:
    """None, an excluded-timestamps CSV path or (video_id, timestamp) pairs -> two arrays."""
    if excluded is None:
        return np.array([], dtype=object), np.array([], dtype=np.int64)
    if isinstance(excluded, (str, os.PathLike)):
        excluded = ava_csv.read_excluded_timestamps(excluded)
    pairs = sorted((str(v), int(t)) for v, t in excluded)
    return (
        np.array([p[0] for p in pairs], dtype=object),
        np.array([p[1] for p in pairs], dtype=np.int64),
    )


def as_evidence(evidence) -> pd.DataFrame:
    """Evidence CSV path (video_id,timestamp,person_id,action_id,evidence; optional header)
    or a dict of those arrays -> DataFrame with those columns."""
    columns = ["video_id", "timestamp", "person_id", "action_id", "evidence"]
    if not isinstance(evidence, (str, os.PathLike)):
        return pd.DataFrame({c: np.asarray(evidence[c]) for c in columns})
    path = os.fspath(evidence)
    frame = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
    if frame.shape[1] != 5:
        raise ValueError(
            f"{path}:1: expected 5 columns ({','.join(columns)}), got {frame.shape[1]}"
        )
    frame.columns = columns
    first_line = 1
    if len(frame) and not frame.iloc[0]["timestamp"].strip().lstrip("-").isdigit():
        frame, first_line = frame.iloc[1:], 2  # a header row
    for column in ("timestamp", "person_id", "action_id"):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = np.flatnonzero(values.isna().to_numpy())
        if len(bad):
            raise ValueError(
                f"{path}:{bad[0] + first_line}: {column} is not an integer: "
                f"{frame[column].iloc[bad[0]]!r}"
            )
        frame[column] = values.astype(np.int64)
    return frame.reset_index(drop=True)
