"""Tests of action_tx.data.ava (and its row parser object_detection_ext.ava_csv)."""

import collections

import numpy as np
import pytest

from action_tx.data import ava
from object_detection_ext import ava_csv

AVA = "ava_format"


# ----------------------------------------------------------------------------- label maps
def test_activitynet_label_map_has_60_classes(shared_data):
    lm = ava.read_label_map(shared_data / AVA / "ava_action_list_v2.1_for_activitynet_2018.pbtxt")
    assert lm.num_classes == 60
    assert lm.ids[:4] == (1, 3, 4, 5) and lm.ids[-1] == 80 and 2 not in lm.ids
    assert lm.names[1] == "bend/bow (at the waist)" and lm.names[80] == "watch (a person)"
    cats = lm.categories()
    assert cats["pose"] == [1] + list(range(3, 15))
    assert len(cats["person_object"]) == 32 and cats["person_object"][:3] == [15, 17, 20]
    assert cats["person_person"] == [64, 65, 66, 67, 68, 69, 70, 72, 73, 74, 76, 77, 78, 79, 80]
    np.testing.assert_array_equal(
        lm.index_of(np.array([[1, 2, 3], [80, 0, 81]])), [[0, -1, 1], [59, -1, -1]]
    )


def test_text_label_map_equals_pbtxt(shared_data):
    text = ava.read_label_map(shared_data / AVA / "ava_label_map_80.txt")
    pbtxt = ava.read_label_map(
        shared_data / AVA / "ava_action_list_v2.1_for_activitynet_2018.pbtxt"
    )
    assert text == pbtxt
    assert text.names[28] == "drive (e.g., a car, a truck)"


def test_mmaction2_label_map_allows_repeated_names(shared_data):
    lm = ava.read_label_map(shared_data / AVA / "mmaction2_action_list.txt")
    assert lm.ids == (12, 17, 79, 80)
    assert lm.names == {12: "action1", 17: "action2", 79: "action3", 80: "action3"}
    assert lm.categories() == {"pose": [12], "person_object": [17], "person_person": [79, 80]}


def test_label_id_pbtxt_and_round_trip(tmp_path):
    path = tmp_path / "v22.pbtxt"
    path.write_text(
        'label {\n  name: "talk to (e.g., self)"\n  label_id: 79\n'
        '  label_type: PERSON_INTERACTION\n}\nlabel {\n  name: "stand"\n'
        "  label_id: 12\n  label_type: PERSON_MOVEMENT\n}\n"
    )
    lm = ava.read_label_map(path)
    assert lm.ids == (12, 79) and lm.names[79] == "talk to (e.g., self)"
    odd = ava.LabelMap(ids=(3, 7), names={3: 'say "hi"', 7: "back\\slash"})
    ava.write_label_map(tmp_path / "out.pbtxt", odd)
    assert (
        (tmp_path / "out.pbtxt")
        .read_text()
        .startswith('item {\n  name: "say \\"hi\\""\n  id: 3\n}\n')
    )
    assert ava.read_label_map(tmp_path / "out.pbtxt") == odd


def test_bad_label_maps_name_file_and_line(tmp_path):
    path = tmp_path / "bad.pbtxt"
    path.write_text(
        'item {\n  name: "a"\n  id: 1\n}\nitem {\n  name: "b"\n}\nitem {\n  name: "c"\n  id: 1\n}\n'
    )
    with pytest.raises(ava.AvaFormatError) as e:
        ava.read_label_map(path)
    assert e.value.errors == [
        f"{path}:5: item block without an integer id/label_id (got None)",
        f"{path}:8: duplicate id 1 (first on line 1)",
    ]
    text = tmp_path / "bad.txt"
    text.write_text("1: walk\n\nrun\n")
    with pytest.raises(ava.AvaFormatError, match=rf"{text}:3: expected 'N: name', got 'run'"):
        ava.read_label_map(text)


