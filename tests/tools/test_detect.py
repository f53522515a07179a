"""tools/detect.py: bad input exits 2 with one line before TensorFlow runs; a small mp4 and the
two real files run end to end, and the CSV/JSON hold the SavedModel's own detections."""

import json
import pathlib
import subprocess
import sys

import av
import numpy as np
import pytest

from action_tx import video_io
from action_tx.data import ava

REPO = pathlib.Path(__file__).resolve().parents[2]
DETECT = str(REPO / "tools" / "detect.py")
IDS, NAMES = [1, 12, 74], ["bend/bow", "stand", "listen"]


def write_video(path, num_frames=30, size=(48, 64), fps=10, faststart=True, seed=0):
    """Noise frames (large packets, so cutting bytes cuts frames) with H.264 in mp4."""
    rng = np.random.default_rng(seed)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as c:
        stream = c.add_stream("libx264", rate=fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        for _ in range(num_frames):
            frame = rng.integers(0, 256, size + (3,), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    return path


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
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
    out = str(tmp_path_factory.mktemp("detect") / "export")
    import tensorflow as tf

    detector({"clip": tf.zeros([1, 8, 64, 64, 3])}, training=False)
    export_saved_model(
        detector,
        out,
        num_frames=8,
        image_size=64,
        class_ids=IDS,
        class_names=NAMES,
        frame_stride=2,
        fps=10.0,
    )
    return out


def detect(*args, timeout=300):
    return subprocess.run(
        [sys.executable, DETECT, *args], capture_output=True, text=True, timeout=timeout
    )


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("detect.py: error:")]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_bad_inputs_exit_2_with_one_line(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"")  # never loaded: the video checks come first
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    good = write_video(tmp_path / "good.mp4")
    data = good.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    cases = [
        ([f"--video={tmp_path / 'missing.mp4'}"], ["missing.mp4", "no such file"]),
        ([f"--video={text}"], ["notes.mp4", "not a readable video"]),
        ([f"--video={empty}"], ["empty.mp4", "empty file"]),
        ([f"--video={cut}"], ["cut.mp4", "damaged video: decoded", "of the 30 frames"]),
        ([f"--video={good}", "--max_resolution=63"], ["64x48 exceeds --max_resolution=63"]),
        ([f"--video={good}", "--max_duration_s=2.5"], ["3.0 s exceeds --max_duration_s=2.5"]),
    ]
    for args, fragments in cases:
        assert_one_line_error(detect(f"--saved_model={model}", *args), *fragments)
    assert_one_line_error(
        detect(f"--saved_model={tmp_path}", f"--video={good}"), "not a SavedModel directory"
    )
    assert_one_line_error(
        detect(
            f"--saved_model={model}",
            f"--video={good}",
            f"--output_csv={tmp_path / 'nodir' / 'a.csv'}",
        ),
        "no such directory",
    )


def test_detect_small_mp4_outputs_are_the_models_detections(tmp_path, saved_model):
    video = write_video(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    proc = detect(
        f"--saved_model={saved_model}",
        f"--video={video}",
        f"--output_csv={out}.csv",
        f"--output_json={out}.json",
        f"--output_video={out}.mp4",
        "--score_threshold=0",
        "--action_threshold=0",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "keyframes [" in proc.stderr and "3/3" in proc.stderr  # the progress bar
    result = json.loads(pathlib.Path(f"{out}.json").read_text())
    assert [k["timestamp"] for k in result["keyframes"]] == [0, 1, 2]
    assert [k["frame"] for k in result["keyframes"]] == [0, 10, 20]
    assert result["model"]["num_frames"] == 8 and result["video_id"] == "clip"

    # Keyframe t=1 by hand: frame 10, model stride 2 at 10 fps = 2 frames of this 10 fps
    # video: frames 2, 4, ..., 16.
    import tensorflow as tf

    frames = list(video_io.iter_frames(str(video)))
    fn = tf.saved_model.load(saved_model).signatures["serving_default"]
    want = fn(clip=tf.constant(np.stack(frames[2:17:2])))
    n = int(want["num_detections"])
    dets = result["keyframes"][1]["detections"]
    assert len(dets) == n
    boxes = want["detection_boxes"].numpy()[:n][:, [1, 0, 3, 2]]
    np.testing.assert_allclose([d["box_x1y1x2y2"] for d in dets], boxes, atol=1e-4)
    np.testing.assert_allclose(
        [d["person_score"] for d in dets], want["detection_scores"].numpy()[:n], atol=1e-4
    )
    first = dets[0]["actions"]
    scores = want["action_scores"].numpy()[0]
    assert [a["id"] for a in first] == [IDS[i] for i in np.argsort(-scores, kind="stable")]
    assert {a["name"] for a in first} == set(NAMES)

    rows, _ = ava.read_annotations(f"{out}.csv", kind="detections")
    assert len(rows) == sum(len(d["actions"]) for k in result["keyframes"] for d in k["detections"])
    at1 = rows.timestamp == 1
    assert set(rows.video_id.tolist()) == {"clip"}
    np.testing.assert_allclose(
        np.sort(rows.score[at1]), np.sort(want["action_scores"].numpy()[:n].ravel()), atol=1e-4
    )

    info = video_io.probe(f"{out}.mp4")
    assert (info.width, info.height, info.fps) == (64, 48, 10.0)
    assert video_io.count_frames(f"{out}.mp4") == (30, "")


def test_detect_real_files(tmp_path, saved_model, shared_data):
    real = shared_data / "real"
    # mp4: 57 frames at 6 fps; 2 keyframes (t = 0, 1): the video ends before t = 2 (frame 12).
    proc = detect(
        f"--saved_model={saved_model}",
        f"--video={real / 'demo_spatiotemporal_det.mp4'}",
        f"--output_csv={tmp_path / 'a.csv'}",
        f"--output_json={tmp_path / 'a.json'}",
        f"--output_video={tmp_path / 'a.mp4'}",
        "--max_keyframes=2",
        "--score_threshold=0",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "a.json").read_text())
    assert [k["timestamp"] for k in result["keyframes"]] == [0, 1]
    assert (result["width"], result["height"], result["fps"]) == (340, 256, 6.0)
    assert video_io.count_frames(str(tmp_path / "a.mp4"))[0] == 12
    rows, _ = ava.read_annotations(str(tmp_path / "a.csv"), kind="detections")
    assert sorted(set(rows.timestamp.tolist())) == [0, 1]
    # gif: 79 frames at 25 fps; stride 2 s -> keyframes 0 and 2; every frame annotated.
    proc = detect(
        f"--saved_model={saved_model}",
        f"--video={real / 'v_CricketShot_g04_c01_rgb.gif'}",
        f"--output_json={tmp_path / 'b.json'}",
        f"--output_video={tmp_path / 'b.mp4'}",
        "--stride_s=2",
        "--score_threshold=0",
        "--show_attention",
        "--noprogress",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "b.json").read_text())
    assert [(k["timestamp"], k["frame"]) for k in result["keyframes"]] == [(0, 0), (2, 50)]
    assert all(k["detections"] for k in result["keyframes"])
    assert video_io.count_frames(str(tmp_path / "b.mp4")) == (79, "")
