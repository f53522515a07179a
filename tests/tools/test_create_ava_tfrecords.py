import json
import os
import pathlib
import subprocess
import sys

import av
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from action_tx.data import ava, convert, tfrecords

REPO = pathlib.Path(__file__).resolve().parents[2]
FPS = 10
GT_ROWS = """vidA,0000,0.1,0.2,0.5,0.6,1,0
vidA,0000,0.1,0.2,0.5,0.6,3,0
vidA,0000,0.5,0.5,0.9,0.9,2,1
vidA,0001,0.1,0.2,0.5,0.6,5,0
vidA,0002,0.2,0.2,0.4,0.4,1,0
vidB,0000,0.0,0.0,1.0,1.0,2,3
vidB,0002,0.0,0.0,1.0,1.0,2,3
"""


def gray(k: int) -> int:
    """Gray level of frame k (0-based) in every fixture video."""
    return 10 + 8 * k


def write_mp4(path, num_frames, faststart=True):
    """A real mpeg4 video at FPS whose frame k is uniformly gray(k); moov atom first."""
    c = av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {})
    s = c.add_stream("mpeg4", rate=FPS)
    s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
    rng = np.random.default_rng(0)
    for k in range(num_frames):
        img = np.full((32, 32, 3), gray(k), np.int16) + rng.integers(-1, 2, (32, 32, 3))
        for p in s.encode(av.VideoFrame.from_ndarray(img.clip(0, 255).astype(np.uint8), "rgb24")):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
    c.close()


@pytest.fixture
def root(tmp_path):
    """Tiny AVA root: vidA as a 25-frame JPEG folder, vidB as a 21-frame mp4, both at 10 fps."""
    r = tmp_path / "ava"
    (r / "annotations").mkdir(parents=True)
    (r / "frames" / "vidA").mkdir(parents=True)
    (r / "videos").mkdir()
    for k in range(25):
        Image.fromarray(np.full((24, 32, 3), gray(k), np.uint8)).save(
            r / "frames" / "vidA" / f"vidA_{k + 1:06d}.jpg", quality=95
        )
    write_mp4(r / "videos" / "vidB.mp4", 21)
    a = r / "annotations"
    (a / "ava_train.csv").write_text(GT_ROWS)
    (a / "action_list.pbtxt").write_text(
        "".join(f'item {{\n  name: "a{i}"\n  id: {i}\n}}\n' for i in (1, 2, 3))
    )
    (a / "ava_train_excluded_timestamps.csv").write_text("vidB,0000\n")
    (a / "person_detections_train.csv").write_text(
        "vidA,0000,0.1,0.2,0.5,0.6,,0.9\nvidA,0000,0.0,0.0,0.2,0.2,,0.3\nvidB,0002,0,0,1,1,,0.8\n"
    )
    (a / "object_detections_train.csv").write_text("vidA,0000,0.6,0.6,0.8,0.7,4,0.75\n")
    return r


def _run(root, out_dir, **kw):
    args = dict(num_frames=4, fps=FPS, num_workers=1, progress=False)
    args.update(kw)
    return convert.convert_split(str(root), "train", str(out_dir / "train.tfrecord@2"), **args)


def _records(manifest):
    out = []
    for shard in manifest["shards"]:
        for r in tf.data.TFRecordDataset(shard["path"]):
            out.append(tfrecords.parse_example(r))
    return out


def _grays(frames):
    return [float(tf.io.decode_jpeg(f).numpy().mean()) for f in frames]


