import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from action_tx.data import augment, pipeline, tfrecords

C = 3
BOX = [0.2, 0.1, 0.6, 0.3]  # in the left (dark) half of the frame


def _jpeg(value: int) -> bytes:
    """16x16 frame: left half `value`, right half 255 - value (so a flip is visible)."""
    img = np.zeros((16, 16, 3), np.uint8)
    img[:, :8], img[:, 8:] = value, 255 - value
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=100)
    return buf.getvalue()


def _record(timestamp: int) -> bytes:
    return tfrecords.encode_example(
        video_id="v0",
        video_index=0,
        timestamp=timestamp,
        keyframe_index=timestamp,
        frames=[_jpeg(20 + 40 * k) for k in range(5)],
        keyframe_frame=2,
        fps=10.0,
        height=16,
        width=16,
        num_classes=C,
        boxes=[BOX],
        labels=[[0, 1, 1]],
        person_ids=[timestamp],
        proposals=[[0.1, 0.1, 0.2, 0.2], [0.3, 0.3, 0.5, 0.5], [0.0, 0.0, 0.4, 0.4]],
        proposal_scores=[0.2, 0.9, 0.5],
        objects=[[0.5, 0.5, 0.9, 0.9]],
        object_classes=[4],
        object_scores=[0.7],
    )


@pytest.fixture
def shards(tmp_path):
    for s in range(2):
        with tf.io.TFRecordWriter(str(tmp_path / f"t-{s:05d}-of-00002.tfrecord")) as w:
            for t in range(4):
                w.write(_record(10 * s + t))
    return str(tmp_path / "t-*.tfrecord")


def _ds(pattern, **kw):
    args = dict(
        batch_size=2,
        num_classes=C,
        num_frames=3,
        frame_stride=1,
        image_size=8,
        max_boxes=2,
        max_proposals=2,
        max_objects=2,
        num_parallel_calls=2,
    )
    args.update(kw)
    return pipeline.build_dataset(pattern, **args)


def test_flip_and_crop_boxes_hand_computed():
    np.testing.assert_allclose(
        augment.flip_boxes(tf.constant([[0.1, 0.2, 0.5, 0.6]])), [[0.1, 0.4, 0.5, 0.8]], atol=1e-6
    )
    boxes = tf.constant(
        [
            [0.3, 0.3, 0.5, 0.6],  # inside -> kept
            [0.6, 0.1, 0.9, 0.4],  # 0.08 / 0.36 = 22% visible -> dropped
            [0.0, 0.0, 0.1, 0.1],  # fully outside -> dropped
            [0.4, 0.4, 0.8, 0.8],
        ]
    )  # 0.36 / 0.64 = 56% visible -> kept, clipped
    out, keep = augment.crop_boxes(boxes, tf.constant([0.2, 0.2, 0.7, 0.7]), min_visible=0.25)
    np.testing.assert_array_equal(keep, [True, False, False, True])
    np.testing.assert_allclose(
        out.numpy()[[0, 3]], [[0.2, 0.2, 0.6, 0.8], [0.4, 0.4, 1.0, 1.0]], atol=1e-6
    )
    np.testing.assert_allclose(out[1], [0.8, 0.0, 1.0, 0.4], atol=1e-6)


def test_jitter_boxes_hand_computed():
    boxes = tf.constant([[0.2, 0.2, 0.6, 0.4], [0.0, 0.9, 0.1, 1.0], [0.5, 0.5, 0.52, 0.6]])
    noise = tf.constant([[1.0, -1.0, -0.5, 0.5], [-1.0, 1.0, 1.0, 1.0], [1.0, 0.0, -1.0, 0.0]])
    out = augment.jitter_boxes(boxes, noise, amount=tf.constant([0.1, 0.5, 1.0])[:, None])
    np.testing.assert_allclose(
        out,
        [
            [0.24, 0.18, 0.58, 0.41],  # h=.4 w=.2, shift .1 of size
            [0.0, 0.95, 0.15, 1.0],  # clipped to [0, 1]
            [0.5, 0.5, 0.52, 0.6],
        ],  # y sides swap: re-ordered
        atol=1e-6,
    )


def test_frame_indices_and_crop_window():
    np.testing.assert_array_equal(augment.select_frame_indices(2, 5, 4, 2), [0, 0, 2, 4])
    np.testing.assert_array_equal(augment.select_frame_indices(0, 3, 3, 1), [0, 0, 1])
    for i in range(5):
        w = augment.sample_crop_window(tf.constant([i, 1]), 0.6).numpy()
        assert 0.0 <= w[0] and 0.0 <= w[1] and w[2] <= 1.0 + 1e-6 and w[3] <= 1.0 + 1e-6
        assert 0.6 - 1e-6 <= w[2] - w[0] <= 1.0 and abs((w[2] - w[0]) - (w[3] - w[1])) < 1e-6
    np.testing.assert_array_equal(
        augment.sample_crop_window(tf.constant([3, 1]), 0.6),
        augment.sample_crop_window(tf.constant([3, 1]), 0.6),
    )


