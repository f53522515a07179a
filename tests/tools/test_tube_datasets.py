"""UCF101-24 / JHMDB end to end without the data sets: annotation files in the real formats ->
tools/convert_*.py -> TFRecords -> a tiny model trained a few steps -> frame- and video-mAP."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import scipy.io
from PIL import Image

from train_helpers import ENV, REPO, TINY, run

VIDEOS = {"Run/v_Run_g01_c01": 0, "Run/v_Run_g02_c01": 0, "Jump/v_Jump_g01_c01": 1}
NFRAMES = 12


def _tube_box(k, t):
    """Pixel x1,y1,x2,y2 of video k's actor at frame t (1-based) in a 64x48 frame."""
    x = 8 + 2 * k + t
    return x, 10, x + 20, 40


def _render(folder, k):
    folder.mkdir(parents=True)
    for t in range(1, NFRAMES + 1):
        img = np.full((48, 64, 3), 30, np.uint8)
        x1, y1, x2, y2 = _tube_box(k, t)
        img[y1:y2, x1:x2] = (220, 60 + 100 * (k % 2), 40)
        Image.fromarray(img).save(folder / f"{t:05d}.jpg", quality=95)


def _tool(name, *args):
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", name), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_ucf24_convert_train_eval_video_map(tmp_path):
    from action_tx.data import convert

    gttubes, nframes, resolution = {}, {}, {}
    for k, (video, label) in enumerate(VIDEOS.items()):
        _render(tmp_path / "rgb-images" / video, k)
        gttubes[video] = {
            label: [np.array([(t, *_tube_box(k, t)) for t in range(2, 11)], np.float32)]
        }
        nframes[video], resolution[video] = NFRAMES, (48, 64)
    with open(tmp_path / "UCF101v2-GT.pkl", "wb") as f:
        pickle.dump(
            {
                "labels": ["Run", "Jump"],
                "gttubes": gttubes,
                "nframes": nframes,
                "train_videos": [list(VIDEOS)],
                "test_videos": [list(VIDEOS)[1:]],
                "resolution": resolution,
            },
            f,
            protocol=2,
        )
    out = tmp_path / "ucf24"
    proc = _tool(
        "convert_ucf101_24.py",
        f"--annotations={tmp_path / 'UCF101v2-GT.pkl'}",
        f"--frames_dir={tmp_path / 'rgb-images'}",
        f"--out={out}",
        "--keyframe_stride=2",
    )
    assert "train: 3 videos, 18 keyframes" in proc.stdout
    for split in ("train", "test"):
        convert.convert_split(
            str(out),
            split,
            str(tmp_path / "tf" / f"{split}@1"),
            num_frames=8,
            progress=False,
            num_workers=1,
        )
    ann = out / "annotations"
    label_map = ann / "ucf101_24_action_list.pbtxt"
    proc = run(
        *TINY,
        f"--model_dir={tmp_path / 'model'}",
        "--train_steps=3",
        f"--train_tfrecords={tmp_path / 'tf' / 'train-*'}",
        f"--label_map={label_map}",
        "--single_label_softmax",
        "--proposals=gt",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    flags = json.loads((tmp_path / "model" / "model_flags.json").read_text())
    assert flags["single_label_softmax"] is True
    proc = _tool(
        "eval.py",
        f"--checkpoint_path={tmp_path / 'model' / 'ckpt-3'}",
        f"--eval_tfrecords={tmp_path / 'tf' / 'test-*'}",
        f"--groundtruth={ann / 'ava_test.csv'}",
        f"--label_map={label_map}",
        f"--output_dir={tmp_path / 'eval'}",
        "--noprogress",
        "--num_images=0",
        "--eval_batch_size=6",
        "--video_map",
    )
    rows = (tmp_path / "eval" / "ckpt-3_detections.csv").read_text().splitlines()
    # Single-label softmax: the class scores of each detected box sum to 1.
    by_box = {}
    for r in rows:
        v, t, *box, _, score = r.split(",")
        by_box.setdefault((v, t, *box), []).append(float(score))
    assert by_box and all(abs(sum(s) - 1) < 2e-3 for s in by_box.values() if len(s) == 2)
    report = json.loads((tmp_path / "eval" / "ckpt-3_video_results.json").read_text())
    assert set(report["video_mAP"]) == {"0.2", "0.5", "0.75"}
    # Ground-truth boxes as proposals: every linked tube lies on a ground-truth tube, so at
    # ST-IoU 0.2 each class with ground truth reaches AP > 0.
    assert report["video_mAP"]["0.2"] > 0 and "video-mAP @0.2=" in proc.stdout
    assert report["counts"]["groundtruth_tubes"] == 2


def test_jhmdb_tool_and_bad_input(tmp_path):
    root = tmp_path / "JHMDB"
    (root / "splits").mkdir(parents=True)
    (root / "splits" / "wave_test_split3.txt").write_text("w1.avi 1\nw2.avi 2\n")
    for name in ("w1", "w2"):
        mask = np.zeros((48, 64, 5), bool)
        mask[8:30, 10:20, :] = True
        (root / "puppet_mask" / "wave" / name).mkdir(parents=True)
        scipy.io.savemat(
            root / "puppet_mask" / "wave" / name / "puppet_mask.mat",
            {"part_mask": mask.astype(np.uint8)},
        )
        (root / "Rename_Images" / "wave" / name).mkdir(parents=True)
        for t in range(1, 6 if name == "w1" else 4):  # w2: 3 images for 5 mask frames
            Image.new("RGB", (64, 48)).save(root / "Rename_Images" / "wave" / name / f"{t:05d}.png")
    bad = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools", "convert_jhmdb.py"),
            f"--jhmdb_dir={root}",
            "--split=3",
            f"--out={tmp_path / 'o'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
        cwd=REPO,
    )
    assert bad.returncode == 2 and "w2: 3 frames, the annotation says 5" in bad.stderr
    for t in (4, 5):
        Image.new("RGB", (64, 48)).save(root / "Rename_Images" / "wave" / "w2" / f"{t:05d}.png")
    proc = _tool("convert_jhmdb.py", f"--jhmdb_dir={root}", "--split=3", f"--out={tmp_path / 'o'}")
    assert "train: 1 videos, 5 keyframes; test: 1 videos, 5 keyframes" in proc.stdout
    first = (tmp_path / "o" / "annotations" / "ava_test.csv").read_text().splitlines()[0]
    assert first == "w2,0000,0.156,0.167,0.312,0.625,1,0"