def test_records_hold_the_right_values(root, tmp_path):
    manifest = _run(root, tmp_path / "out")
    recs = _records(manifest)
    keys = [(r["video_id"].numpy().decode(), int(r["timestamp"])) for r in recs]
    assert keys == [("vidA", 0), ("vidA", 2), ("vidB", 2)]
    assert [int(r["keyframe_index"]) for r in recs] == [0, 1, 2]
    assert [int(r["video_index"]) for r in recs] == [0, 0, 1]
    a0, a2, b2 = recs
    np.testing.assert_allclose(a0["boxes"], [[0.2, 0.1, 0.6, 0.5], [0.5, 0.5, 0.9, 0.9]])
    np.testing.assert_array_equal(a0["labels"], [[1, 0, 1], [0, 1, 0]])  # ids 1,3 / 2
    np.testing.assert_array_equal(a0["person_ids"], [0, 1])
    np.testing.assert_allclose(a0["proposals"], [[0.2, 0.1, 0.6, 0.5], [0, 0, 0.2, 0.2]])
    np.testing.assert_allclose(a0["proposal_scores"], [0.9, 0.3])
    np.testing.assert_allclose(a0["objects"], [[0.6, 0.6, 0.7, 0.8]])
    np.testing.assert_array_equal(a0["object_classes"], [4])
    assert a2["proposals"].shape == (0, 4) and a2["objects"].shape == (0, 4)
    assert int(a0["keyframe_frame"]) == 2 and float(a0["fps"]) == FPS
    assert (int(a0["height"]), int(a0["width"])) == (24, 32)
    assert (int(b2["height"]), int(b2["width"])) == (32, 32)
    # W=4 window, keyframe at position 2: t=0 -> frames [0,0,0,1] (start repeated);
    # t=2 in the 25-frame folder -> [18..21]; in the 21-frame video -> [18,19,20,20] (end).
    for rec, frames in ((a0, [0, 0, 0, 1]), (a2, [18, 19, 20, 21]), (b2, [18, 19, 20, 20])):
        np.testing.assert_allclose(_grays(rec["frames"]), [gray(k) for k in frames], atol=3)


def test_manifest_counts_rows_and_inputs(root, tmp_path):
    manifest = _run(root, tmp_path / "out")
    on_disk = json.loads(pathlib.Path(manifest["manifest_path"]).read_text())
    assert on_disk["keyframes"] == {"total": 3, "written": 3, "rejected": {}}
    ann = on_disk["rows"]["annotations"]
    assert ann["kept"] == 5
    assert ann["rejected"] == {"action id not in label map": 1, "excluded timestamp": 1}
    assert on_disk["rows"]["person_detections"]["kept"] == 3
    assert set(on_disk["inputs"]) == {
        "annotations",
        "label_map",
        "excluded",
        "person_detections",
        "object_detections",
    }
    assert len(on_disk["inputs"]["annotations"]["sha256"]) == 64
    assert [s["records"] for s in on_disk["shards"]] == [2, 1]
    assert on_disk["shards"][0]["path"].endswith("train.tfrecord-00000-of-00002")
    assert on_disk["label_map"] == {"num_classes": 3, "ids": [1, 2, 3]}


def test_shards_byte_identical_across_runs_and_workers(root, tmp_path):
    m1 = _run(root, tmp_path / "one")
    m2 = _run(root, tmp_path / "two", num_workers=2)
    for s1, s2 in zip(m1["shards"], m2["shards"]):
        assert pathlib.Path(s1["path"]).read_bytes() == pathlib.Path(s2["path"]).read_bytes()


def test_missing_frame_folder(root, tmp_path):
    with open(root / "annotations" / "ava_train.csv", "a") as f:
        f.write("vidC,0001,0.1,0.1,0.2,0.2,1,0\n")
    with pytest.raises(convert.ConversionError, match=r"frames/vidC/ and no video .*videos/vidC"):
        _run(root, tmp_path / "out")
    assert not list((tmp_path / "out").glob("train*"))  # nothing half-written is left
    m = _run(root, tmp_path / "out", skip_bad=True)
    assert m["files_rejected"] == {"missing frame folder or video": ["vidC"]}
    assert m["keyframes"]["rejected"] == {"missing frame folder or video": 1}
    assert m["keyframes"]["written"] == 3


def test_truncated_video_decoding_short_is_bad(root, tmp_path):
    path = root / "videos" / "vidB.mp4"
    with av.open(str(path)) as c:  # cut where packet 15 starts: the file ends cleanly early
        cut = [p.pos for p in c.demux(video=0) if p.size][15]
    path.write_bytes(path.read_bytes()[:cut])
    with av.open(str(path)) as c:  # the premise: no error, the header says 21, 15 decode
        assert c.streams.video[0].frames == 21 and sum(1 for _ in c.decode(video=0)) == 15
    with pytest.raises(
        convert.ConversionError,
        match=r"vidB.mp4: decoded \d+ frames but the "
        r"timestamps need frame 21 of 21",
    ):
        _run(root, tmp_path / "out")
    m = _run(root, tmp_path / "out", skip_bad=True)
    assert m["files_rejected"] == {"truncated video": ["vidB"]}
    assert m["keyframes"] == {"total": 3, "written": 2, "rejected": {"truncated video": 1}}


