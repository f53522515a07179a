"""action_tx.own_box_features and the Extractor's pixels='own_box': an actor's feature from its
own pixels alone, blind to everything outside its box however far the trunk sees."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from action_tx.checkpointing import checkpointable
from action_tx.data import ava
from action_tx.data.features import decode_keyframe
from action_tx.data.pipeline import build_dataset
from action_tx.feature_extraction import Extractor
from action_tx.model_builder import build_detector
from action_tx.own_box_features import own_box_features
from train_helpers import make_tiny_data  # tests/tools, on pytest's pythonpath

DATA = dict(
    num_frames=8, frame_stride=2, image_size=64, max_boxes=4, max_proposals=4, max_objects=2
)


def _detector(num_classes=3):
    keras.utils.set_random_seed(0)
    return build_detector(
        num_classes=num_classes, trunk="i3d_tiny", head="linear", anchor_sizes=[16, 32]
    )


def _frame_view(det, clip, boxes, mask):
    """The whole-frame view: one trunk pass, each box pooled from it (feature_layer trunk)."""
    tubes = det.roi_extractor(det.trunk(clip, training=False), boxes, mask)
    return tf.reduce_mean(tubes, axis=[2, 3, 4]).numpy()


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(0)
    clip = rng.uniform(-1, 1, (2, 8, 64, 64, 3)).astype(np.float32)
    boxes = np.array(
        [
            [[0.1, 0.1, 0.6, 0.4], [0.2, 0.5, 0.9, 0.9], [0, 0, 0, 0]],
            [[0.3, 0.2, 0.8, 0.7], [0, 0, 0, 0], [0, 0, 0, 0]],
        ],
        np.float32,
    )
    mask = np.array([[True, True, False], [True, False, False]])
    det = _detector()
    det(
        dict(
            clip=clip,
            boxes=boxes,
            box_mask=mask,
            labels=np.zeros((2, 3, 3), np.float32),
        ),
        training=False,
    )
    return det, clip, boxes, mask


def test_own_box_feature_is_the_greyed_clips_and_blind_outside_the_box(scene):
    det, clip, boxes, mask = scene
    own = own_box_features(det, clip, boxes, mask).numpy()
    assert own.shape == (2, 3, det.trunk.output_channels)
    np.testing.assert_array_equal(own[0, 2], 0.0)  # padding rows
    np.testing.assert_array_equal(own[1, 1:], 0.0)
    # Box (0, 0) by hand: its keyframe's clip with every pixel outside the box set to 0
    # (pixel centres (i + .5) / 64), pooled over the box from that clip's trunk map.
    ys = (np.arange(64) + 0.5) / 64
    y1, x1, y2, x2 = boxes[0, 0]
    inside = ((ys >= y1) & (ys <= y2))[:, None] & ((ys >= x1) & (ys <= x2))[None, :]
    grey = np.where(inside[None, :, :, None], clip[0], 0.0)[None]
    by_hand = _frame_view(det, grey, boxes[:1, :1], mask[:1, :1])
    np.testing.assert_allclose(own[0, 0], by_hand[0, 0], rtol=1e-5, atol=1e-6)
    # Everything outside box (0, 0) repainted: its own-box feature stays, the whole-frame
    # feature of the same box moves (the trunk's receptive field reaches past the box).
    other = np.where(inside[None, :, :, None], clip[0], 1.0)[None]
    both = np.concatenate([other, clip[1:]], 0)
    moved = own_box_features(det, both, boxes, mask).numpy()
    np.testing.assert_allclose(moved[0, 0], own[0, 0], rtol=1e-5, atol=1e-6)
    frame_before = _frame_view(det, clip, boxes, mask)[0, 0]
    frame_after = _frame_view(det, both, boxes, mask)[0, 0]
    assert np.abs(frame_after - frame_before).max() > 1e-3
    # Inside tf.function (the Extractor's step) it gives the same values.
    traced = tf.function(lambda c, b, m: own_box_features(det, c, b, m))(clip, boxes, mask)
    np.testing.assert_allclose(traced.numpy(), own, rtol=1e-5, atol=1e-6)


def test_extractor_own_box_stores_ground_truth_actors_only(tmp_path):
    data = make_tiny_data(tmp_path, videos=1, seconds=6)
    files = sorted(tf.io.gfile.glob(data["train"]))
    labels = ava.read_label_map(data["label_map"])
    dataset = build_dataset(
        files, batch_size=2, num_classes=labels.num_classes, training=False, **DATA
    )
    batch = next(iter(dataset))
    det = _detector(labels.num_classes)
    det(batch, training=False)
    path = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=checkpointable(det)), str(tmp_path / "det"), 1
    ).save(checkpoint_number=1)
    kwargs = dict(dataset_kwargs=dict(DATA, num_classes=labels.num_classes), batch_size=2)
    with pytest.raises(ValueError, match="pixels must be one of"):
        Extractor(_detector(labels.num_classes), path, files, pixels="crop", **kwargs)
    extractor = Extractor(_detector(labels.num_classes), path, files, pixels="own_box", **kwargs)
    extractor.write_shard(str(tmp_path / "own.tfrecord"), 0, 2)
    records = tf.data.TFRecordDataset(str(tmp_path / "own.tfrecord"))
    stored = [decode_keyframe(r.numpy()) for r in records]
    mask = tf.cast(batch["box_mask"], tf.bool)
    expected = own_box_features(det, batch["clip"], batch["boxes"], mask).numpy()
    for i, kf in enumerate(stored):
        n = int(mask[i].numpy().sum())
        assert n > 0 and kf["det"]["boxes"].size == 0 and kf["obj"]["boxes"].size == 0
        np.testing.assert_allclose(
            kf["gt"]["features"].reshape(n, -1), expected[i, :n], rtol=1e-4, atol=1e-5
        )
        np.testing.assert_array_equal(kf["context"], 0.0)
