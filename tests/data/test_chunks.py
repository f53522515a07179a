"""Layout 2 (`action_tx.data.chunks`): a chunk parses to exactly the examples of layout 1."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from action_tx.data import chunks, tfrecords

C = 4


def _jpeg(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((6, 8, 3), value, np.uint8)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


FRAMES = [_jpeg(20 * i) for i in range(8)]  # the video: 8 frames
# Three keyframes with W = 4 windows over the video's frames; the last one at the video's end
# repeats its last frame (index 7 twice).
WINDOWS = [[0, 1, 2, 3], [2, 3, 4, 5], [5, 6, 7, 7]]


def _keyframes():
    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, 1, (3, 4)).astype(np.float32)
    return [
        dict(
            timestamp=902,
            keyframe_index=11,
            boxes=boxes[:2],
            labels=[[1, 0, 0, 1], [0, 1, 0, 0]],
            person_ids=[7, 9],
            proposals=boxes[2:],
            proposal_scores=[0.9],
            objects=None,
            object_classes=None,
            object_scores=None,
        ),
        # no boxes, no proposals, no objects
        dict(timestamp=903, keyframe_index=12),
        dict(
            timestamp=904,
            keyframe_index=13,
            boxes=boxes[1:],
            labels=[[0, 0, 0, 0], [1, 1, 1, 1]],
            person_ids=[3, -1],
            objects=boxes,
            object_classes=[2, 5, 1],
            object_scores=[0.8, 0.4, 0.7],
        ),
    ]


VIDEO = dict(video_id="vidA", video_index=3, fps=30.0, height=6, width=8, num_classes=C)


def _layout1():
    return [
        tfrecords.encode_example(frames=[FRAMES[i] for i in w], keyframe_frame=2, **VIDEO, **k)
        for k, w in zip(_keyframes(), WINDOWS)
    ]


def _layout2(keyframes=None, windows=WINDOWS):
    used = sorted({i for w in windows for i in w})
    position = {f: p for p, f in enumerate(used)}
    return chunks.encode_chunk(
        frames=[FRAMES[i] for i in used],
        keyframes=[
            dict(k, window=[position[i] for i in w], keyframe_frame=2)
            for k, w in zip(keyframes or _keyframes(), windows)
        ],
        **VIDEO,
    )


def _numpy(ex):
    return {k: np.asarray(v.numpy()) for k, v in ex.items()}


def _assert_same(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        assert (a[key].dtype, a[key].shape) == (b[key].dtype, b[key].shape), key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("num_classes", [None, C])
def test_both_layouts_parse_to_the_same_examples(num_classes):
    want = [_numpy(tfrecords.parse_example(tf.constant(s), num_classes)) for s in _layout1()]
    got = [_numpy(ex) for ex in chunks.record_keyframes(tf.constant(_layout2()), num_classes)]
    assert len(got) == 3
    for a, b in zip(want, got):
        _assert_same(a, b)
    # the end-of-video window repeats its last frame; the empty keyframe has empty lists
    assert got[2]["frames"][2] == got[2]["frames"][3] == FRAMES[7]
    assert got[1]["boxes"].shape == (0, 4) and got[1]["labels"].shape == (0, C)
    assert got[1]["objects"].shape == (0, 4) and got[1]["proposal_scores"].shape == (0,)
    np.testing.assert_array_equal(got[2]["labels"], [[0, 0, 0, 0], [1, 1, 1, 1]])
    np.testing.assert_array_equal(got[2]["object_classes"], [2, 5, 1])
    # a layout-1 record read as a chunk of one keyframe gives parse_example's dict too
    for serialized, a in zip(_layout1(), want):
        (b,) = [_numpy(ex) for ex in chunks.record_keyframes(tf.constant(serialized), num_classes)]
        _assert_same(a, b)


def test_chunk_stores_each_frame_once_and_is_deterministic():
    serialized = _layout2()
    assert serialized == _layout2()
    chunk = chunks.parse_chunk(tf.constant(serialized))
    assert [f for f in chunk["frames"].numpy()] == FRAMES  # the 8 distinct frames, once each
    np.testing.assert_array_equal(chunk["windows"], WINDOWS)
    assert len(serialized) < sum(len(s) for s in _layout1())


def test_shards_of_both_layouts_and_read_layout(tmp_path):
    paths = []
    for name, records in (("one", _layout1()), ("two", [_layout2()])):
        paths.append(str(tmp_path / name))
        with tf.io.TFRecordWriter(paths[-1]) as w:
            for s in records:
                w.write(s)
    (tmp_path / "empty").write_bytes(b"")
    assert chunks.read_layout([str(tmp_path / "empty"), paths[0]]) == (1, 1)
    assert chunks.read_layout([paths[1]]) == (2, 3)
    assert chunks.read_layout([str(tmp_path / "empty")]) == (1, 1)
    for path in paths:
        got = list(chunks.shard_keyframes(tf.constant(path), C))
        assert [int(ex["timestamp"]) for ex in got] == [902, 903, 904]
        assert {ex["shard"].numpy().decode() for ex in got} == {path}


def test_encode_chunk_refuses_bad_windows_and_other_classes():
    def encode(windows):
        keyframes = [dict(timestamp=t, keyframe_index=t, keyframe_frame=0) for t in range(3)]
        frames = FRAMES[:4]
        for k, w in zip(keyframes, windows):
            k["window"] = w
        return chunks.encode_chunk(frames=frames, keyframes=keyframes, **VIDEO)

    assert encode([[0, 1, 2, 3]] * 3)
    with pytest.raises(ValueError, match="outside the chunk"):
        encode([[0, 1, 2, 4], [0, 1, 2, 3], [0, 1, 2, 3]])
    with pytest.raises(ValueError, match="same W"):
        encode([[0, 1, 2, 3], [0, 1, 2], [0, 1, 2, 3]])
    with pytest.raises(ValueError, match="labels"):
        _layout2(
            keyframes=[dict(timestamp=1, keyframe_index=0, boxes=[[0, 0, 1, 1]], labels=[[1, 0]])],
            windows=[[0, 1, 2, 3]],
        )
    with pytest.raises(tf.errors.InvalidArgumentError, match="different number of classes"):
        list(chunks.record_keyframes(tf.constant(_layout2()), C + 1))
