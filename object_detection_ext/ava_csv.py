"""AVA CSV files: the row parser (a fast pandas path and an exact per-line path) and `read_rows`.

Shared by the evaluator (`object_detection_ext.ava_eval_io`) and the project's readers
(`action_tx.data.ava`), so both accept and refuse the same rows with the same messages.

An AVA-style row is `video_id,timestamp[,x1,y1,x2,y2,col7[,col8]]`. Both paths apply the same
rules, so they keep and reject exactly the same rows with the same values:

- trailing empty fields are dropped before counting columns (`a,0902,,,,,,` is a 2-column row);
- numbers are decimal (`12`, `0.5`, `.5`, `1e-3`); integer columns (timestamp, col7 and a
  person id in col8) accept any integer-valued number (`0902`, `12.0`), as pandas' C parser does;
- `nan`, `inf`, blank or space-only fields where a number is due are "not a number";
- boxes lie in [0, 1] with x1 < x2 and y1 < y2; `RowSchema.zero_area` also keeps x1 == x2 or
  y1 == y2 (a detector's box clipped at the frame edge), never x2 < x1 or y2 < y1.

The fast path (`parse`) reads the whole file with pandas' C engine into fixed dtypes and
validates with numpy masks; only the rows it flags are re-parsed line by line (`parse_line`) to
get the exact message. Files pandas cannot read with fixed dtypes (a word in a number column,
more than 9 fields, blank lines, an empty file) go through the per-line path entirely.
"""

import collections
import dataclasses
import io
import os
import math
import re
import warnings

import numpy as np
import pandas as pd

INT32_MAX = 2**31 - 1
# Every reason a row can be rejected for (RowReport.rejected keys).
REASONS = (
    "column count",
    "not a number",
    "bad value",
    "box outside [0,1]",
    "empty box",
    "unknown action id",
    "duplicate row",
)
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")
_BOX_NAMES = ("x1", "y1", "x2", "y2")
_NCOL = 9  # one column more than AVA's 8 so that a 9th field is seen (and rejected)
MAX_LISTED_ERRORS = 20  # rows listed in an AvaFormatError; the rest are counted
MAX_EXAMPLES = 10  # messages kept in RowReport.examples


class AvaFormatError(ValueError):
    """A malformed AVA file. str(e) lists "FILE:LINE: what is wrong" lines; e.errors holds them."""

    def __init__(self, errors, total=None):
        self.errors = list(errors)
        more = (total or len(self.errors)) - len(self.errors)
        text = "\n".join(self.errors) + (f"\n... and {more} more bad rows" if more > 0 else "")
        super().__init__(text)


@dataclasses.dataclass(frozen=True)
class RowSchema:
    """What a file's rows may hold.

    counts: allowed column counts (after dropping trailing empty fields).
    col7: name of the 7th column in messages ("action_id" or "object_class").
    col8: name of the 8th column; "person_id" is an integer, anything else ("score") a float.
    col7_optional: the 7th column may be empty (AVA person-detection CSVs leave it blank).
    known: frozenset of allowed col7 values, or None for no check.
    duplicates: reject a row identical to an earlier one (groundtruth).
    zero_area: keep boxes with x1 == x2 or y1 == y2 (detections: the official evaluator reads
      them, then drops them); boxes with x2 < x1 or y2 < y1 stay "empty box".
    """

    counts: tuple = (2, 7, 8)
    col7: str = "action_id"
    col8: str = "person_id"
    col7_optional: bool = False
    known: frozenset | None = None
    duplicates: bool = False
    zero_area: bool = False


