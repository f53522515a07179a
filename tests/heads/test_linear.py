import numpy as np
import tensorflow as tf

from action_tx.heads.base import HeadInputs
from action_tx.heads.linear import LinearHead
from head_weights import weight


def _inputs(roi_features):
    b, n = roi_features.shape[:2]
    return HeadInputs(
        features=tf.zeros([b, 2, 4, 4, roi_features.shape[-1]]),
        rois=tf.zeros([b, n, 4]),
        roi_mask=tf.ones([b, n], tf.bool),
        roi_features=roi_features,
    )


def test_linear_head_is_linear_in_pooled_feature():
    head = LinearHead(num_classes=3)
    feats = tf.random.stateless_normal([2, 5, 2, 7, 7, 8], seed=[1, 2])
    out = head(_inputs(feats))
    assert out.logits.shape == (2, 5, 3) and out.box_deltas is None
    kernel, bias = (weight(head, f"cls_logits/{w}").numpy() for w in ("kernel", "bias"))
    expected = feats.numpy().mean(axis=(2, 3, 4)) @ kernel + bias
    np.testing.assert_allclose(out.logits.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_linear_head_config_round_trip():
    head = LinearHead(num_classes=4, dropout=0.25, name="lin")
    config = head.get_config()
    clone = LinearHead.from_config(config)
    assert clone.get_config() == config
    assert {k: config[k] for k in ("num_classes", "dropout")} == {"num_classes": 4, "dropout": 0.25}
