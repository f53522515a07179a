"""tools/extract_features.py end to end on tiny synthetic data with a random-weight detector
checkpoint: stored values, resume, clear errors; then feature-mode train.py and eval.py."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from train_helpers import ENV, REPO, TINY_DETECTOR, assert_clean_error, make_tiny_data

TOOL = os.path.join(REPO, "tools", "extract_features.py")
MODEL_FLAGS = TINY_DETECTOR


def run(script, *args):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=ENV,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny data, a random-weight detector checkpoint, and one extraction (3 shards)."""
    from action_tx.checkpointing import checkpointable
    from action_tx.data import ava
    from action_tx.data.pipeline import build_dataset
    from action_tx.model_builder import build_detector

    root = tmp_path_factory.mktemp("extract")
    data = make_tiny_data(root)
    label_map = ava.read_label_map(data["label_map"])
    detector = build_detector(
        num_classes=label_map.num_classes,
        trunk="i3d_tiny",
        head="linear",
        anchor_sizes=[16, 32, 48],
        rpn_filters=32,
        post_nms_top_k=20,
    )
    dataset = build_dataset(
        data["train"],
        batch_size=1,
        num_classes=label_map.num_classes,
        num_frames=8,
        frame_stride=2,
        image_size=64,
        max_boxes=4,
        max_proposals=4,
        max_objects=2,
    )
    first = next(iter(dataset))
    detector(first, training=False)
    model_dir = root / "det"
    tf.train.CheckpointManager(
        tf.train.Checkpoint(model=checkpointable(detector)), str(model_dir), 1
    ).save(checkpoint_number=1)
    (model_dir / "model_flags.json").write_text(
        json.dumps(dict(MODEL_FLAGS, label_map=data["label_map"]))
    )
    out = root / "features"
    args = [
        f"--checkpoint_dir={model_dir}",
        "--split=train",
        f"--tfrecords={data['train']}",
        f"--out={out}",
        "--shard_size=4",
        "--noprogress",
    ]
    proc = run("extract_features.py", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(data=data, detector=detector, first=first, out=out, args=args, root=root)


def _keyframes_per_video(pattern):
    """video_id -> number of keyframe records in the shards of `pattern`, in file order."""
    from action_tx.data import tfrecords

    counts = {}
    for path in tfrecords.match_files(pattern):
        for record in tf.data.TFRecordDataset(path):
            example = tf.train.SequenceExample.FromString(record.numpy())
            video = example.context.feature[tfrecords.VIDEO_ID].bytes_list.value[0].decode()
            counts[video] = counts.get(video, 0) + 1
    return counts


def test_stored_values(setup):
    from action_tx.data import features

    manifest = json.loads((setup["out"] / "manifest.json").read_text())
    stored = features.read_feature_dir(str(setup["out"]))
    kfs = stored["keyframes"]
    # Shards of whole videos (--shard_size=4: the 5 keyframes of syn0000, the 4 of syn0001).
    # Shards of whole videos (--shard_size=4 is smaller than a video): one video a shard.
    per_video = _keyframes_per_video(setup["data"]["train"])
    videos = sorted(per_video)
    starts = np.cumsum([0] + [per_video[v] for v in videos])[:-1].tolist()
    assert [(s["start"], s["records"], s["videos"]) for s in manifest["shards"]] == [
        (start, per_video[v], 1) for start, v in zip(starts, videos)
    ]
    assert [k["video_id"] for k in kfs] == [v for v in videos for _ in range(per_video[v])]
    assert all(s["done"] for s in manifest["shards"])
    assert manifest["keyframes"] == sum(per_video.values())
    assert [(k["video_id"], k["timestamp"]) for k in kfs] == sorted(
        (k["video_id"], k["timestamp"]) for k in kfs
    )
    # Keyframe 0 recomputed in process: gt boxes / labels, pooled gt feature, scene, context.
    det, first, kf = setup["detector"], setup["first"], kfs[0]
    assert kf["video_id"] == first["video_id"][0].numpy().decode()
    n = int(tf.reduce_sum(tf.cast(first["box_mask"][0], tf.int32)))
    np.testing.assert_allclose(kf["gt"]["boxes"], first["boxes"][0, :n], atol=1e-6)
    np.testing.assert_array_equal(kf["gt"]["labels"], first["labels"][0, :n])
    trunk = det.trunk(first["clip"], training=False)
    pooled = tf.reduce_mean(
        det.roi_extractor(trunk, first["boxes"], first["box_mask"]), axis=[2, 3, 4]
    )[0, :n]
    np.testing.assert_allclose(kf["gt"]["features"], pooled, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(
        kf["scene"], tf.reduce_mean(trunk, axis=[1, 2, 3])[0], rtol=1e-3, atol=1e-4
    )
    assert kf["context"].shape == (7, 7, stored["feature_dim"])
    # Detection labels: the gt box of best IoU >= 0.5, else none (checked in numpy).
    for k in kfs:
        g, d = k["gt"], k["det"]
        assert len(d["boxes"]) > 0 and np.all(np.diff(d["scores"]) <= 0)
        if not len(g["boxes"]):
            assert not d["labels"].any()
            continue
        y1 = np.maximum(d["boxes"][:, None, 0], g["boxes"][None, :, 0])
        x1 = np.maximum(d["boxes"][:, None, 1], g["boxes"][None, :, 1])
        y2 = np.minimum(d["boxes"][:, None, 2], g["boxes"][None, :, 2])
        x2 = np.minimum(d["boxes"][:, None, 3], g["boxes"][None, :, 3])
        inter = np.clip(y2 - y1, 0, None) * np.clip(x2 - x1, 0, None)
        area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
        iou = inter / (area(d["boxes"])[:, None] + area(g["boxes"])[None] - inter)
        want = np.where(iou.max(1)[:, None] >= 0.5, g["labels"][iou.argmax(1)], 0)
        np.testing.assert_array_equal(d["labels"], want)
    assert kfs[0]["obj"]["features"].shape[1] == stored["feature_dim"]


def test_resume_skips_finished_shards(setup):
    from action_tx.data import features

    out = setup["out"]
    paths = [out / s["path"] for s in json.loads((out / "manifest.json").read_text())["shards"]]
    before = features.read_feature_dir(str(out))["keyframes"]
    times = [p.stat().st_mtime_ns for p in paths]
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["shards"][1]["done"] = False  # as if interrupted in shard 1
    (out / "manifest.json").write_text(json.dumps(manifest))
    paths[1].unlink()
    proc = run("extract_features.py", *setup["args"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert paths[0].stat().st_mtime_ns == times[0]
    after = features.read_feature_dir(str(out))["keyframes"]  # the same values again
    for a, b in zip(after, before):
        assert (a["video_id"], a["timestamp"]) == (b["video_id"], b["timestamp"])
        np.testing.assert_allclose(a["det"]["features"], b["det"]["features"], atol=1e-5)
        np.testing.assert_allclose(a["context"], b["context"], atol=1e-3)
    assert all(s["done"] for s in json.loads((out / "manifest.json").read_text())["shards"])


def read_all(out):
    from action_tx.data import features

    return features.read_feature_dir(str(out))["keyframes"]


def assert_same_features(got, want):
    assert [(k["video_id"], k["timestamp"]) for k in got] == [
        (k["video_id"], k["timestamp"]) for k in want
    ]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a["det"]["features"], b["det"]["features"], atol=1e-5)
        np.testing.assert_allclose(a["gt"]["features"], b["gt"]["features"], atol=1e-5)


def test_parallel_workers_and_a_kill_halfway(setup, tmp_path):
    """Two workers over disjoint shards of one folder; worker 1, killed while writing its
    shard, leaves only that shard's .tmp, unmarked; worker 0 finishes its own; worker 1's
    re-run completes the folder: the one-process features."""
    import signal
    import time

    want = read_all(setup["out"])
    out = tmp_path / "par"
    base = [a for a in setup["args"] if not a.startswith("--out=")] + [
        f"--out={out}",
        "--num_workers=2",
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, TOOL, *base, f"--worker_index={i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=ENV,
            cwd=REPO,
        )
        for i in (0, 1)
    ]
    second = out / "features-00001-of-00002.tfrecord"
    deadline = time.time() + 300
    while not pathlib.Path(str(second) + ".tmp").exists():
        assert procs[1].poll() is None and time.time() < deadline, procs[1].stderr.read()[-3000:]
        time.sleep(0.01)
    procs[1].send_signal(signal.SIGKILL)
    procs[1].wait()
    _, err = procs[0].communicate(timeout=600)
    assert procs[0].returncode == 0, err[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["done"] for s in manifest["shards"]] == [True, False] and not second.exists()
    first = out / "features-00000-of-00002.tfrecord"
    stamp = first.stat().st_mtime_ns
    rerun = run("extract_features.py", *base, "--worker_index=1")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert first.stat().st_mtime_ns == stamp and second.exists()
    assert not list(out.glob("*.tmp"))
    assert_same_features(read_all(out), want)


def test_a_lost_checkpoint_state_file(setup, tmp_path):
    # Without `checkpoint` (the state file), the ckpt-*.index files still name the checkpoint:
    # the extraction says so and gives the same features.
    model_dir = tmp_path / "det"
    shutil.copytree(setup["root"] / "det", model_dir)
    (model_dir / "checkpoint").unlink()
    out = tmp_path / "features"
    args = [a for a in setup["args"] if not a.startswith(("--checkpoint_dir", "--out"))]
    proc = run("extract_features.py", *args, f"--checkpoint_dir={model_dir}", f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "found 1 checkpoint(s) from their ckpt-*.index files" in proc.stderr
    assert_same_features(read_all(out), read_all(setup["out"]))


def test_clear_errors(setup, tmp_path):
    proc = run("extract_features.py", *setup["args"][:-2], "--shard_size=3", "--noprogress")
    assert_clean_error(proc, "other settings", "shard_size")
    proc = run(
        "extract_features.py",
        f"--checkpoint_dir={tmp_path}/none",
        "--split=train",
        f"--out={tmp_path}/o",
    )
    assert_clean_error(proc, "--checkpoint_dir", "no such directory")


def test_feature_training_and_eval(setup):
    out, model_dir = setup["out"], setup["root"] / "linear"
    proc = run(
        "train.py",
        f"--label_map={setup['data']['label_map']}",
        "--input=features",
        f"--feature_dir={out}",
        f"--model_dir={model_dir}",
        "--head=linear",
        "--batch_size=2",
        "--context_keyframes=1",
        "--optimizer=adamw",
        "--learning_rate=0.01",
        "--warmup_steps=1",
        "--train_steps=10",
        "--checkpoint_every=10",
        "--noprogress",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trained to step 10" in proc.stdout
    gt = setup["root"] / "ava" / "annotations" / "ava_train.csv"
    proc = run(
        "eval.py",
        f"--model_dir={model_dir}",
        f"--eval_feature_dir={out}",
        f"--groundtruth={gt}",
        "--eval_actors=gt",
        "--noprogress",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((model_dir / "eval" / "ckpt-10_results.json").read_text())
    assert 0.0 < result["mAP@0.5IOU"] <= 1.0 and result["step"] == 10
    rows = (model_dir / "eval" / "ckpt-10_detections.csv").read_text().splitlines()
    # every keyframe scored once
    assert len({tuple(r.split(",")[:2]) for r in rows}) == sum(
        _keyframes_per_video(setup["data"]["train"]).values()
    )
