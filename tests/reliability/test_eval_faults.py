"""Issue 26 items 6-8: `tools/eval.py --detections` on input that used to be scored wrongly,
refused, or scored in silence. Each warning or error is one line on stderr."""

import json
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
A = "0.100,0.100,0.500,0.500"  # x1,y1,x2,y2
B = "0.600,0.600,0.900,0.900"  # IoU with A = 0


@pytest.fixture
def files(tmp_path):
    """write(name, text) -> path; a two-key ground truth (class 1 on A at v/1 and v/2) and a
    label map are written already."""

    def write(name, text):
        (tmp_path / name).write_text(text)
        return tmp_path / name

    write("gt.csv", f"v,0001,{A},1,0\nv,0002,{A},1,0\n")
    write("map.txt", "1: bend/bow\n")
    return write


def run_eval(files, groundtruth, detections, *flags):
    out = groundtruth.parent / "result.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "eval.py"),
            f"--groundtruth={groundtruth}",
            f"--detections={detections}",
            f"--label_map={groundtruth.parent / 'map.txt'}",
            f"--output_json={out}",
            "--nobreakdowns",
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    stderr = [line for line in proc.stderr.splitlines() if not line.startswith("written: ")]
    result = json.loads(out.read_text()) if proc.returncode == 0 else None
    return proc, stderr, result


def test_row_without_score_counts_as_one(files):
    # (v,1): a false positive at 0.9 and a hit at 0.5; (v,2): a hit without a score.
    # Score 1.0 (official): TP, FP, TP -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6. The NaN score of
    # the old code ranked it last: FP, TP, TP -> 2/3.
    det = files("det.csv", f"v,0001,{B},1,0.9\nv,0002,{A},1\nv,0001,{A},1,0.5\n")
    proc, stderr, result = run_eval(files, det.parent / "gt.csv", det)
    assert proc.returncode == 0, proc.stderr
    assert result["mAP@0.5IOU"] == pytest.approx(5 / 6)
    assert stderr == [
        f"warning: {det}:2: 1 detection row without a score (7 columns; the first "
        "here): read as score 1.0, as the official evaluator does"
    ]
    assert result["counts"]["detections_without_score"] == 1


@pytest.mark.parametrize("columns", [7, 8])
def test_groundtruth_given_as_detections_is_named(files, columns):
    gt = files(
        "gt_as_det.csv",
        "".join(f"v,000{t},{A},1" + (f",{t}" if columns == 8 else "") + "\n" for t in (1, 2)),
    )
    proc, stderr, result = run_eval(files, gt.parent / "gt.csv", gt)
    assert proc.returncode == 0, proc.stderr
    assert result["mAP@0.5IOU"] == 1.0  # what the official evaluator says, too
    assert len(stderr) == 1 and stderr[0].startswith(f"warning: {gt}:1: ")
    assert stderr[0].endswith("is this a ground-truth file given as detections?")
    assert ("no detection row has a score" if columns == 7 else "whole number (1 to 2)") in stderr[
        0
    ]


def test_zero_area_boxes_are_read_then_dropped(files):
    # Two boxes clipped flat at the frame edge rank first; the official evaluator drops them
    # after the per-key cap, so the hit at 0.5 alone gives AP 1/2 (1 of 2 ground-truth boxes).
    det = files(
        "det.csv",
        f"v,0001,{A},1,0.5\nv,0002,0.300,0.000,0.700,0.000,1,0.9\n"
        "v,0002,1.000,0.200,1.000,0.600,1,0.8\n",
    )
    proc, stderr, result = run_eval(files, det.parent / "gt.csv", det)
    assert proc.returncode == 0, proc.stderr
    assert result["mAP@0.5IOU"] == pytest.approx(0.5)
    assert result["counts"]["detections_invalid_box"] == 2
    assert len(stderr) == 1
    assert stderr[0].startswith(f"warning: {det}:2: 2 detection rows with a zero-area box")
    # The cap of 50 per key counts them: 50 flat boxes above the hit push it out -> AP 0.
    flat = "".join(f"v,0001,0.300,0.000,0.700,0.000,1,0.{90 + i % 10}{i:02d}\n" for i in range(50))
    det = files("det_cap.csv", flat + f"v,0001,{A},1,0.5\n")
    proc, stderr, result = run_eval(files, det.parent / "gt.csv", det)
    assert proc.returncode == 0, proc.stderr
    assert result["mAP@0.5IOU"] == 0.0 and result["counts"]["detections_over_cap"] == 1


@pytest.mark.parametrize(
    "row, message",
    [
        ("v,0001,0.500,0.100,0.400,0.500,1,0.9", "empty box: x2 < x1 or y2 < y1"),
        ("v,0001,0.100,0.100,1.200,0.500,1,0.9", "box outside [0,1]"),
        ("v,0001,0.100,oops,0.500,0.500,1,0.9", "not a number"),
    ],
)
def test_bad_rows_are_still_refused(files, row, message):
    det = files("det.csv", f"v,0001,{A},1,0.5\n{row}\n")
    proc, stderr, _ = run_eval(files, det.parent / "gt.csv", det)
    assert proc.returncode == 2
    assert stderr == [stderr[0]] and stderr[0].startswith(f"error: {det}:2: {message}")


def test_detections_on_unknown_videos_are_named(files):
    det = files(
        "det.csv",
        f"v,0001,{A},1,0.5\n"
        + "".join(f"{video},0001,{A},1,0.{i + 1}\n" for i, video in enumerate("wxyzw")),
    )
    proc, stderr, result = run_eval(files, det.parent / "gt.csv", det)
    assert proc.returncode == 0, proc.stderr
    assert stderr == [
        f"warning: {det}:2: 5 of 6 detection rows on 4 videos absent from the "
        "ground truth (w, x, y, ...): ignored, as the official evaluator does"
    ]
    other = files("other.csv", f"u,0001,{A},1,0.5\n")
    proc, stderr, result = run_eval(files, det.parent / "gt.csv", other)
    assert result["mAP@0.5IOU"] == 0.0
    assert stderr == [
        f"warning: {other}:1: no detection row is on a video of the ground "
        "truth (1 detection row on 1 video absent from the ground truth (u)): all "
        "ignored, as the official evaluator does"
    ]


@pytest.mark.parametrize(
    "gt_text, excluded, reason",
    [
        ("", None, "empty ground truth (no rows)"),
        ("v,0001\nv,0002\n", None, "none of its 2 rows has a box"),
        (f"v,0001,{A},1,0\n", "v,0001\n", "(1 keyframe, all excluded)"),
    ],
)
def test_empty_groundtruth_is_one_error_line(files, gt_text, excluded, reason):
    gt = files("empty_gt.csv", gt_text)
    det = files("det.csv", f"v,0001,{A},1,0.5\nv,0001\n")
    flags = [f"--excluded={files('ex.csv', excluded)}"] if excluded else []
    proc, stderr, _ = run_eval(files, gt, det, *flags)
    assert proc.returncode == 2
    assert len(stderr) == 1 and stderr[0].startswith(f"error: {gt}: empty ground truth")
    assert reason in stderr[0] and stderr[0].endswith("nothing to score")
