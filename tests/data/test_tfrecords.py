import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from action_tx.data import tfrecords


def _jpeg(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((6, 8, 3), value, np.uint8)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _example(**overrides):
    kwargs = dict(
        video_id="vidA",
        video_index=3,
        timestamp=902,
        keyframe_index=17,
        frames=[_jpeg(10), _jpeg(120), _jpeg(250)],
        keyframe_frame=1,
        fps=30.0,
        height=6,
        width=8,
        num_classes=4,
        boxes=[[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 0.5]],
        labels=[[1, 0, 0, 1], [0, 1, 0, 0]],
        person_ids=[7, 9],
        proposals=[[0.1, 0.1, 0.4, 0.4]],
        proposal_scores=[0.9],
        objects=[[0.2, 0.3, 0.4, 0.5], [0.6, 0.6, 0.9, 0.9]],
        object_classes=[2, 5],
        object_scores=[0.8, 0.4],
    )
    kwargs.update(overrides)
    return tfrecords.encode_example(**kwargs)


def test_round_trip_values():
    serialized = _example()
    for fn in (tfrecords.parse_example, tf.function(tfrecords.parse_example)):
        ex = fn(tf.constant(serialized))
        assert ex["video_id"].numpy() == b"vidA"
        assert [
            int(ex[k])
            for k in (
                "video_index",
                "timestamp",
                "keyframe_index",
                "keyframe_frame",
                "height",
                "width",
            )
        ] == [3, 902, 17, 1, 6, 8]
        assert float(ex["fps"]) == 30.0
        np.testing.assert_allclose(ex["boxes"], [[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 0.5]])
        np.testing.assert_array_equal(ex["labels"], [[1, 0, 0, 1], [0, 1, 0, 0]])
        np.testing.assert_array_equal(ex["person_ids"], [7, 9])
        np.testing.assert_allclose(ex["proposals"], [[0.1, 0.1, 0.4, 0.4]])
        np.testing.assert_allclose(ex["proposal_scores"], [0.9])
        np.testing.assert_array_equal(ex["object_classes"], [2, 5])
        np.testing.assert_allclose(ex["object_scores"], [0.8, 0.4])
        decoded = tf.io.decode_jpeg(ex["frames"][2]).numpy()
        assert decoded.shape == (6, 8, 3) and abs(int(decoded.mean()) - 250) <= 3


def test_empty_keyframe_and_static_classes():
    serialized = _example(
        boxes=None,
        labels=None,
        person_ids=None,
        proposals=None,
        proposal_scores=None,
        objects=None,
        object_classes=None,
        object_scores=None,
    )
    ex = tfrecords.parse_example(tf.constant(serialized), num_classes=4)
    assert ex["boxes"].shape == (0, 4) and ex["labels"].shape == (0, 4)
    assert ex["proposals"].shape == (0, 4) and ex["objects"].shape == (0, 4)
    assert ex["frames"].shape == (3,)


def test_deterministic_bytes_and_validation():
    assert _example() == _example()
    with pytest.raises(ValueError, match="labels"):
        _example(labels=[[1, 0, 0]])
    with pytest.raises(ValueError, match="keyframe_frame"):
        _example(keyframe_frame=3)
    with pytest.raises(ValueError, match="object_scores"):
        _example(object_scores=[0.5])


def test_num_classes_mismatch_is_named():
    with pytest.raises(tf.errors.InvalidArgumentError, match="different number of classes"):
        tfrecords.parse_example(tf.constant(_example()), num_classes=5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="different number of classes"):
        tf.function(tfrecords.parse_example)(tf.constant(_example()), num_classes=3)
