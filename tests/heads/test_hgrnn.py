"""HGRNN head (hgrnn_graph_rnn.txt): node-order invariance, padding, the scene window, config,
both input modes (end to end in an ActionDetector, feature-mode shapes) and a training check."""

import numpy as np
import tensorflow as tf
import keras

from action_tx import losses
from action_tx.heads.base import HeadInputs
from action_tx.heads.hgrnn import HGRNNHead
from action_tx.heads.hgrnn_ops import max_over_others, temporal_neighbours
from action_tx.model_builder import build_detector

C = 6  # feature channels


def _normal(shape, seed):
    return tf.random.stateless_normal(shape, seed=[seed, 7])


def _feature_inputs(b=3, n=4, mask=None, seed=0, **extra):
    """Feature-mode shapes: features [B, 1, M, M, C], roi_features [B, N, 1, 1, 1, C]."""
    mask = np.ones([b, n], bool) if mask is None else np.asarray(mask)
    return HeadInputs(
        features=_normal([b, 1, 3, 3, C], seed),
        rois=tf.zeros([b, n, 4]),
        roi_mask=tf.constant(mask),
        roi_features=_normal([b, n, 1, 1, 1, C], seed + 1),
        **extra,
    )


def test_temporal_neighbours_by_video_and_timestamp():
    # Entries: video 0 at t = 10, 11, 13; video 1 at t = 11; a padded entry of video 0 at 12.
    index, valid = temporal_neighbours(
        tf.constant([0, 0, 0, 1, 0]),
        tf.constant([10, 11, 13, 11, 12]),
        tf.constant([True, True, True, True, False]),
        window=2,
        batch_size=5,
    )
    # Offsets -2..2. Entry 1 (t=11): t=9 absent, 10 = entry 0, 12 padded (masked), 13 = entry 2.
    np.testing.assert_array_equal(
        valid.numpy(),
        [[0, 0, 1, 1, 0], [0, 1, 1, 0, 1], [1, 0, 1, 0, 0], [0, 0, 1, 0, 0], [1, 1, 1, 1, 0]],
    )
    np.testing.assert_array_equal(index.numpy()[1], [1, 0, 1, 1, 2])
    np.testing.assert_array_equal(index.numpy()[4, :4], [0, 1, 4, 2])  # the padded one's own
    alone, alone_valid = temporal_neighbours(None, None, None, window=1, batch_size=2)
    np.testing.assert_array_equal(alone.numpy(), [[0, 0, 0], [1, 1, 1]])
    np.testing.assert_array_equal(alone_valid.numpy(), [[0, 1, 0], [0, 1, 0]])


def test_max_over_others_values():
    h = tf.constant([[[1.0, 5.0], [3.0, 2.0], [2.0, 9.0], [7.0, 7.0]]])
    out = max_over_others(h, tf.constant([[True, True, True, False]])).numpy()[0]
    # Node 3 is padding: never pooled. Rows 0-2: max over the two other valid nodes.
    np.testing.assert_allclose(out[:3], [[3.0, 9.0], [2.0, 9.0], [3.0, 5.0]])
    single = max_over_others(h[:, :1], tf.constant([[True]])).numpy()
    np.testing.assert_allclose(single, [[[0.0, 0.0]]])  # nobody else: empty pool = 0


def test_graph_gru_is_invariant_to_person_order():
    head = HGRNNHead(num_classes=5, window=1, iterations=2, hidden_size=8)
    mask = np.array([[True, True, True, True, False], [True, True, False, False, False]])
    inputs = _feature_inputs(
        b=2, n=5, mask=mask, video_index=tf.constant([0, 0]), timestamp=tf.constant([3, 4])
    )
    logits = head(inputs).logits.numpy()
    perm = [3, 0, 4, 2, 1]
    permuted = inputs._replace(
        roi_features=tf.gather(inputs.roi_features, perm, axis=1),
        roi_mask=tf.gather(inputs.roi_mask, perm, axis=1),
    )
    np.testing.assert_allclose(head(permuted).logits.numpy(), logits[:, perm], atol=1e-5)
    # Not trivially invariant: person 1's output depends on person 0's feature.
    changed = inputs.roi_features.numpy()
    changed[0, 0] += 3.0
    moved = head(inputs._replace(roi_features=tf.constant(changed))).logits.numpy()
    assert np.abs(moved[0, 1] - logits[0, 1]).max() > 1e-4


def test_padded_persons_do_not_change_valid_outputs():
    head = HGRNNHead(num_classes=4, window=0, iterations=3, hidden_size=8)
    mask = np.array([[True, True, False, False]] * 2)
    inputs = _feature_inputs(b=2, n=4, mask=mask)
    logits = head(inputs).logits.numpy()
    noise = inputs.roi_features.numpy()
    noise[:, 2:] = 100.0 * np.random.default_rng(0).normal(size=noise[:, 2:].shape)
    out = head(inputs._replace(roi_features=tf.constant(noise))).logits.numpy()
    np.testing.assert_allclose(out[:, :2], logits[:, :2], atol=1e-6)
    np.testing.assert_array_equal(out[:, 2:], 0.0)  # padded rows: zero logits
    # Fewer padding slots give the same valid outputs.
    short = inputs._replace(
        roi_features=inputs.roi_features[:, :2],
        roi_mask=inputs.roi_mask[:, :2],
        rois=inputs.rois[:, :2],
    )
    np.testing.assert_allclose(head(short).logits.numpy(), logits[:, :2], atol=1e-5)


