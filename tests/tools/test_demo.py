"""tools/demo.py: --help, bad input in one line (exit 2) before any long stage, the data
summary's counts, and a failing stage reported with its command (exit 1). The full demo
(`make demo`, ~15 minutes) is not run here."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(REPO, "tools", "demo.py")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")

LABEL_MAP = (
    'item {\n  name: "stand"\n  id: 12\n}\nitem {\n  name: "watch (a person)"\n  id: 80\n}\n'
)
# 2 videos, 3 keyframes, 4 person-keyframes; class 12: 4 rows, class 80: 2 rows.
VAL_ROWS = [
    "v1,2,0.1,0.1,0.5,0.9,12,0",
    "v1,2,0.1,0.1,0.5,0.9,80,0",
    "v1,2,0.5,0.1,0.9,0.9,12,1",
    "v1,3,0.1,0.1,0.5,0.9,12,0",
    "v2,2,0.2,0.1,0.6,0.9,12,0",
    "v2,2,0.2,0.1,0.6,0.9,80,0",
]


def run(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, DEMO, *args], capture_output=True, text=True, timeout=120, env=ENV, cwd=cwd
    )


def error_lines(proc):
    return [l for l in proc.stderr.splitlines() if l.startswith("demo.py: error:")]


def fake_data(root, videos=True):
    ann = root / "data" / "annotations"
    ann.mkdir(parents=True)
    (ann / "action_list.pbtxt").write_text(LABEL_MAP)
    (ann / "ava_train.csv").write_text("\n".join(VAL_ROWS[:2]) + "\n")
    (ann / "ava_val.csv").write_text("\n".join(VAL_ROWS) + "\n")
    if videos:
        (root / "data" / "videos").mkdir()
        (root / "data" / "videos" / "v1.mp4").write_bytes(b"not checked before detect")
    tfr = root / "out" / "tfrecords"
    tfr.mkdir(parents=True)
    for split, written in (("train", 1), ("val", 3)):  # manifests: conversion is skipped
        (tfr / f"{split}_manifest.json").write_text(
            json.dumps({"keyframes": {"written": written}, "shards": [{"path": "x"}]})
        )
    return [f"--data_dir={root / 'data'}", f"--out_dir={root / 'out'}"]


def test_help_is_fast_and_lists_the_flags():
    proc = run("--helpfull")  # absl prints the usage and exits with status 1
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr
    for flag in ("--data_dir", "--out_dir", "--video", "--config", "--train_steps"):
        assert flag in proc.stdout


def test_unexpected_argument():
    proc = run("extra")
    assert proc.returncode == 2 and error_lines(proc) == [
        "demo.py: error: unexpected arguments extra"
    ], proc.stderr


def test_missing_config_and_video(tmp_path):
    proc = run(f"--config={tmp_path}/nope.flags")
    assert proc.returncode == 2 and len(error_lines(proc)) == 1, proc.stderr
    assert "--config: no such file" in proc.stderr and "nope.flags" in proc.stderr
    proc = run(f"--video={tmp_path}/nope.mp4")
    assert proc.returncode == 2 and "--video: no such file" in error_lines(proc)[0]


def test_default_video_missing_is_reported_before_training(tmp_path):
    proc = run(*fake_data(tmp_path, videos=False))
    assert proc.returncode == 2, proc.stderr
    (line,) = error_lines(proc)
    assert "videos/v1.mp4: no such video" in line and "--video" in line
    assert "=== train" not in proc.stdout


def test_summary_counts_then_failing_stage_names_its_command(tmp_path):
    proc = run(*fake_data(tmp_path))
    # Data summary: hand-counted from VAL_ROWS (and the two train rows).
    assert "train: 1 videos, 1 keyframes, 1 person-keyframes" in proc.stdout
    assert "val: 2 videos, 3 keyframes, 4 person-keyframes" in proc.stdout
    rows = {
        l.split()[0]: l.split()[-2:]
        for l in proc.stdout.splitlines()
        if l.strip().startswith(("12 ", "80 "))
    }
    assert rows == {"12": ["1", "4"], "80": ["1", "2"]}
    # The command is printed before it runs; no shards exist, so training fails.
    assert "$ " in proc.stdout and "tools/train.py --flagfile=" in proc.stdout
    assert proc.returncode == 1, proc.stderr[-2000:]
    (line,) = error_lines(proc)
    assert "stage 'train' failed (exit status 2)" in line and "tools/train.py" in line
