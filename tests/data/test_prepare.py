"""action_tx.data.prepare / tools/prepare_ava.py: frame alignment checked by content on a long
generated movie, failures reported per movie, resume after a kill, the real clips."""

import io
import os
import pathlib
import signal
import subprocess
import sys
import time
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from action_tx.data import frame_source, prepare

REPO = pathlib.Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(REPO))  # the tool imports this checkout's action_tx
GRID, BLOCK = 4, 8  # a 32 x 32 frame of 4 x 4 blocks: 16 bits of the source frame index


def pattern(index: int) -> np.ndarray:
    """uint8 [32, 32, 3]: block b white when bit b of `index` is set."""
    bits = (index >> np.arange(GRID * GRID)) & 1
    blocks = bits.reshape(GRID, GRID).astype(np.uint8) * 255
    return np.repeat(np.repeat(blocks, BLOCK, 0), BLOCK, 1)[..., None].repeat(3, -1)


def decode_pattern(image) -> int:
    """The index `pattern` drew (any frame size: blocks are read by their mean)."""
    gray = np.asarray(image, np.float32).mean(-1)
    h, w = gray.shape
    means = gray[: h - h % GRID, : w - w % GRID].reshape(GRID, h // GRID, GRID, w // GRID)
    bits = means.mean((1, 3)).reshape(-1) > 127
    return int((bits.astype(np.int64) << np.arange(GRID * GRID)).sum())


def write_movie(path, seconds, fps=2):
    """A movie whose frame k (at k / fps s) shows pattern(k)."""
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = GRID * BLOCK
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "2"}
        for k in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(pattern(k), format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def write_csv(path, rows):
    path.write_text("".join(f"{v},{t},0.1,0.1,0.5,0.5,1,0\n" for v, t in rows))


@pytest.fixture(scope="module")
def movies(tmp_path_factory):
    """long (1830 s, over 30 min, 2 fps), short (950 s: ends before the last keyframe),
    garbage (not a video); `absent` has annotations but no file."""
    root = tmp_path_factory.mktemp("movies")
    write_movie(root / "long.mp4", 1830)
    write_movie(root / "short.mkv", 950)
    (root / "garbage.mp4").write_bytes(b"\x00not a video" * 100)
    csv = root / "ava_train_v2.2.csv"
    write_csv(csv, [(v, t) for v in ("absent", "garbage", "long", "short") for t in (902, 1798)])
    return root, csv


def test_keyframes_land_on_their_frames_and_failures_are_named(movies, tmp_path):
    root, csv = movies
    out = tmp_path / "ava"
    result = prepare.prepare(str(root), [str(csv)], str(out), short_side=0, progress=False)
    assert result.done == ["long"] and result.skipped == []
    assert result.failed == {
        "missing": ["absent"],
        "too short": ["short"],
        "undecodable": ["garbage"],
    }
    assert "ends at 949.50 s" in result.messages["short"]
    assert result.timestamp_offset == 900.0
    video = out / "videos" / "long.mp4"
    assert prepare.count_frames(str(video), "videos") == (27000, 32)  # 900-1800 s at 30 fps
    assert not list((out / "videos").glob(".partial-*"))
    # Frame i shows the source frame on screen at 900 + i / 30 s; the source shows frame
    # k = floor(2 t) at time t. Keyframe 902 s is frame 60, 1798 s frame 26940.
    expected = {59: 1803, 60: 1804, 61: 1804, 75: 1805, 26939: 3595, 26940: 3596, 26999: 3599}
    got = prepare.read_frames(str(video), "videos", sorted(expected))
    assert {i: decode_pattern(f) for i, f in got.items()} == expected
    # The converter reads the same frames at --timestamp_offset=900.
    windows, fps, _, _ = frame_source.read_windows(
        ("video", str(video)), [902, 1798], num_frames=3, fps=30, offset=900
    )
    assert fps == 30
    assert [[decode_pattern(Image.open(io.BytesIO(j))) for j in w] for w in windows] == [
        [1803, 1804, 1804],
        [3595, 3596, 3596],
    ]


def test_frames_format_resumes_after_a_kill(movies, tmp_path):
    """Kinetics mode (whole clip, clip-relative timestamps) as JPEG folders at 10 fps: a run
    killed while writing the second clip leaves only a hidden partial folder; the rerun skips
    the first clip and redoes the second."""
    root, _ = movies
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("a_000010_000130", "b"):
        write_movie(clips / f"{name}.mp4", 120)
    csv = tmp_path / "kinetics_train.csv"
    write_csv(csv, [("a", 60), ("b", 119)])
    out = tmp_path / "ava"
    args = [
        sys.executable,
        str(REPO / "tools" / "prepare_ava.py"),
        f"--movies_dir={clips}",
        f"--annotations_dir={tmp_path}",
        f"--out_dir={out}",
        "--splits=train",
        "--kinetics",
        "--format=frames",
        "--fps=10",
        "--short_side=16",
        "--num_workers=1",
        "--noprogress",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    partial = out / "frames" / ".partial-b"
    deadline = time.time() + 120
    while not (partial.is_dir() and len(os.listdir(partial)) > 50):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    a_frames = sorted((out / "frames" / "a").iterdir())
    assert len(a_frames) == 1200 and not (out / "frames" / "b").exists()
    stamp = a_frames[0].stat().st_mtime_ns

    run = subprocess.run(args, capture_output=True, text=True, timeout=300, env=ENV)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "prepared 1 movie(s), 1 already done, 0 failed" in run.stdout
    assert "--timestamp_offset=0" in run.stdout
    assert not partial.exists() and a_frames[0].stat().st_mtime_ns == stamp
    assert (out / "annotations" / "kinetics_train.csv").is_file()
    for vid, seconds in (("a", 60), ("b", 119)):
        assert prepare.count_frames(str(out / "frames" / vid), "frames") == (1200, 16)
        got = prepare.read_frames(str(out / "frames" / vid), "frames", [seconds * 10])
        assert decode_pattern(got[seconds * 10]) == seconds * 2


def test_cli_exits_2_and_names_the_failed_movies(movies, tmp_path):
    root, csv = movies
    (tmp_path / "ann").mkdir()
    write_csv(tmp_path / "ann" / "ava_val_v2.2.csv", [("absent", 902), ("garbage", 902)])
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "prepare_ava.py"),
            f"--movies_dir={root}",
            f"--annotations_dir={tmp_path / 'ann'}",
            f"--out_dir={tmp_path / 'out'}",
            "--noprogress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert run.returncode == 2
    assert "prepared 0 movie(s), 0 already done, 2 failed" in run.stdout
    assert "failed (missing): 1: absent" in run.stderr
    assert "failed (undecodable): 1: garbage" in run.stderr


def test_real_clips(shared_data, tmp_path):
    """The real clips as Kinetics clips: an H.264 mp4 at 6 fps and a GIF at 25 fps."""
    movies = tmp_path / "movies"
    movies.mkdir()
    os.symlink(shared_data / "real" / "demo_spatiotemporal_det.mp4", movies / "demo.mp4")
    os.symlink(shared_data / "real" / "v_CricketShot_g04_c01_rgb.gif", movies / "cricket.gif")
    csv = tmp_path / "clips.csv"
    write_csv(csv, [("demo", 5), ("cricket", 2)])
    result = prepare.prepare(
        str(movies),
        [str(csv)],
        str(tmp_path / "ava"),
        kind="frames",
        short_side=128,
        kinetics=True,
        progress=False,
    )
    assert result.done == ["cricket", "demo"] and not result.failed
    for vid, t, size in (("demo", 5, (128, 170)), ("cricket", 2, (128, 128))):
        folder = tmp_path / "ava" / "frames" / vid
        with av.open(str(next(movies.glob(vid + ".*")))) as c:
            stream = c.streams.video[0]
            seconds = stream.duration * stream.time_base
            source = [(f.pts * stream.time_base, f.to_image()) for f in c.decode(stream)]
        assert prepare.count_frames(str(folder), "frames") == (int(seconds * 30), 128)
        # The keyframe's frame is the source frame on screen at t (the last one shown by t).
        shown = [image for when, image in source if when <= t][-1]
        got = prepare.read_frames(str(folder), "frames", [t * 30])[t * 30].astype(np.float32)
        assert got.shape[:2] == size
        want = np.asarray(shown.convert("RGB").resize(size[::-1], Image.BILINEAR), np.float32)
        others = [
            np.asarray(im.convert("RGB").resize(size[::-1], Image.BILINEAR), np.float32)
            for when, im in source
            if abs(float(when) - t) > 0.3
        ]
        error = np.abs(got - want).mean()
        assert error < 4 and error < min(np.abs(got - o).mean() for o in others)
