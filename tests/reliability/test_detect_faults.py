"""tools/detect.py under faults (issue 26 items 2, 9, 10): outputs that name the input or each
other are refused before anything is written; keyframes without a detection still give every
output; Ctrl-C, SIGTERM and SIGKILL never leave a half-written file at an output path."""

import json
import pathlib
import signal
import subprocess
import sys
import time

import av
import numpy as np
import pytest

from action_tx import video_io, visualize
from action_tx.data import ava

REPO = pathlib.Path(__file__).resolve().parents[2]
DETECT = str(REPO / "tools" / "detect.py")


def write_video(path, num_frames=30, size=(48, 64), fps=10, seed=0):
    """Smooth moving gradients (small H.264 error, so drawn pixels stand out) in an mp4."""
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 190, size=3)
    yy, xx = np.mgrid[: size[0], : size[1]]
    with av.open(str(path), "w") as c:
        stream = c.add_stream("libx264", rate=fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        for i in range(num_frames):
            frame = (base + ((xx + yy + 2 * i) % 40)[..., None]).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    return path


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """The tiny linear-head detector of tests/tools/test_detect.py, exported (8 frames, 64 px)."""
    import tensorflow as tf

    from action_tx.export import export_saved_model
    from action_tx.model_builder import build_detector

    detector = build_detector(
        num_classes=3,
        trunk="i3d_tiny",
        head="linear",
        anchor_sizes=(16.0, 32.0, 48.0),
        rpn_filters=32,
        post_nms_top_k=20,
        max_detections=5,
        seed=1,
    )
    detector({"clip": tf.zeros([1, 8, 64, 64, 3])}, training=False)
    out = str(tmp_path_factory.mktemp("detect_faults") / "export")
    export_saved_model(
        detector,
        out,
        num_frames=8,
        image_size=64,
        class_ids=[1, 12, 74],
        class_names=["bend/bow", "stand", "listen"],
        frame_stride=2,
        fps=10.0,
    )
    return out


def detect(*args, timeout=120):
    return subprocess.run(
        [sys.executable, DETECT, *args], capture_output=True, text=True, timeout=timeout
    )


def one_error_line(stderr):
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [ln for ln in stderr.splitlines() if ln.startswith("detect.py: error:")]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def partials(folder):
    """Temporary outputs of detect.py left in `folder`."""
    return sorted(p.name for p in pathlib.Path(folder).iterdir() if p.name.endswith(".partial"))


# Item 2: the input video was deleted (--output_video) or overwritten (--output_csv/json).
def test_outputs_that_name_the_input_or_each_other_are_refused(tmp_path, saved_model):
    video = write_video(tmp_path / "clip.mp4")
    original = video.read_bytes()
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link.mp4"
    link.symlink_to(video)
    model = f"--saved_model={saved_model}"
    cases = [
        ([f"--video={video}", f"--output_video={video}"], ["--output_video", "input --video"]),
        (
            [f"--video={video}", f"--output_csv={tmp_path / 'sub' / '..' / 'clip.mp4'}"],
            ["--output_csv", "input --video"],
        ),
        ([f"--video={video}", f"--output_json={link}"], ["--output_json", "input --video"]),
        ([f"--video={link}", f"--output_video={video}"], ["--output_video", "input --video"]),
        (
            [
                f"--video={video}",
                f"--output_csv={tmp_path / 'a.out'}",
                f"--output_json={tmp_path / 'sub' / '..' / 'a.out'}",
            ],
            ["--output_json", "same file as --output_csv"],
        ),
        ([f"--video={video}", f"--output_json={tmp_path / 'sub'}"], ["--output_json", "directory"]),
        (
            [f"--video={video}", f"--output_video={tmp_path / 'a.webm'}"],
            ["--output_video", "cannot write .webm", ".mp4"],
        ),
    ]
    for args, fragments in cases:
        proc = detect(model, *args)
        assert proc.returncode == 2, proc.stderr[-3000:]
        line = one_error_line(proc.stderr)
        for fragment in fragments:
            assert fragment in line, line
        assert video.read_bytes() == original, args  # the input is untouched
        assert not (tmp_path / "a.out").exists()
    # Relative paths resolve against the working directory.
    proc = subprocess.run(
        [sys.executable, DETECT, model, "--video=clip.mp4", "--output_video=./sub/../clip.mp4"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "input --video" in one_error_line(proc.stderr)
    assert video.read_bytes() == original


# Item 9: an empty keyframe crashed the video drawing, and no CSV or JSON was written.
def test_keyframes_without_detections_write_every_output(tmp_path, saved_model):
    video = write_video(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    # Person scores are <= 1: a threshold of 1 drops every detection of every keyframe.
    proc = detect(
        f"--saved_model={saved_model}",
        f"--video={video}",
        f"--output_csv={out}.csv",
        f"--output_json={out}.json",
        f"--output_video={out}.mp4",
        "--score_threshold=1.0",
        "--noprogress",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    result = json.loads(pathlib.Path(f"{out}.json").read_text())
    assert [(k["timestamp"], k["frame"], k["detections"]) for k in result["keyframes"]] == [
        (0, 0, []),
        (1, 10, []),
        (2, 20, []),
    ]
    rows, _ = ava.read_annotations(f"{out}.csv", kind="detections")
    assert len(rows) == 0 and pathlib.Path(f"{out}.csv").read_text() == ""
    assert video_io.count_frames(f"{out}.mp4") == (30, "")
    # Drawn without boxes: every frame is the input frame, up to the codec's error.
    source = np.stack(list(video_io.iter_frames(str(video)))).astype(np.float32)
    drawn = np.stack(list(video_io.iter_frames(f"{out}.mp4"))).astype(np.float32)
    assert drawn.shape == source.shape
    assert np.abs(drawn - source).max(axis=-1).mean() < 4.0
    assert partials(tmp_path) == []
    # The drawing itself: no detection leaves the frame as it was.
    frame = np.arange(48 * 64 * 3, dtype=np.uint8).reshape(48, 64, 3)
    for scores in (np.zeros((0, 3)), np.zeros((0,))):
        np.testing.assert_array_equal(
            visualize.draw_detections(
                frame, np.zeros((0, 4)), np.zeros(0), scores, ["a", "b", "c"]
            ),
            frame,
        )


def _start_and_wait_for_partial(tmp_path, saved_model, video, out):
    """Starts detect.py on `video` and returns once its temporary video exists."""
    proc = subprocess.Popen(
        [
            sys.executable,
            DETECT,
            f"--saved_model={saved_model}",
            f"--video={video}",
            f"--output_video={out}.mp4",
            f"--output_json={out}.json",
            "--noprogress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Python raises KeyboardInterrupt only when SIGINT is not ignored
        # at start (a background job's is): the terminal's default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not any(p.startswith(f".{out.name}.mp4.") for p in partials(tmp_path)):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "detect.py never started writing"
        time.sleep(0.02)
    time.sleep(0.1)  # into the run (60 keyframes take several seconds)
    return proc


# Item 10: Ctrl-C printed a traceback; SIGTERM/SIGKILL left a 48-byte unplayable mp4.
@pytest.mark.parametrize(
    "sig, code, words", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_interrupt_and_terminate_leave_no_output(tmp_path, saved_model, sig, code, words):
    video = write_video(tmp_path / "long.mp4", num_frames=1200, size=(32, 32), fps=20)
    out = tmp_path / "out"
    proc = _start_and_wait_for_partial(tmp_path, saved_model, video, out)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr[-3000:]
    line = one_error_line(stderr)
    assert words in line and "no output written" in line, line
    assert not pathlib.Path(f"{out}.mp4").exists() and not pathlib.Path(f"{out}.json").exists()
    assert partials(tmp_path) == []  # the temporary files are removed


def test_sigkill_keeps_the_previous_output(tmp_path, saved_model):
    video = write_video(tmp_path / "long.mp4", num_frames=1200, size=(32, 32), fps=20)
    out = tmp_path / "out"
    previous = write_video(pathlib.Path(f"{out}.mp4"), num_frames=5, seed=3).read_bytes()
    proc = _start_and_wait_for_partial(tmp_path, saved_model, video, out)
    proc.kill()
    proc.communicate(timeout=60)
    # The output path still holds the previous, playable video; the half-written one is a
    # hidden *.partial file that no output glob (*.mp4, *.json) matches.
    assert pathlib.Path(f"{out}.mp4").read_bytes() == previous
    assert video_io.count_frames(f"{out}.mp4") == (5, "")
    assert not pathlib.Path(f"{out}.json").exists()
    assert sorted(p.name for p in tmp_path.glob("*.mp4")) == ["long.mp4", "out.mp4"]
    stale = partials(tmp_path)
    assert len(stale) == 1 and stale[0].startswith(f".out.mp4.{proc.pid}.")
    # The next run writing out.mp4 removes the dead process's temporary file.
    short = write_video(tmp_path / "short.mp4", num_frames=10)
    again = detect(
        f"--saved_model={saved_model}",
        f"--video={short}",
        f"--output_video={out}.mp4",
        "--noprogress",
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert partials(tmp_path) == [] and video_io.count_frames(f"{out}.mp4") == (10, "")