def test_unreadable_video(root, tmp_path):
    path = root / "videos" / "vidB.mp4"
    write_mp4(path, 21, faststart=False)
    path.write_bytes(path.read_bytes()[:300])  # moov at the end is cut: cannot open
    with pytest.raises(convert.ConversionError, match="vidB.mp4: cannot open video"):
        _run(root, tmp_path / "out")
    m = _run(root, tmp_path / "out", skip_bad=True)
    assert m["files_rejected"] == {"unreadable video": ["vidB"]}


def test_bad_rows(root, tmp_path):
    with open(root / "annotations" / "ava_train.csv", "a") as f:
        f.write("vidA,0002,0.1,0.2,1.7,0.6,1,0\nvidA,xx,0.1,0.2,0.5,0.6,1,0\n")
    with pytest.raises(ava.AvaFormatError, match=r"ava_train.csv:8: .*\n.*ava_train.csv:9: "):
        _run(root, tmp_path / "out")
    m = _run(root, tmp_path / "out", skip_bad=True)
    assert sum(m["rows"]["annotations"]["rejected"].values()) == 4  # 2 bad + 2 filtered
    assert m["keyframes"]["written"] == 3


def test_cli_error_is_one_line(root, tmp_path):
    (root / "annotations" / "ava_train.csv").write_text("vidA,0000,0.1,0.2\n")
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "create_ava_tfrecords.py"),
            f"--ava_dir={root}",
            "--split=train",
            f"--out={tmp_path / 'o' / 'train.tfrecord'}",
            "--fps=10",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 2  # bad input: 2, as every tool
    assert "Traceback" not in proc.stderr
    assert "error: " in proc.stderr and "ava_train.csv:1:" in proc.stderr


def test_missing_frame_inside_folder(root, tmp_path):
    (root / "frames" / "vidA" / "vidA_000020.jpg").unlink()  # needed by t=2's window
    with pytest.raises(convert.ConversionError, match=r"frames/vidA: frame 20 is missing"):
        _run(root, tmp_path / "out")
    m = _run(root, tmp_path / "out", skip_bad=True)
    # Only the keyframe whose window holds frame 20 is lost, not the whole video.
    assert m["files_rejected"] == {}
    assert m["frames_rejected"] == {"missing frame": ["frames/vidA frame 20"]}
    assert m["keyframes"] == {"total": 3, "written": 2, "rejected": {"missing frame": 1}}
    keys = [(r["video_id"].numpy().decode(), int(r["timestamp"])) for r in _records(m)]
    assert keys == [("vidA", 0), ("vidB", 2)]


def test_shard_paths_and_fps_source(tmp_path):
    assert convert.shard_paths("d/t.rec@2") == ["d/t.rec-00000-of-00002", "d/t.rec-00001-of-00002"]
    assert convert.shard_paths("d/t-%05d-of-%05d.rec", 2)[1] == "d/t-00001-of-00002.rec"
    assert convert.shard_paths("d/t.rec") == ["d/t.rec"]
    with pytest.raises(convert.ConversionError, match="two %d"):
        convert.shard_paths("d/t-%05d.rec", 2)
    assert convert.frame_folder_fps(str(tmp_path)) == (30.0, "default (AVA)")
    (tmp_path / "README.txt").write_text("parameters: fps=10, height=64\n")
    assert convert.frame_folder_fps(str(tmp_path))[0] == 10.0
    assert convert.frame_folder_fps(str(tmp_path), 25) == (25.0, "argument")


def test_real_video_windows(shared_data):
    from action_tx.data import frame_source

    source = ("video", str(shared_data / "real" / "demo_spatiotemporal_det.mp4"))  # 57 fr, 6 fps
    windows, fps, h, w = frame_source.read_windows(
        source, [1, 9], num_frames=8, fps=30.0, max_side=128
    )
    assert fps == 6.0 and (h, w) == (96, 128)  # 340x256 scaled to a 128 longer side
    # t=9 -> frame 54: window 50..57 clipped to the last frame 56, which repeats.
    assert windows[1][6] == windows[1][7] and windows[1][5] != windows[1][6]
    assert len(set(windows[0])) == 8  # t=1 -> frames 2..9, all distinct
