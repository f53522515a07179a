import keras
import numpy as np
import pytest
import tensorflow as tf

from action_tx.heads.acar import ACARHead
from action_tx.heads.acar_blocks import (
    ActorContextEncoder,
    HR2OBlock,
    RelationNetworkBlock,
    masked_softmax,
)
from action_tx.heads.base import HeadInputs
from head_weights import weight


def _normal(shape, seed):
    return tf.random.stateless_normal(shape, seed=[seed, 7])


def _feature_inputs(n=3, valid=(3, 2), c=6, m=7, seed=0):
    """Feature-mode HeadInputs: context [B, 1, M, M, C], vectors [B, N, 1, 1, 1, C]."""
    b = len(valid)
    mask = tf.constant([[i < v for i in range(n)] for v in valid])
    return HeadInputs(
        features=_normal([b, 1, m, m, c], seed),
        rois=tf.zeros([b, n, 4]),
        roi_mask=mask,
        roi_features=_normal([b, n, 1, 1, 1, c], seed + 1),
    )


def test_masked_softmax_values():
    probs = masked_softmax(
        tf.constant([[1.0, 2.0, 3.0], [0.0, 5.0, 1.0]]),
        tf.constant([[True, True, False], [False, False, False]]),
    )
    e = np.exp([1.0, 2.0])
    np.testing.assert_allclose(
        probs.numpy(), [list(e / e.sum()) + [0.0], [0.0, 0.0, 0.0]], rtol=1e-6
    )


def test_acrn_encoder_equals_tiled_concat_then_convs():
    enc = ActorContextEncoder(hidden_size=4, kernel_size=3)
    actors, context = _normal([1, 2, 5], 1), _normal([1, 7, 7, 5], 2)
    maps = enc(actors, context).numpy()
    assert maps.shape == (1, 2, 3, 3, 4)
    # Reference: concatenate [X, tile(A_i)], 1x1 conv with the stacked kernel, ReLU, 3x3 valid
    # conv, ReLU, 3x3/2 max pool with one cell of padding.
    w1 = np.concatenate(
        [weight(enc, "conv1_context/kernel").numpy(), weight(enc, "conv1_actor/kernel").numpy()], 0
    )
    w2 = weight(enc, "conv2/kernel").numpy()
    for i in range(2):
        tiled = np.broadcast_to(actors.numpy()[0, i], (7, 7, 5))
        x = np.maximum(np.concatenate([context.numpy()[0], tiled], -1) @ w1, 0)
        y = np.zeros([5, 5, 4])
        for r in range(5):
            for s in range(5):
                y[r, s] = np.einsum("abc,abcd->d", x[r : r + 3, s : s + 3], w2)
        y = np.pad(np.maximum(y, 0), [(1, 1), (1, 1), (0, 0)], constant_values=-np.inf)
        pooled = np.array(
            [
                [y[2 * r : 2 * r + 3, 2 * s : 2 * s + 3].max((0, 1)) for s in range(3)]
                for r in range(3)
            ]
        )
        np.testing.assert_allclose(maps[0, i], pooled, rtol=1e-4, atol=1e-5)


def test_hr2o_attention_is_scaled_dot_product_over_valid_actors():
    d = 4
    block = HR2OBlock(hidden_size=d, kernel_size=1, dropout=0.0)
    maps = _normal([1, 3, 2, 2, d], 3)
    mask = tf.constant([[True, True, False]])
    block(maps, maps, mask)
    for conv in ("conv_q", "conv_k"):  # identity Q, K projections: logits = <F_i, F_j>/sqrt(d)
        weight(block, conv + "/kernel").assign(np.eye(d, dtype=np.float32)[None, None])
    _, att = block(maps, maps, mask)
    f = maps.numpy()[0]
    logits = np.einsum("nhwc,mhwc->nmhw", f, f)[:, :2] / np.sqrt(d)
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(att.numpy()[0, :, :2], expected, rtol=1e-5)
    np.testing.assert_array_equal(att.numpy()[0, :, 2], 0.0)


