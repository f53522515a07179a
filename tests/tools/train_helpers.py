"""Shared by the tools/train.py tests: the tiny-model flags, tiny synthetic TFRecords, running
the trainer in a subprocess, and the one-error-line check."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = os.path.join(REPO, "tools", "train.py")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
TINY = [
    "--image_size=64",
    "--num_frames=8",
    "--frame_stride=2",
    "--anchor_sizes=16,32,48",
    "--rpn_filters=32",
    "--post_nms_top_k=20",
    "--num_roi_samples=16",
    "--max_boxes=4",
    "--max_proposals=4",
    "--max_objects=2",
    "--head=linear",
    "--head_dropout=0.3",
    "--batch_size=2",
    "--optimizer=adamw",
    "--learning_rate=0.001",
    "--warmup_learning_rate=0.0001",
    "--warmup_steps=2",
    "--deterministic",
    "--checkpoint_every=1",
    "--log_every=1",
    "--noprogress",
]

# Model flags of a tiny end-to-end detector (a trainer directory's model_flags.json).
TINY_DETECTOR = dict(
    trunk="i3d_tiny",
    head="linear",
    proposals="rpn",
    image_size=64,
    num_frames=8,
    frame_stride=2,
    anchor_sizes=["16", "32", "48"],
    rpn_filters=32,
    post_nms_top_k=20,
    max_boxes=4,
    max_proposals=4,
    max_objects=2,
    seed=0,
)


def make_tiny_data(root, **overrides) -> dict:
    """Synthetic AVA (3 videos x 8 s; `overrides` of `synthetic.generate`) converted to two
    TFRecord shards under `root` (a pathlib.Path) -> {"label_map", "train" (glob of the
    shards), "root"}."""
    from action_tx.data import convert, synthetic

    synthetic.generate(
        str(root / "ava"),
        preset="tiny",
        check=False,
        **dict(dict(videos=3, seconds=8), **overrides),
    )
    convert.convert_split(
        str(root / "ava"),
        "train",
        str(root / "tf" / "train.tfrecord@2"),
        num_frames=16,
        progress=False,
        num_workers=1,
    )
    return {
        "label_map": str(root / "ava" / "annotations" / "action_list.pbtxt"),
        "train": str(root / "tf" / "train.tfrecord-*"),
        "root": root,
    }


def run(*args, timeout=300, env=None):
    """tools/train.py with `args` -> subprocess.CompletedProcess (text stdout/stderr)."""
    return subprocess.run(
        [sys.executable, TRAIN, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or ENV,
        cwd=REPO,
    )


def assert_clean_error(proc, *needles):
    """Exit status 2, stderr one `error: ...` line (holding every needle), no traceback; an
    info line `model config from ...` (a tool reading a trainer directory) may precede it."""
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [
        l
        for l in proc.stderr.splitlines()
        if l.strip() and "cuInit" not in l and not l.startswith("model config from")
    ]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0]