@dataclasses.dataclass
class Rows:
    """Parsed good rows, in file order. Boxes stay in CSV order [x1, y1, x2, y2] here."""

    video_id: np.ndarray  # [N] object (str)
    timestamp: np.ndarray  # [N] int64
    box: np.ndarray  # [N, 4] float64, NaN for 2-column rows
    col7: np.ndarray  # [N] int64, -1 when absent
    col8: np.ndarray  # [N] float64, NaN when absent
    line: np.ndarray  # [N] int64, 1-based

    @staticmethod
    def from_list(rows):
        """rows: list of (video_id, timestamp, x1, y1, x2, y2, col7, col8, line) tuples."""
        cols = list(zip(*rows)) if rows else [()] * 9
        return Rows(
            video_id=np.array(cols[0], dtype=object),
            timestamp=np.array(cols[1], dtype=np.int64),
            box=np.array(cols[2:6], dtype=np.float64).T.reshape(-1, 4),
            col7=np.array(cols[6], dtype=np.int64),
            col8=np.array(cols[7], dtype=np.float64),
            line=np.array(cols[8], dtype=np.int64),
        )

    def take(self, index):
        return Rows(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))

    @staticmethod
    def concat(parts):
        merged = Rows(
            *(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(Rows))
        )
        return merged.take(np.argsort(merged.line, kind="stable"))


class _Bad(Exception):
    def __init__(self, reason, detail):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _number(token, name, integer=False):
    if not _NUMBER.match(token.strip()):
        raise _Bad("not a number", f"{name} is {token!r}, expected a number")
    value = float(token)
    if not math.isfinite(value):
        raise _Bad("not a number", f"{name} is {token!r}, expected a finite number")
    if integer and value != math.floor(value):
        raise _Bad("not a number", f"{name} is {token!r}, expected an integer")
    return value


def parse_line(text, schema):
    """One line -> (video_id, ts, x1, y1, x2, y2, col7, col8); raises _Bad(reason, detail)."""
    fields = text.split(",")
    while len(fields) > 1 and fields[-1] == "":
        fields.pop()
    n = len(fields)
    if n not in schema.counts:
        want = " or ".join(str(c) for c in schema.counts)
        raise _Bad("column count", f"{n} columns, expected {want}")
    ts = _number(fields[1], "timestamp", integer=True)
    box, col7, col8 = [math.nan] * 4, -1, math.nan
    if n >= 7:
        box = [_number(fields[2 + i], _BOX_NAMES[i]) for i in range(4)]
        if not (schema.col7_optional and fields[6] == ""):
            col7 = _number(fields[6], schema.col7, integer=True)
    if n >= 8:
        col8 = _number(fields[7], schema.col8, integer=schema.col8 == "person_id")
    if fields[0] == "":
        raise _Bad("bad value", "empty video id")
    if not 0 <= ts <= INT32_MAX:
        raise _Bad("bad value", f"timestamp {fields[1]!r} is negative or too large")
    if abs(col7) > INT32_MAX or (schema.col8 == "person_id" and abs(col8) > INT32_MAX):
        raise _Bad("bad value", "integer too large for int32")
    if n >= 7:
        if not all(0.0 <= v <= 1.0 for v in box):
            raise _Bad("box outside [0,1]", "box x1,y1,x2,y2 = " + ",".join(fields[2:6]))
        if schema.zero_area and (box[2] < box[0] or box[3] < box[1]):
            raise _Bad("empty box", "x2 < x1 or y2 < y1 in box " + ",".join(fields[2:6]))
        if not schema.zero_area and (box[2] <= box[0] or box[3] <= box[1]):
            raise _Bad("empty box", "x2 <= x1 or y2 <= y1 in box " + ",".join(fields[2:6]))
        if schema.known is not None and fields[6] != "" and int(col7) not in schema.known:
            raise _Bad("unknown action id", f"{schema.col7} {int(col7)} is not in the label map")
    return (fields[0], int(ts), *box, int(col7), col8)


def _parse_lines(lines, schema):
    """lines: iterable of (line_number, text) -> (Rows, bad list of (line, reason, detail))."""
    good, bad = [], []
    for number, text in lines:
        if not text.strip():
            continue
        try:
            good.append((*parse_line(text, schema), number))
        except _Bad as e:
            bad.append((number, e.reason, e.detail))
    return Rows.from_list(good), bad