# ----------------------------------------------------------------------------- real CSVs
def test_mmaction2_sample(shared_data):
    path = shared_data / AVA / "mmaction2_ava_sample.csv"
    a, report = ava.read_annotations(path)
    assert report.kept == 8 and not report.rejected
    assert a.video_id.tolist() == ["0f39OWEqJ24"] * 5 + ["_-Z6wFjXtGQ"] * 3
    assert (
        a.timestamp.dtype == np.int32 and a.timestamp.tolist() == [902] * 3 + [903] * 2 + [902] * 3
    )
    np.testing.assert_array_equal(a.boxes[0], np.float32([0.162, 0.031, 0.995, 0.670]))  # yxyx
    assert a.action_id.tolist() == [12, 17, 79, 12, 17, 12, 74, 80]
    assert a.person_id.tolist() == [0] * 8 and np.isnan(a.score).all()
    assert a.line.tolist() == list(range(1, 9))
    # Its label map lacks 74 (line 7): an error naming file:line, or skipped and counted.
    lm = ava.read_label_map(shared_data / AVA / "mmaction2_action_list.txt")
    with pytest.raises(ava.AvaFormatError) as e:
        ava.read_annotations(path, lm)
    assert e.value.errors == [f"{path}:7: unknown action id: action_id 74 is not in the label map"]
    a, report = ava.read_annotations(path, lm, skip_bad=True)
    assert report.kept == 7 and report.rejected == collections.Counter({"unknown action id": 1})
    assert a.line.tolist() == [1, 2, 3, 4, 5, 6, 8]


def test_excluded_timestamps(shared_data):
    keys = ava.read_excluded_timestamps(
        shared_data / AVA / "mmaction2_ava_excluded_timestamps_sample.csv"
    )
    assert keys == {("0f39OWEqJ24", 903), ("_-Z6wFjXtGQ", 902)}


def test_eval_sample(shared_data):
    folder = shared_data / AVA / "eval_sample"
    lm = ava.read_label_map(folder / "action_list.txt")
    assert lm.ids == (1, 2, 3)
    gt, report = ava.read_annotations(folder / "gt.csv", lm)
    assert report.kept == len(gt) == 12
    assert gt.video_id[0] == "3reY9zJKhqN" and gt.timestamp[0] == 1774
    np.testing.assert_array_equal(gt.boxes[1], np.float32([0.230, 0.050, 0.952, 0.522]))
    assert gt.person_id[:4].tolist() == [0, 1, 2, 3]
    pred, report = ava.read_annotations(folder / "pred.csv", lm, kind="detections")
    assert report.kept == len(pred) == 30 and (pred.person_id == -1).all()
    np.testing.assert_array_equal(pred.score[:3], np.float32([0.655, 0.949, 0.640]))
    assert pred.action_id[:4].tolist() == [2, 1, 1, 3]


# ----------------------------------------------------------------------------- bad rows
LABELS = ava.LabelMap(ids=(1, 2, 3), names={1: "a", 2: "b", 3: "c"})
BAD_ROWS = [  # (row, reason or None for a good row); line = position + 1
    ("vid_a,0902,0.1,0.2,0.5,0.6,1,0", None),
    ("vid_a,0902,0.1,0.2,0.5,0.6,1,0", "duplicate row: same as line 1"),
    ("vid_a,0902,0.1,0.2,0.5", "column count: 5 columns, expected 2 or 7 or 8"),
    ("vid_a,0903,0.1,0.2,1.5,0.6,1,0", "box outside [0,1]: box x1,y1,x2,y2 = 0.1,0.2,1.5,0.6"),
    ("vid_a,0903,0.5,0.2,0.4,0.6,1,0", "empty box: x2 <= x1 or y2 <= y1 in box 0.5,0.2,0.4,0.6"),
    ("vid_a,0903,0.1,0.6,0.5,0.6,1,0", "empty box: x2 <= x1 or y2 <= y1 in box 0.1,0.6,0.5,0.6"),
    ("vid_a,0903,0.1,0.2,0.5,0.6,9,0", "unknown action id: action_id 9 is not in the label map"),
    ("-vid_b,0904", None),
    ("vid_a,0903,0.1,0.2,0.5,0.6,2,0,7", "column count: 9 columns, expected 2 or 7 or 8"),
    (",0903,0.1,0.2,0.5,0.6,2,0", "bad value: empty video id"),
    ("vid_a,-5,0.1,0.2,0.5,0.6,2,0", "bad value: timestamp '-5' is negative or too large"),
    ("vid_a,0905,0.1,0.2,0.5,0.6,1.5,0", "not a number: action_id is '1.5', expected an integer"),
    ("_vid_c,0905,0.100,0.200,0.500,0.600,3,7,", None),  # a trailing empty field is dropped
    ("vid_a,0905,0.1,,0.5,0.6,1,0", "not a number: y1 is '', expected a number"),
]
TEXT_ROWS = [  # rows pandas cannot type: the whole file goes through the per-line path
    ("vid_a,09x2,0.1,0.2,0.5,0.6,1,0", "not a number: timestamp is '09x2', expected a number"),
    ("vid_a,0906,0.1,nan,0.5,0.6,1,0", "not a number: y1 is 'nan', expected a number"),
    ("vid_a,0906,0.1,0.2,0.5,0.6,1,0,1,2", "column count: 10 columns, expected 2 or 7 or 8"),
    ("vid_a,0906,0.1,0.2,0.5,0.6,1,0,x", "column count: 9 columns, expected 2 or 7 or 8"),
]


