"""build_dataset over layout-2 shards (`action_tx.data.chunks`) gives the keyframes that it
gives over layout-1 shards of the same keyframes: evaluation, training, consecutive runs,
keyframe ranges, and the video runs that feature extraction plans its shards with."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from action_tx.data import chunks, features, pipeline, tfrecords

C, W, K = 3, 4, 3
VIDEOS = {"v0": 5, "v1": 4}  # keyframes per video: 9 in all


def _jpeg(value: int) -> bytes:
    rng = np.random.default_rng(value)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _video(v: int, n: int):
    """A video's frames (2 per keyframe) and keyframes with W=4 windows 2 frames apart, the
    last repeating the video's last frame; keyframe 1 has no boxes, proposals or objects."""
    frames = [_jpeg(100 * v + i) for i in range(2 * n + 1)]
    rng = np.random.default_rng(v)
    keys = []
    for t in range(n):
        m = 0 if t == 1 else 1 + t % 2
        boxes = rng.uniform(0, 0.5, (m, 4)).astype(np.float32)
        boxes[:, 2:] += 0.5
        keys.append(
            dict(
                timestamp=t,
                boxes=boxes,
                labels=rng.integers(0, 2, (m, C)),
                person_ids=np.arange(m),
                proposals=boxes,
                proposal_scores=rng.uniform(0, 1, m),
                objects=boxes[:1],
                object_classes=[3] * len(boxes[:1]),
                object_scores=[0.5] * len(boxes[:1]),
                window=[min(max(2 * t + d, 0), 2 * n) for d in (-1, 0, 1, 2)],
            )
        )
    return frames, keys


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Both layouts of the same keyframes, each in two shards (a video a shard)."""
    root = tmp_path_factory.mktemp("chunks")
    index = 0
    for v, (vid, n) in enumerate(VIDEOS.items()):
        frames, keys = _video(v, n)
        common = dict(video_id=vid, video_index=v, fps=2.0, height=16, width=16, num_classes=C)
        for k in keys:
            k["keyframe_index"], index = index, index + 1
        with tf.io.TFRecordWriter(str(root / f"one-{v:05d}-of-00002")) as w:
            for k in keys:
                fields = {a: b for a, b in k.items() if a != "window"}
                frames_k = [frames[i] for i in k["window"]]
                w.write(
                    tfrecords.encode_example(frames=frames_k, keyframe_frame=1, **common, **fields)
                )
        with tf.io.TFRecordWriter(str(root / f"two-{v:05d}-of-00002")) as w:
            for s in range(0, n, K):
                part = keys[s : s + K]
                used = sorted({i for k in part for i in k["window"]})
                pos = {i: p for p, i in enumerate(used)}
                part = [
                    dict(k, window=[pos[i] for i in k["window"]], keyframe_frame=1) for k in part
                ]
                w.write(
                    chunks.encode_chunk(frames=[frames[i] for i in used], keyframes=part, **common)
                )
    return str(root / "one-*"), str(root / "two-*")


def _batches(pattern, **kw):
    args = dict(
        batch_size=3,
        num_classes=C,
        num_frames=4,
        frame_stride=1,
        image_size=16,
        max_boxes=3,
        max_proposals=3,
        max_objects=2,
        num_parallel_calls=2,
        keyframe_jpeg=True,
    )
    args.update(kw)
    return [{k: v.numpy() for k, v in b.items()} for b in pipeline.build_dataset(pattern, **args)]


def _assert_same(a, b):
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert sorted(x) == sorted(y)
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_evaluation_consecutive_and_ranges_match(shards):
    one, two = shards
    assert chunks.read_layout(tf.io.gfile.glob(two)) == (2, K)
    _assert_same(_batches(one), _batches(two))
    runs = dict(consecutive=True, context=1, batch_size=2)
    got = _batches(two, **runs)
    _assert_same(_batches(one, **runs), got)
    assert [b["keyframe_index"].tolist() for b in got][:2] == [[-1, 0, 1, 2], [1, 2, 3, 4]]
    ranges = dict(keyframes=[(1, 2), (5, 3)])
    got = _batches(two, **ranges)
    _assert_same(_batches(one, **ranges), got)
    assert np.concatenate([b["keyframe_index"] for b in got]).tolist() == [1, 2, 5, 6, 7]
    assert features.video_runs(sorted(tf.io.gfile.glob(two))) == [[0, 5], [1, 4]]
    assert features.video_runs(sorted(tf.io.gfile.glob(one))) == [[0, 5], [1, 4]]


def test_training_epoch_has_the_same_keyframes(shards):
    one, two = shards
    train = dict(training=True, repeat=False, seed=3, shuffle_buffer=6, box_jitter=0.05)
    epochs = {}
    for name, pattern in (("one", one), ("two", two)):
        batches = _batches(pattern, **train)
        epochs[name] = np.concatenate([b["keyframe_index"] for b in batches]).tolist()
        assert all(b["clip"].shape == (3, 4, 16, 16, 3) for b in batches)
    assert sorted(epochs["one"]) == sorted(epochs["two"]) == list(range(9))
    assert epochs["two"] != sorted(epochs["two"])  # shuffled across chunks
    again = _batches(two, **train)  # the same seed: the same batches
    _assert_same(_batches(two, **train), again)
    # Shuffled runs of consecutive keyframes keep each run whole: within a window the
    # keyframes follow each other, except where the window passes into the next shard read
    # (training shuffles the shards' order; a shard is a video), which starts a video.
    runs = _batches(two, consecutive=True, context=1, batch_size=2, **train)
    starts = {0, 5}  # the first keyframes of v0 and v1
    for b in runs:
        k = b["keyframe_index"][b["keyframe_mask"]].tolist()
        assert all(y == x + 1 or y in starts for x, y in zip(k[:-1], k[1:])), k


def test_iterator_checkpoint_round_trip_on_chunks(shards, tmp_path):
    """Training resumes mid-chunk: the restored iterator gives the same next batches."""
    _, two = shards
    args = dict(
        batch_size=2,
        num_classes=C,
        num_frames=4,
        frame_stride=1,
        image_size=16,
        training=True,
        seed=5,
        shuffle_buffer=4,
    )
    it = iter(pipeline.build_dataset(two, **args))
    next(it)
    ckpt = tf.train.Checkpoint(iterator=it)
    path = ckpt.save(str(tmp_path / "ckpt" / "it"))
    expected = [next(it) for _ in range(3)]
    ckpt.restore(path)
    for want in expected:
        got = next(it)
        for key in ("clip", "boxes", "keyframe_index"):
            np.testing.assert_array_equal(got[key], want[key])