def test_hr2o_attention_sums_to_one_and_padding_changes_nothing():
    head = ACARHead(num_classes=5, hidden_size=8, dropout=0.0)
    inputs = _feature_inputs(n=3, valid=(3, 2))
    out = head(inputs, training=False)
    att = out.attention.numpy()  # [B, N, M, h, w]
    assert att.shape == (2, 3, 3, 3, 3)
    np.testing.assert_allclose(att[0].sum(1), 1.0, rtol=1e-5)  # every location
    np.testing.assert_allclose(att[1, :2].sum(1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(att[1, :, 2], 0.0)  # padded key actor
    np.testing.assert_array_equal(out.logits.numpy()[1, 2], 0.0)  # padded query actor
    # One more padded actor with arbitrary features leaves the real actors' outputs unchanged.
    padded = inputs._replace(
        rois=tf.zeros([2, 4, 4]),
        roi_mask=tf.concat([inputs.roi_mask, [[False], [False]]], 1),
        roi_features=tf.concat([inputs.roi_features, 50.0 * _normal([2, 1, 1, 1, 1, 6], 9)], 1),
    )
    out2 = head(padded, training=False)
    np.testing.assert_allclose(out2.logits.numpy()[0, :3], out.logits.numpy()[0], atol=1e-5)
    np.testing.assert_allclose(out2.logits.numpy()[1, :2], out.logits.numpy()[1, :2], atol=1e-5)


def test_relation_network_variant_runs_and_ignores_padding():
    head = ACARHead(num_classes=4, hidden_size=8, relation="rn", dropout=0.0)
    inputs = _feature_inputs(n=3, valid=(3, 2))
    out = head(inputs, training=False)
    assert out.logits.shape == (2, 3, 4) and out.attention is None
    changed = inputs._replace(
        roi_features=tf.concat([inputs.roi_features[:, :2], 9.0 + inputs.roi_features[:, 2:]], 1)
    )
    out2 = head(changed, training=False)  # actor 3 of keyframe 1 is padding: no effect there
    np.testing.assert_allclose(out2.logits.numpy()[1], out.logits.numpy()[1], atol=1e-5)
    assert np.abs(out2.logits.numpy()[0] - out.logits.numpy()[0]).max() > 1e-3


def test_relation_network_block_equals_the_dense_pairs_on_valid_actors():
    # The block computes only pairs of valid actors; on every valid actor it equals eq. 3-4
    # over all N x N pairs with the mean over the valid j (the dense form, numpy below), and a
    # padded actor keeps its first-order map. Eagerly and inside tf.function.
    block = RelationNetworkBlock(hidden_size=4, kernel_size=3)
    b, n, c, size = 2, 4, 5, 7
    actors, context = _normal([b, n, c], 1), _normal([b, size, size, c], 2)
    mask = tf.constant([[True, True, False, True], [True, False, False, False]])
    maps = _normal([b, n, 3, 3, 4], 3)
    eager = block(actors, context, mask, maps).numpy()
    graph = tf.function(block)(actors, context, mask, maps).numpy()
    np.testing.assert_allclose(graph, eager, rtol=1e-5, atol=1e-6)
    wi, wj, wv = (
        weight(block, f"{k}/kernel").numpy() for k in ("f1_actor_i", "f1_actor_j", "f1_context")
    )
    conv = weight(block, "f2/kernel").numpy()
    a, x, m = actors.numpy(), context.numpy(), mask.numpy()
    for bi in range(b):
        for i in range(n):
            if not m[bi, i]:
                np.testing.assert_array_equal(eager[bi, i], maps.numpy()[bi, i])
                continue
            hs = []
            for j in np.flatnonzero(m[bi]):
                joint = np.maximum(x[bi] @ wv + a[bi, i] @ wi + a[bi, j] @ wj, 0.0)  # [7, 7, d]
                out = np.zeros((5, 5, 4))
                for y in range(5):
                    for z in range(5):
                        out[y, z] = np.einsum("hwc,hwcd->d", joint[y : y + 3, z : z + 3], conv)
                out = np.maximum(out, 0.0)
                # 3x3 max-pool, stride 2, "same" on 5x5: windows [0:2], [1:4], [3:5].
                cuts = [(0, 2), (1, 4), (3, 5)]
                hs.append(np.array([[out[p:q, r:t].max((0, 1)) for r, t in cuts] for p, q in cuts]))
            expected = maps.numpy()[bi, i] + np.mean(hs, axis=0)
            np.testing.assert_allclose(eager[bi, i], expected, rtol=1e-4, atol=1e-5)


def test_end_to_end_mode_matches_feature_mode_on_constant_tubes():
    head = ACARHead(num_classes=3, hidden_size=8, dropout=0.0)
    feat = _feature_inputs(n=2, valid=(2,))
    out = head(feat, training=False).logits.numpy()
    # End to end: a trunk map constant over T' = 2 and tubes constant over T', S, S pool to
    # the same context and actor vectors, hence the same logits.
    e2e = feat._replace(
        features=tf.tile(feat.features, [1, 2, 1, 1, 1]),
        roi_features=tf.tile(feat.roi_features, [1, 1, 2, 7, 7, 1]),
    )
    np.testing.assert_allclose(head(e2e, training=False).logits.numpy(), out, atol=1e-5)


def test_config_round_trip():
    head = ACARHead(
        num_classes=7,
        num_blocks=1,
        hidden_size=16,
        relation="rn",
        dropout=0.3,
        bank_window=4,
        reduce_size=24,
        kernel_size=3,
        block_dropout=0.1,
        name="acar",
    )
    config = head.get_config()
    clone = ACARHead.from_config(config)
    assert clone.get_config() == config
    assert {
        k: config[k]
        for k in (
            "num_classes",
            "num_blocks",
            "hidden_size",
            "relation",
            "use_bank",
            "bank_window",
            "reduce_size",
        )
    } == dict(
        num_classes=7,
        num_blocks=1,
        hidden_size=16,
        relation="rn",
        use_bank=False,
        bank_window=4,
        reduce_size=24,
    )


def test_bad_relation_and_rn_with_bank_are_refused():
    with pytest.raises(ValueError, match="relation"):
        ACARHead(num_classes=2, relation="nl")
    with pytest.raises(ValueError, match="hr2o"):
        ACARHead(num_classes=2, relation="rn", use_bank=True)


def test_training_steps_lower_the_loss():
    keras.utils.set_random_seed(0)
    head = ACARHead(num_classes=2, hidden_size=8, dropout=0.0, block_dropout=0.0)
    inputs = _feature_inputs(n=3, valid=(3, 3), seed=5)
    vec = inputs.roi_features.numpy()[:, :, 0, 0, 0]
    labels = tf.constant(np.stack([vec[..., 0] > 0, vec[..., 1] > 0], -1), tf.float32)
    optimizer = keras.optimizers.Adam(0.01)
    losses = []
    for _ in range(15):
        with tf.GradientTape() as tape:
            logits = head(inputs, training=True).logits
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits))
        grads = tape.gradient(loss, head.trainable_variables)
        optimizer.apply_gradients(zip(grads, head.trainable_variables))
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]