def _write(tmp_path, rows, name="bad.csv"):
    path = tmp_path / name
    path.write_text("".join(row + "\n" for row, _ in rows))
    expected = [f"{path}:{i}: {why}" for i, (_, why) in enumerate(rows, 1) if why]
    return path, expected


@pytest.mark.parametrize("rows", [BAD_ROWS, BAD_ROWS + TEXT_ROWS], ids=["fast", "per_line"])
def test_every_bad_row_is_named(tmp_path, rows):
    path, expected = _write(tmp_path, rows)
    with pytest.raises(ava.AvaFormatError) as e:
        ava.read_annotations(path, LABELS)
    assert e.value.errors == expected
    assert str(e.value).splitlines() == expected
    a, report = ava.read_annotations(path, LABELS, skip_bad=True)
    assert report.kept == 3 and a.line.tolist() == [1, 8, 13]
    want = collections.Counter(
        {
            "column count": 2,
            "empty box": 2,
            "bad value": 2,
            "not a number": 2,
            "duplicate row": 1,
            "box outside [0,1]": 1,
            "unknown action id": 1,
        }
    )
    if rows is not BAD_ROWS:
        want.update({"not a number": 2, "column count": 2})
        assert sorted(want) == sorted(ava_csv.REASONS)  # every reason is exercised
    assert report.rejected == want and report.examples == expected[: ava.MAX_EXAMPLES]
    assert a.video_id.tolist() == ["vid_a", "-vid_b", "_vid_c"]
    assert a.action_id.tolist() == [1, -1, 3] and a.person_id.tolist() == [0, -1, 7]
    np.testing.assert_array_equal(a.boxes[[0, 2]], np.float32([[0.2, 0.1, 0.6, 0.5]] * 2))
    assert np.isnan(a.boxes[1]).all()


def test_error_list_is_capped(tmp_path):
    path, _ = _write(tmp_path, [("v,0902,0.1", "x")] * 25)
    with pytest.raises(ava.AvaFormatError) as e:
        ava.read_annotations(path)
    assert len(e.value.errors) == ava.MAX_LISTED_ERRORS
    assert str(e.value).endswith(f"... and {25 - ava.MAX_LISTED_ERRORS} more bad rows")


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_fast_and_per_line_paths_agree(monkeypatch, newline):
    rng = np.random.default_rng(0)
    rows = [
        f"{v},{t:04d},{x:.3f},{y:.3f},{x + w:.3f},{y + h:.3f},{c},{p}"
        for v, t, x, y, w, h, c, p in zip(
            rng.choice(["-a1", "_b2", "c3"], 200),
            rng.integers(900, 1800, 200),
            rng.uniform(0, 0.5, 200),
            rng.uniform(0, 0.5, 200),
            rng.uniform(0.01, 0.5, 200),
            rng.uniform(0.01, 0.5, 200),
            rng.integers(1, 5, 200),
            rng.integers(0, 50, 200),
        )
    ]
    text = newline.join(rows + [r for r, _ in BAD_ROWS] + ["x,0902"]) + newline
    schema = ava_csv.RowSchema(known=frozenset((1, 2, 3)), duplicates=True)
    slow_rows, slow_bad = ava_csv.parse(text.encode(), schema, force_slow=True)

    def no_fallback(*args):
        raise AssertionError("the fast path fell back to the per-line path")

    monkeypatch.setattr(ava_csv, "parse_slow", no_fallback)
    fast_rows, fast_bad = ava_csv.parse(text.encode(), schema)
    assert fast_bad == slow_bad and len(fast_bad) > 11
    for name in ("video_id", "timestamp", "box", "col7", "col8", "line"):
        np.testing.assert_array_equal(getattr(fast_rows, name), getattr(slow_rows, name))
    assert fast_rows.box.dtype == np.float64 and fast_rows.video_id.dtype == object