def test_scene_state_sees_neighbours_within_the_window_only():
    # Video 0 at t = 10..15, video 1 at t = 12, and a padded keyframe of video 0 at t = 11
    # duplicated (keyframe_mask false: never a neighbour).
    video = tf.constant([0, 0, 0, 0, 0, 0, 1, 0])
    time = tf.constant([10, 11, 12, 13, 14, 15, 12, 11])
    real = tf.constant([True] * 7 + [False])
    head = HGRNNHead(num_classes=3, window=2, hidden_size=8)
    inputs = _feature_inputs(b=8, n=2, video_index=video, timestamp=time, keyframe_mask=real)
    base = head.scene_state(inputs).numpy()[2]  # keyframe t = 12 of video 0

    def change(entry, field="features"):
        value = getattr(inputs, field).numpy()
        value[entry] += 2.0
        return head.scene_state(inputs._replace(**{field: tf.constant(value)})).numpy()[2]

    for entry in (0, 3, 4):  # t = 10, 13, 14: within l = 2
        assert np.abs(change(entry) - base).max() > 1e-4, entry
    assert np.abs(change(4, "roi_features") - base).max() > 1e-4  # max-pooled persons too
    for entry in (5, 6, 7):  # t = 15 (beyond l), other video, padded keyframe
        np.testing.assert_array_equal(change(entry), base)
    # l = 0: the keyframe alone.
    alone = HGRNNHead(num_classes=3, window=0, hidden_size=8)
    before = alone.scene_state(inputs).numpy()[2]
    value = inputs.features.numpy()
    value[3] += 2.0
    after = alone.scene_state(inputs._replace(features=tf.constant(value))).numpy()[2]
    np.testing.assert_array_equal(after, before)


def test_config_round_trip():
    head = HGRNNHead(num_classes=7, window=1, iterations=3, hidden_size=16, dropout=0.2, name="hg")
    config = head.get_config()
    assert {
        k: config[k] for k in ("num_classes", "window", "iterations", "hidden_size", "dropout")
    } == {"num_classes": 7, "window": 1, "iterations": 3, "hidden_size": 16, "dropout": 0.2}
    clone = HGRNNHead.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(head))
    assert isinstance(restored, HGRNNHead) and restored.get_config() == config


def test_end_to_end_in_an_action_detector():
    keras.utils.set_random_seed(0)
    det = build_detector(
        num_classes=3,
        trunk="i3d_tiny",
        head="hgrnn",
        proposals="gt",
        head_options=dict(window=3, hidden_size=8),
        max_detections=4,
        class_specific_nms=True,
    )
    assert det.get_config()["class_specific_nms"] is True
    boxes = np.array([[[0.1, 0.1, 0.6, 0.5], [0.3, 0.5, 0.9, 0.9]]] * 2, np.float32)
    batch = {
        "clip": _normal([2, 4, 32, 32, 3], 3) * 0.3,
        "boxes": tf.constant(boxes),
        "box_mask": tf.constant([[True, True], [True, False]]),
        "labels": tf.zeros([2, 2, 3]),
    }
    train = det(batch, training=True)
    assert train["logits"].shape == (2, 2, 3)
    out = det(batch, training=False)
    np.testing.assert_array_equal(out["num_detections"].numpy(), [2, 1])
    # gt boxes score 1: action scores are the sigmoid probabilities (no overlap suppression
    # between the two disjoint-enough boxes at IoU 0.6).
    probs = tf.sigmoid(out["logits"]).numpy()
    np.testing.assert_allclose(out["action_scores"].numpy()[0, :2], probs[0], rtol=1e-5)


def test_a_few_training_steps_lower_the_focal_loss():
    keras.utils.set_random_seed(0)
    b, n, classes = 6, 3, 4
    head = HGRNNHead(num_classes=classes, window=1, hidden_size=16)
    mask = np.array([[True, True, False]] * b)
    inputs = _feature_inputs(
        b=b, n=n, mask=mask, seed=5, video_index=tf.zeros([b], tf.int32), timestamp=tf.range(b)
    )
    labels = tf.cast(_normal([b, n, classes], 9) > 0.3, tf.float32)
    optimizer = keras.optimizers.Adam(1e-2)

    def loss_fn():
        return losses.action_classification_loss(
            labels, head(inputs, training=True).logits, tf.cast(mask, tf.float32), focal_gamma=2.0
        )

    first = float(loss_fn())
    optimizer.build(head.trainable_variables)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn()
        grads = tape.gradient(loss, head.trainable_variables)
        optimizer.apply_gradients(zip(grads, head.trainable_variables))

    for _ in range(20):
        step()
    assert float(loss_fn()) < 0.5 * first
