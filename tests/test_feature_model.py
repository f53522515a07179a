"""FeatureActionModel: config round trip, masks (context keyframes: no loss, no detections),
detections = stored box x score x action probability, a few training steps lower the loss."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from action_tx.data import feature_dataset, features
from action_tx.feature_model import FeatureActionModel
from action_tx.heads.linear import LinearHead

K, C = 3, 4


def _keyframe(t, video="v", label=0):
    rng = np.random.default_rng(t)
    # The label is readable from the feature: class `label` -> feature channel `label` high.
    feat = rng.normal(0, 0.1, (1, C)).astype(np.float32)
    feat[0, label] += 2.0
    return dict(
        video_id=video,
        video_index=0,
        timestamp=t,
        keyframe_index=t,
        context=np.zeros((2, 2, C)),
        scene=np.zeros(C),
        gt=dict(
            boxes=np.array([[0.1, 0.1, 0.6, 0.5]]),
            labels=np.eye(K)[[label]],
            person_ids=[0],
            features=feat,
        ),
        det=dict(
            boxes=np.array([[0.1, 0.1, 0.6, 0.5]]),
            scores=[0.5],
            features=feat,
            labels=np.eye(K)[[label]],
        ),
        obj=dict(
            boxes=np.zeros((0, 4)),
            classes=np.zeros(0),
            scores=np.zeros(0),
            features=np.zeros((0, C)),
        ),
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("features"))
    features.write_feature_dir(
        directory, [_keyframe(t, label=t % K) for t in range(8)], num_classes=K
    )
    return directory


def test_config_round_trip():
    model = FeatureActionModel(
        LinearHead(K, dropout=0.2),
        K,
        pose_indices=[0, 1],
        focal_gamma=2.0,
        nms_iou=0.5,
        max_detections=7,
    )
    clone = FeatureActionModel.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert isinstance(clone.head, LinearHead) and clone.head.dropout == 0.2
    assert keras.saving.get_registered_object("action_tx>FeatureActionModel") is FeatureActionModel


def test_masks_and_detection_scores(folder):
    keras.utils.set_random_seed(0)
    ds = feature_dataset.build_feature_dataset(
        folder, num_classes=K, batch_size=2, training=False, actors="detected", context=1
    )
    batch = next(iter(ds))  # keyframes [pad, 0, 1, 2]: targets 0 and 1
    model = FeatureActionModel(LinearHead(K), K)
    out = model(batch, training=False)
    np.testing.assert_array_equal(out["roi_mask"][:, 0], [False, True, True, False])
    np.testing.assert_array_equal(out["num_detections"], [0, 1, 1, 0])
    probs = tf.sigmoid(out["logits"]).numpy()
    np.testing.assert_allclose(out["action_scores"][1, 0], 0.5 * probs[1, 0], rtol=1e-5)
    np.testing.assert_allclose(out["detection_boxes"][1, 0], [0.1, 0.1, 0.6, 0.5], atol=1e-6)
    train_out = model(batch, training=True)
    np.testing.assert_array_equal(train_out["roi_labels"][1, 0], [1, 0, 0])
    np.testing.assert_array_equal(train_out["roi_is_positive"][:, 0], [False, True, True, False])
    # Only target RoIs weigh in the loss: changing a context keyframe's label changes nothing.
    loss = model.compute_losses(train_out)["total_loss"]
    changed = dict(batch, labels=tf.tensor_scatter_nd_update(batch["labels"], [[3, 0, 2]], [1.0]))
    again = model.compute_losses(model(changed, training=True))["total_loss"]
    np.testing.assert_allclose(loss, again, rtol=1e-6)


def test_training_lowers_the_loss(folder):
    keras.utils.set_random_seed(0)
    ds = feature_dataset.build_feature_dataset(
        folder, num_classes=K, batch_size=3, training=True, seed=0, actors="both"
    )
    model = FeatureActionModel(LinearHead(K), K)
    opt = keras.optimizers.Adam(0.05)

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            loss = model.compute_losses(model(batch, training=True))["total_loss"]
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    losses = [float(step(batch)) for batch in ds.take(40)]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


@pytest.mark.parametrize("nms,count", [(True, 1), (False, 2)])
def test_ground_truth_boxes_are_not_suppressed(tmp_path, nms, count):
    # Two people overlapping with IoU 0.667 > nms_iou 0.6: the GT-box bound scores both.
    kf = _keyframe(0)
    kf["gt"] = dict(
        boxes=np.array([[0.1, 0.1, 0.9, 0.5], [0.1, 0.18, 0.9, 0.58]]),
        labels=np.eye(K)[[0, 1]],
        person_ids=[0, 1],
        features=np.repeat(kf["gt"]["features"], 2, axis=0),
    )
    features.write_feature_dir(str(tmp_path), [kf], num_classes=K)
    batch = next(
        iter(
            feature_dataset.build_feature_dataset(
                str(tmp_path), num_classes=K, batch_size=1, training=False, actors="gt"
            )
        )
    )
    out = FeatureActionModel(LinearHead(K), K, nms_iou=0.6, nms=nms)(batch, training=False)
    assert int(out["num_detections"][0]) == count