def test_eval_batch_values(shards):
    batch = next(iter(_ds(shards)))
    assert batch["clip"].shape == (2, 3, 8, 8, 3) and batch["clip"].dtype == tf.float32
    # T=3, s=1 around keyframe position 2: window frames 1, 2, 3 (left halves 60, 100, 140).
    left = batch["clip"].numpy()[0, :, :, :3].mean(axis=(1, 2, 3))
    np.testing.assert_allclose(left, (np.array([60, 100, 140]) - 127.5) / 127.5, atol=0.03)
    np.testing.assert_allclose(batch["boxes"][0], [BOX, [0, 0, 0, 0]], atol=1e-6)
    np.testing.assert_array_equal(batch["box_mask"], [[True, False]] * 2)
    np.testing.assert_array_equal(batch["labels"][0], [[0, 1, 1], [0, 0, 0]])
    np.testing.assert_array_equal(batch["person_ids"], [[0, -1], [1, -1]])
    # proposals sorted by score, the lowest (0.2) dropped by max_proposals=2.
    np.testing.assert_allclose(batch["proposals"][0], [[0.3, 0.3, 0.5, 0.5], [0, 0, 0.4, 0.4]])
    np.testing.assert_allclose(batch["proposal_scores"][0], [0.9, 0.5])
    np.testing.assert_array_equal(batch["proposal_mask"][0], [True, True])
    np.testing.assert_array_equal(batch["object_classes"][0], [4, -1])
    np.testing.assert_array_equal(batch["object_mask"][0], [True, False])
    assert batch["video_id"].numpy().tolist() == [b"v0", b"v0"]
    assert batch["timestamp"].dtype == tf.int32 and batch["keyframe_index"].numpy().tolist() == [
        0,
        1,
    ]
    all_ts = [int(t) for b in _ds(shards) for t in b["timestamp"]]
    assert all_ts == [0, 1, 2, 3, 10, 11, 12, 13]


def test_training_flip_consistent_and_deterministic(shards):
    ds = _ds(shards, training=True, seed=7, min_crop_scale=1.0, box_jitter=0.0)
    flipped_box = augment.flip_boxes(tf.constant([BOX])).numpy()[0]
    seen = set()
    for batch in ds.take(6):
        for b in range(2):
            box = batch["boxes"].numpy()[b, 0]
            clip = batch["clip"].numpy()[b]
            dark_left = clip[:, :, :4].mean() < clip[:, :, 4:].mean()
            if np.allclose(box, BOX, atol=1e-6):
                assert dark_left
                seen.add("plain")
            else:
                np.testing.assert_allclose(box, flipped_box, atol=1e-6)
                assert not dark_left
                seen.add("flipped")
    assert seen == {"plain", "flipped"}
    a = [b["clip"].numpy() for b in _ds(shards, training=True, seed=3).take(3)]
    b = [b["clip"].numpy() for b in _ds(shards, training=True, seed=3).take(3)]
    c = [b["clip"].numpy() for b in _ds(shards, training=True, seed=4).take(3)]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, z) for x, z in zip(a, c))


def test_training_crop_keeps_boxes_valid(shards):
    for batch in _ds(shards, training=True, seed=1, min_crop_scale=0.5).take(4):
        boxes, mask = batch["boxes"].numpy(), batch["box_mask"].numpy()
        real = boxes[mask]
        assert np.all(real >= 0) and np.all(real <= 1)
        assert np.all(real[:, 2] > real[:, 0]) and np.all(real[:, 3] > real[:, 1])
        assert np.all(boxes[~mask] == 0) and np.all(batch["person_ids"].numpy()[~mask] == -1)


def test_iterator_checkpoint_round_trip(shards, tmp_path):
    it = iter(_ds(shards, training=True, seed=5, shuffle_buffer=4))
    next(it)
    ckpt = tf.train.Checkpoint(iterator=it)
    path = ckpt.save(str(tmp_path / "ckpt" / "it"))
    expected = [next(it) for _ in range(2)]
    ckpt.restore(path)
    for want in expected:
        got = next(it)
        np.testing.assert_array_equal(got["clip"], want["clip"])
        np.testing.assert_array_equal(got["boxes"], want["boxes"])
        np.testing.assert_array_equal(got["timestamp"], want["timestamp"])


def test_missing_files_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no TFRecord files"):
        pipeline.build_dataset(str(tmp_path / "none-*"), batch_size=1, num_classes=C)


def test_select_ranges_keeps_the_ranges_in_one_pass():
    ds = tf.data.Dataset.range(100).map(lambda i: (tf.strings.as_string(i), i * 10))
    picked = pipeline.select_ranges(ds, [(2, 3), (10, 1), (15, 5)])
    assert [int(v) for _, v in picked] == [20, 30, 40, 100, 150, 160, 170, 180, 190]
    assert [s.numpy() for s, _ in picked.take(2)] == [b"2", b"3"]
    single = pipeline.select_ranges(tf.data.Dataset.range(1000), [(0, 2), (5, 1)])
    assert list(single.as_numpy_iterator()) == [0, 1, 5]
    # It stops after the last range: an endless stream ends.
    assert len(list(pipeline.select_ranges(tf.data.Dataset.range(3).repeat(), [(4, 2)]))) == 2
    with pytest.raises(ValueError, match="evaluation records only"):
        pipeline.build_dataset("x", batch_size=1, num_classes=C, training=True, keyframes=[(0, 1)])