def parse_slow(data, schema):
    """Exact per-line parse of a whole file's bytes -> (Rows, bad)."""
    text = data.decode("utf-8-sig")
    return _dedupe(*_parse_lines(enumerate(re.split(r"\r\n|\r|\n", text), 1), schema), schema)


def _read_frame(data):
    # Column 9 is a float so that pandas fails (-> per-line path) on a word there; a number there
    # is rejected by the mask. low_memory=False: one pass, no chunk concatenation (2x faster).
    dtype = {0: object, 1: np.int64, **{i: np.float64 for i in range(2, _NCOL)}}
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)  # more fields than names
        return pd.read_csv(
            io.BytesIO(data),
            header=None,
            names=range(_NCOL),
            index_col=False,
            dtype=dtype,
            keep_default_na=False,
            na_values=[""],
            quoting=3,
            engine="c",
            skip_blank_lines=False,
            low_memory=False,
        )


def _fast_mask(frame, schema):
    """Vectorised mirror of parse_line -> (ok: bool [N], True for good rows; ts: int64 [N];
    cols: 6 float64 [N] arrays x1, y1, x2, y2, col7, col8, NaN where empty)."""
    ts = frame[1].to_numpy(np.int64)
    cols = [frame[j].to_numpy(np.float64) for j in range(2, 8)]
    x1, y1, x2, y2, col7, col8 = cols
    has = [~np.isnan(c) for c in cols]  # field present (column 1 always is: pandas needs it)
    has_box = has[0] & has[1] & has[2] & has[3]
    no_box = ~(has[0] | has[1] | has[2] | has[3])
    extra = ~np.isnan(frame[_NCOL - 1].to_numpy(np.float64))  # a 9th field
    shape = {
        2: no_box & ~has[4] & ~has[5],  # column counts after dropping trailing empty fields
        7: has_box & has[4] & ~has[5],
        8: has_box & (has[4] | schema.col7_optional) & has[5],
    }
    ok = np.zeros(len(ts), bool)
    for count in schema.counts:
        ok |= shape[count]
    ok &= ~extra & frame[0].notna().to_numpy() & (ts >= 0) & (ts <= INT32_MAX)
    for c in cols:  # present fields are finite (NaN means empty)
        ok &= ~np.isinf(c)
    with np.errstate(invalid="ignore"):
        for v in [col7] + ([col8] if schema.col8 == "person_id" else []):
            ok &= np.isnan(v) | ((v == np.floor(v)) & (np.abs(v) <= INT32_MAX))
        inside = (x1 >= 0) & (y1 >= 0) & (x2 <= 1) & (y2 <= 1)
        inside &= ((x2 >= x1) & (y2 >= y1)) if schema.zero_area else ((x2 > x1) & (y2 > y1))
        ok &= no_box | inside  # with x1 >= 0 and x2 > x1, x2 >= 0 (and so on) follow
        if schema.known is not None:  # searchsorted: O(N log K), np.isin would sort all N
            known = np.array(sorted(schema.known) or [np.nan], np.float64)
            pos = np.minimum(np.searchsorted(known, col7), len(known) - 1)
            ok &= np.isnan(col7) | (known[pos] == col7)
    return ok, ts, cols


def parse(data, schema, force_slow=False):
    """Bytes of a CSV file -> (Rows, bad: sorted list of (line, reason, detail))."""
    # Blank lines (with skip_blank_lines=False) and empty files make pandas fail too, so pandas'
    # row i is line i + 1 whenever it succeeds, with \r\n, \r or \n line ends like parse_slow.
    if force_slow or data.startswith(b"\xef\xbb\xbf"):  # a BOM would shift line 1's text
        return parse_slow(data, schema)
    try:
        frame = _read_frame(data)
    except (ValueError, pd.errors.ParserError, pd.errors.ParserWarning, UnicodeDecodeError):
        return parse_slow(data, schema)
    ok, ts, cols = _fast_mask(frame, schema)
    everything = ok.all()
    pick = (lambda c: c) if everything else (lambda c: c[ok])
    col7 = pick(cols[4])
    rows = Rows(
        video_id=pick(frame[0].to_numpy(object)),
        timestamp=pick(ts),
        box=np.stack([pick(c) for c in cols[:4]], axis=1),
        col7=np.where(np.isnan(col7), -1, col7).astype(np.int64),
        col8=pick(cols[5]),
        line=np.flatnonzero(ok) + 1,
    )
    bad = []
    if not everything:  # exact messages (and values, should the mask be stricter) for flagged rows
        lines = re.split(rb"\r\n|\r|\n", data)
        flagged = [(i + 1, lines[i].decode("utf-8")) for i in np.flatnonzero(~ok)]
        extra, bad = _parse_lines(flagged, schema)
        rows = Rows.concat([rows, extra])
    return _dedupe(rows, bad, schema)