def test_odd_but_valid_ids_and_bad_encoding(tmp_path):
    path = tmp_path / "ids.csv"
    path.write_text("0902,0902\nNA,1\nnan,2\n-1e5,0003\n")
    a, _ = ava.read_annotations(path)
    assert a.video_id.tolist() == ["0902", "NA", "nan", "-1e5"]  # kept as written
    assert a.timestamp.tolist() == [902, 1, 2, 3]
    path.write_bytes(b"v,0902\nv\xff,0903\n")
    with pytest.raises(ava.AvaFormatError, match=rf"^{path}:2: not UTF-8 text$"):
        ava.read_annotations(path)
    excluded = tmp_path / "excluded.csv"
    excluded.write_text("v,0902\nv,0903,0.1,0.2,0.3,0.4,1\n")
    with pytest.raises(
        ava.AvaFormatError, match=rf"^{excluded}:2: column count: 7 columns, expected 2$"
    ):
        ava.read_excluded_timestamps(excluded)


def test_blank_lines_keep_line_numbers(tmp_path):
    path = tmp_path / "blank.csv"
    path.write_text("v,0902\n\nv,0903,0.1,0.2,0.3\n")
    with pytest.raises(ava.AvaFormatError, match=rf"^{path}:3: column count"):
        ava.read_annotations(path)


# ----------------------------------------------------------------------------- detections
def test_person_and_object_detections(tmp_path):
    person = tmp_path / "person.csv"
    person.write_text(
        "-v,0902,0.1,0.2,0.5,0.6,,0.9\n-v,0902,0.2,0.2,0.5,0.6,80,0.25\n"
        "-v,0903,0.1,0.2,0.5,0.6,0.7\n"
    )
    with pytest.raises(
        ava.AvaFormatError, match=rf"{person}:3: column count: 7 columns, expected 8"
    ):
        ava.read_person_detections(person)
    a, report = ava.read_person_detections(person, skip_bad=True)
    assert report.kept == 2 and a.action_id.tolist() == [-1, 80]
    np.testing.assert_array_equal(a.score, np.float32([0.9, 0.25]))
    np.testing.assert_array_equal(a.boxes[1], np.float32([0.2, 0.2, 0.6, 0.5]))
    objects = tmp_path / "objects.csv"
    objects.write_text("v,0902,0.1,0.2,0.5,0.6,7,0.8\nv,0902,0.1,0.2,0.5,0.6,,0.8\n")
    with pytest.raises(ava.AvaFormatError) as e:
        ava.read_object_detections(objects)
    assert e.value.errors == [f"{objects}:2: not a number: object_class is '', expected a number"]
    a, _ = ava.read_object_detections(objects, skip_bad=True)
    assert a.action_id.tolist() == [7] and a.score.tolist() == [np.float32(0.8)]


# ----------------------------------------------------------------------------- writers
def test_write_annotations_text_and_round_trip(tmp_path):
    gt = ava.Annotations(
        video_id=np.array(["-v", "_w", "x"], dtype=object),
        timestamp=np.int32([902, 1500, 7]),
        boxes=np.float32([[0.2, 0.1, 0.6, 0.5], [np.nan] * 4, [0.12345, 0.0, 1.0, 0.98765]]),
        action_id=np.int32([12, -1, 80]),
        person_id=np.int32([3, -1, -1]),
        score=np.full(3, np.nan, np.float32),
        line=np.int64([1, 2, 3]),
    )
    ava.write_annotations(tmp_path / "gt.csv", gt)
    assert (tmp_path / "gt.csv").read_text() == (
        "-v,0902,0.100,0.200,0.500,0.600,12,3\n_w,1500\nx,0007,0.000,0.123,0.988,1.000,80\n"
    )
    back, report = ava.read_annotations(tmp_path / "gt.csv")
    assert report.kept == 3
    np.testing.assert_array_equal(back.boxes, np.round(gt.boxes, 3))
    for name in ("video_id", "timestamp", "action_id", "person_id", "line"):
        np.testing.assert_array_equal(getattr(back, name), getattr(gt, name))
    det = ava.Annotations(
        video_id=np.array(["a", "a"], dtype=object),
        timestamp=np.int32([902, 902]),
        boxes=np.float32([[0.2, 0.1, 0.6, 0.5]] * 2),
        action_id=np.int32([1, 2]),
        person_id=np.int32([-1, -1]),
        score=np.float32([0.123456, 0.5]),
        line=np.int64([1, 2]),
    )
    ava.write_annotations(tmp_path / "det.csv", det, kind="detections")
    assert (tmp_path / "det.csv").read_text().splitlines()[
        0
    ] == "a,0902,0.100,0.200,0.500,0.600,1,0.1235"
    back, _ = ava.read_annotations(tmp_path / "det.csv", kind="detections")
    np.testing.assert_array_equal(back.score, np.float32([0.1235, 0.5]))
    np.testing.assert_array_equal(back.boxes, det.boxes)