def test_real_ucf101_clip(shared_data, tmp_path):
    """The real UCF101 clip (a GIF, 79 frames, 224x224) with a hand-made tube on the umpire
    (red shirt, about x 100-140, y 95-190 over the whole clip)."""
    clip = shared_data / "real" / "v_CricketShot_g04_c01_rgb.gif"
    (tmp_path / "videos" / "CricketShot").mkdir(parents=True)
    os.symlink(clip, tmp_path / "videos" / "CricketShot" / "v_CricketShot_g04_c01.gif")
    video = "CricketShot/v_CricketShot_g04_c01"
    tube = np.array([(t, 100, 95, 140, 190) for t in range(1, 80)], np.float32)
    with open(tmp_path / "gt.pkl", "wb") as f:
        pickle.dump(
            {
                "labels": ["CricketShot"],
                "gttubes": {video: {0: [tube]}},
                "nframes": {video: 79},
                "train_videos": [[video]],
                "test_videos": [[]],
                "resolution": {video: (224, 224)},
            },
            f,
            protocol=2,
        )
    out = tmp_path / "out"
    proc = _tool(
        "convert_ucf101_24.py",
        f"--annotations={tmp_path / 'gt.pkl'}",
        f"--videos_dir={tmp_path / 'videos'}",
        f"--out={out}",
        "--keyframe_stride=10",
    )
    assert "train: 1 videos, 8 keyframes" in proc.stdout
    frames = sorted(os.listdir(out / "frames" / "v_CricketShot_g04_c01"))
    assert len(frames) == 79 and frames[0] == "00001.jpg"
    rows = (out / "annotations" / "ava_train.csv").read_text().splitlines()
    assert rows[4] == "v_CricketShot_g04_c01,0040,0.446,0.424,0.625,0.848,1,0"
    # Frame 41 (timestamp 40): the box holds the umpire's red shirt.
    img = np.asarray(Image.open(out / "frames" / "v_CricketShot_g04_c01" / "00041.jpg"), np.float32)
    shirt = img[110:140, 108:132].mean(axis=(0, 1))
    assert shirt[0] > 120 and shirt[0] > 2 * shirt[1]