def _dedupe(rows, bad, schema):
    """Rejects rows identical to an earlier row (when schema.duplicates); returns (Rows, bad)."""
    if schema.duplicates and len(rows.line):
        # -inf stands for "absent" so that NaN fields compare equal (good rows are finite).
        cols = {
            "v": rows.video_id,
            "t": rows.timestamp,
            "a": rows.col7,
            "p": np.where(np.isnan(rows.col8), -np.inf, rows.col8),
            **{
                k: np.where(np.isnan(rows.box[:, i]), -np.inf, rows.box[:, i])
                for i, k in enumerate("wxyz")
            },
        }
        frame = pd.DataFrame(cols)
        dup = frame.duplicated(keep="first").to_numpy()
        if dup.any():
            first = {}
            for key, line in zip(frame[~dup].itertuples(index=False), rows.line[~dup]):
                first.setdefault(tuple(key), int(line))
            for key, line in zip(frame[dup].itertuples(index=False), rows.line[dup]):
                bad.append((int(line), "duplicate row", f"same as line {first[tuple(key)]}"))
            rows = rows.take(~dup)
    return rows, sorted(bad)


@dataclasses.dataclass
class RowReport:
    """What a reader kept and skipped. rejected: reason -> count; examples: first messages."""

    path: str
    kept: int = 0
    rejected: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    examples: list = dataclasses.field(default_factory=list)


def annotation_schema(kind, **overrides):
    """RowSchema of an AVA annotation CSV (kind="groundtruth": 8th column person_id, a row equal
    to an earlier one is a "duplicate row") or detection CSV (kind="detections": 8th column
    score); `overrides` set other RowSchema fields."""
    if kind not in ("groundtruth", "detections"):
        raise ValueError(f"kind must be 'groundtruth' or 'detections', got {kind!r}")
    return RowSchema(
        col8="person_id" if kind == "groundtruth" else "score",
        duplicates=kind == "groundtruth",
        **overrides,
    )


def read_rows(path, schema, skip_bad=False, force_slow=False):
    """Reads and parses a CSV file with `schema` -> (Rows, RowReport).

    Raises AvaFormatError listing "FILE:LINE: reason: detail" for every bad row (up to
    MAX_LISTED_ERRORS, the rest counted) unless skip_bad, which skips and counts them.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        rows, bad = parse(data, schema, force_slow=force_slow)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise AvaFormatError([f"{path}:{line}: not UTF-8 text"]) from None
    messages = [f"{path}:{line}: {reason}: {detail}" for line, reason, detail in bad]
    if messages and not skip_bad:
        raise AvaFormatError(messages[:MAX_LISTED_ERRORS], total=len(messages))
    report = RowReport(
        path=path,
        kept=len(rows.line),
        rejected=collections.Counter(reason for _, reason, _ in bad),
        examples=messages[:MAX_EXAMPLES],
    )
    return rows, report


def read_excluded_timestamps(path):
    """CSV of video_id,timestamp rows -> set of (video_id, timestamp) keys."""
    rows, _ = read_rows(path, RowSchema(counts=(2,)))
    return set(zip(rows.video_id.tolist(), rows.timestamp.tolist()))
