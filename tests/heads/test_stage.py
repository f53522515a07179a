import keras
import numpy as np
import pytest
import tensorflow as tf

from action_tx.heads.base import HeadInputs
from action_tx.heads.stage import StageHead
from action_tx.heads.stage_graph import adjacency_softmax, box_geometry, stage_adjacency
from head_weights import dense, weight

# A hand-made 3-clip batch (one video, timestamps 10, 11, 12 s), 2 actor + 2 object slots per
# clip. Box centres (y, x) sit on the corners of a 0.3 x 0.4 rectangle, so every distance is
# 0, 0.3, 0.4 or 0.5:  P=(0.2,0.2)  Q=(0.5,0.6)  R=(0.2,0.6)  S=(0.5,0.2)
#   PQ=0.5 PR=0.4 PS=0.3 QR=0.3 QS=0.4 RS=0.5
# Nodes (clip-major, index = clip * 4 + slot):
#   0 c0 actor P   1 c0 actor Q   2 c0 object R   3 c0 object pad
#   4 c1 actor P   5 c1 actor pad 6 c1 object S   7 c1 object pad
#   8 c2 actor Q   9 c2 actor P  10 c2 object pad 11 c2 object pad
P, Q, R, S = (0.2, 0.2), (0.5, 0.6), (0.2, 0.6), (0.5, 0.2)
CENTRES = [[P, Q, R, P], [P, P, S, P], [Q, P, P, P]]  # padded slots get some box too
MASK = [[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 0, 0]]
I, X, Y, W = 1.0, np.exp(-0.3), np.exp(-0.4), np.exp(-0.5)
# Fig. 3: dark blocks (same clip) on the diagonal, light blocks between consecutive clips
# (c0-c1, c1-c2), white (zero) between c0 and c2 and on every padded row and column.
FIG3 = np.array(
    [
        # c0 P Q  R  pad | c1 P pad S pad | c2 Q P pad pad
        [I, W, Y, 0, I, 0, X, 0, 0, 0, 0, 0],  # 0 c0 P
        [W, I, X, 0, W, 0, Y, 0, 0, 0, 0, 0],  # 1 c0 Q
        [Y, X, I, 0, Y, 0, W, 0, 0, 0, 0, 0],  # 2 c0 R
        [0] * 12,  # 3 pad
        [I, W, Y, 0, I, 0, X, 0, W, I, 0, 0],  # 4 c1 P
        [0] * 12,  # 5 pad
        [X, Y, W, 0, X, 0, I, 0, Y, X, 0, 0],  # 6 c1 S
        [0] * 12,  # 7 pad
        [0, 0, 0, 0, W, 0, Y, 0, I, W, 0, 0],  # 8 c2 Q
        [0, 0, 0, 0, I, 0, X, 0, W, I, 0, 0],  # 9 c2 P
        [0] * 12,  # 10 pad
        [0] * 12,  # 11 pad
    ],
    np.float32,
)


def _boxes(centres, half=0.1):
    c = np.asarray(centres, np.float32)
    return np.concatenate([c - half, c + half], axis=-1)  # yxyx around each centre


def _graph(**kwargs):
    args = dict(
        boxes=tf.constant(_boxes(CENTRES)),
        node_mask=tf.constant(MASK) > 0,
        video_index=tf.constant([3, 3, 3]),
        timestamp=tf.constant([10, 11, 12]),
    )
    args.update(kwargs)
    return args


def test_adjacency_equals_fig3_block_structure():
    adj = stage_adjacency(**_graph(), temporal_extent=1).numpy()
    np.testing.assert_allclose(adj, FIG3, rtol=1e-6, atol=1e-7)
    traced = tf.function(lambda a: stage_adjacency(**a, temporal_extent=1))(_graph())
    np.testing.assert_allclose(traced.numpy(), FIG3, rtol=1e-6, atol=1e-7)


def test_adjacency_ablations_and_extent():
    ones = stage_adjacency(**_graph(), use_proximity=False).numpy()
    np.testing.assert_array_equal(ones, (FIG3 > 0).astype(np.float32))
    # Extent 0: only the dark diagonal blocks.
    clip = np.repeat(np.arange(3), 4)
    same_clip = clip[:, None] == clip[None, :]
    no_time = stage_adjacency(**_graph(), temporal_extent=0).numpy()
    np.testing.assert_allclose(no_time, np.where(same_clip, FIG3, 0), rtol=1e-6)
    # Extent 2: c0 and c2 joined too (c0 P -> c2 Q is W, c0 R -> c2 P is Y).
    wide = stage_adjacency(**_graph(), temporal_extent=2).numpy()
    assert wide[0, 8] == pytest.approx(W) and wide[2, 9] == pytest.approx(Y)
    assert wide[8, 0] == pytest.approx(W) and wide[3].sum() == 0
    # A timestamp gap of 2 s is beyond extent 1 even for neighbours in the batch.
    gap = stage_adjacency(**_graph(timestamp=tf.constant([10, 11, 13]))).numpy()
    assert gap[4:8, 8:].sum() == 0 and gap[0, 4] == pytest.approx(I)
    # Other video, or a padded keyframe: no edges to it.
    other = stage_adjacency(**_graph(video_index=tf.constant([3, 3, 4]))).numpy()
    crosses = (clip[:, None] == 2) != (clip[None, :] == 2)  # c2 <-> c0, c1 blocks
    np.testing.assert_allclose(other, np.where(crosses, 0, FIG3), rtol=1e-6)
    padded = stage_adjacency(**_graph(keyframe_mask=tf.constant([True, True, False]))).numpy()
    assert padded[8:].sum() == 0 and padded[:, 8:].sum() == 0
    np.testing.assert_allclose(padded[:8, :8], FIG3[:8, :8], rtol=1e-6)


def test_box_geometry_is_height_width_centre():
    geo = box_geometry(tf.constant([[0.1, 0.2, 0.5, 0.8]])).numpy()  # y1 x1 y2 x2
    np.testing.assert_allclose(geo, [[0.4, 0.6, 0.5, 0.3]], rtol=1e-6)


def test_adjacency_softmax_gives_masked_entries_exactly_zero():
    scores = tf.constant([[2.0, 4.0, 7.0], [2.0, 1.0, 4.0], [5.0, 5.0, 5.0]])
    adj = tf.constant([[1.0, 0.5, 0.0], [0.5, 1.0, 0.25], [0.0, 0.0, 0.0]])
    w = adjacency_softmax(scores, adj).numpy()
    # Row 0: alpha = [2, 2, -] -> [1/2, 1/2, 0]; row 1: alpha = [1, 1, 1]; row 2: no edges.
    np.testing.assert_allclose(w, [[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3], [0, 0, 0]], rtol=1e-6)
    assert w[0, 2] == 0.0


def _inputs(seed=0, channels=6, time=2, size=3, **overrides):
    rng = np.random.default_rng(seed)
    b, n, o = 3, 2, 2
    tubes = rng.normal(size=(b, n, time, size, size, channels)).astype(np.float32)
    obj = rng.normal(size=(b, o, time, size, size, channels)).astype(np.float32)
    boxes = _boxes(CENTRES)
    mask = np.asarray(MASK, bool)
    args = dict(
        features=tf.zeros([b, time, 4, 4, channels]),
        rois=tf.constant(boxes[:, :n]),
        roi_mask=tf.constant(mask[:, :n]),
        roi_features=tf.constant(tubes),
        roi_scores=tf.ones([b, n]),
        objects=tf.constant(boxes[:, n:]),
        object_mask=tf.constant(mask[:, n:]),
        object_features=tf.constant(obj),
        video_index=tf.constant([3, 3, 3]),
        timestamp=tf.constant([10, 11, 12]),
    )
    args.update(overrides)
    return HeadInputs(**args)


def _np_layer_norm(x, gamma, beta, eps=1e-5):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def test_head_matches_numpy_reference_of_the_equations():
    keras.utils.set_random_seed(1)
    head = StageHead(num_classes=3, num_heads=2, num_layers=1, dropout=0.0)
    inputs = _inputs()
    out = head(inputs)
    # Reference of §3.2 / §4 in numpy with the head's weights.
    pooled = np.concatenate(
        [
            inputs.roi_features.numpy().mean(axis=(2, 3, 4)),
            inputs.object_features.numpy().mean(axis=(2, 3, 4)),
        ],
        1,
    )
    geo = box_geometry(tf.constant(_boxes(CENTRES))).numpy()
    x = np.concatenate([pooled, geo], -1).reshape(12, 10)  # d_f = 6 + 4
    kernel = weight(head, "gal1/kernel").numpy()  # [2, 10, 5]
    a = weight(head, "gal1/a").numpy()  # [2, 10]
    heads = []
    for k in range(2):
        h = x @ kernel[k]
        e = h @ a[k, :5][:, None] + (h @ a[k, 5:])[None, :]
        e = np.where(e > 0, e, 0.2 * e)  # LeakyReLU 0.2
        alpha = np.where(FIG3 > 0, FIG3 * e, -1e30)  # Eq. 6, edges only
        wts = np.exp(alpha - alpha.max(1, keepdims=True)) * (FIG3 > 0)
        wts = wts / np.maximum(wts.sum(1, keepdims=True), 1e-30)  # Eq. 7; padded rows 0
        agg = wts @ h
        heads.append(np.where(agg > 0, agg, np.expm1(agg)))  # ELU
    y = x + dense(np.concatenate(heads, -1), head, "gal1/fc")
    y = _np_layer_norm(y, weight(head, "gamma").numpy(), weight(head, "beta").numpy())
    actors = y.reshape(3, 4, 10)[:, :2]
    logits = dense(actors, head, "cls_logits")
    np.testing.assert_allclose(out.logits.numpy(), logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attention", ["graph", "transformer"])
def test_masked_nodes_get_zero_attention_and_no_influence(attention):
    keras.utils.set_random_seed(2)
    head = StageHead(num_classes=4, attention=attention, dropout=0.0)
    inputs = _inputs()
    out = head(inputs)
    att = out.attention.numpy()  # [B, N, B, M]
    assert att.shape == (3, 2, 3, 4)
    edges = FIG3.reshape(3, 4, 3, 4)[:, :2] > 0  # actor rows
    assert np.all(att[~edges] == 0.0)  # exactly zero
    real = np.asarray(MASK, bool)[:, :2]
    np.testing.assert_allclose(att[real].sum(axis=(1, 2)), 1.0, rtol=1e-5)
    assert np.all(att[~real] == 0.0)  # padded actor rows
    # Changing padded nodes (features and boxes) leaves every real actor's logits unchanged.
    rng = np.random.default_rng(9)
    tubes = inputs.roi_features.numpy()
    tubes[1, 1] = rng.normal(size=tubes[1, 1].shape) * 10
    obj = inputs.object_features.numpy()
    obj[0, 1] = rng.normal(size=obj[0, 1].shape) * 10
    rois = inputs.rois.numpy()
    rois[1, 1] = [0.7, 0.7, 0.9, 0.9]
    changed = head(
        inputs._replace(
            roi_features=tf.constant(tubes),
            object_features=tf.constant(obj),
            rois=tf.constant(rois),
        )
    )
    np.testing.assert_allclose(
        changed.logits.numpy()[real], out.logits.numpy()[real], rtol=1e-5, atol=1e-6
    )


def test_head_runs_in_both_modes_with_the_same_result():
    keras.utils.set_random_seed(3)
    head = StageHead(num_classes=5, dropout=0.0)
    tubes = _inputs()
    out = head(tubes)
    # Feature mode: the pooled vectors stored as [B, N, 1, 1, 1, C], context map T' = 1.
    pool = lambda t: tf.reduce_mean(t, axis=[2, 3, 4], keepdims=True)
    features = tubes._replace(
        features=tf.zeros([3, 1, 7, 7, 6]),
        roi_features=pool(tubes.roi_features),
        object_features=pool(tubes.object_features),
        keyframe_mask=tf.constant([True, True, True]),
    )
    assert features.roi_features.shape == (3, 2, 1, 1, 1, 6)
    feat_out = tf.function(lambda i: head(i, training=False))(features)
    assert out.logits.shape == (3, 2, 5) and out.box_deltas is None
    np.testing.assert_allclose(feat_out.logits.numpy(), out.logits.numpy(), rtol=1e-4, atol=1e-5)
    # No objects in the inputs (or use_objects=False): actor nodes only.
    bare = head(tubes._replace(objects=None, object_mask=None, object_features=None))
    assert bare.attention.shape == (3, 2, 3, 2)
    actors_only = StageHead(num_classes=5, use_objects=False, dropout=0.0)
    assert actors_only(tubes).attention.shape == (3, 2, 3, 2)


def test_get_config_round_trip_and_bad_arguments():
    head = StageHead(
        num_classes=7,
        num_heads=3,
        num_layers=1,
        dropout=0.25,
        temporal_extent=2,
        use_proximity=False,
        use_objects=False,
        attention="transformer",
        name="stage",
    )
    config = head.get_config()
    clone = StageHead.from_config(config)
    assert clone.get_config() == config
    assert {
        k: config[k]
        for k in (
            "num_classes",
            "num_heads",
            "num_layers",
            "dropout",
            "temporal_extent",
            "use_proximity",
            "use_objects",
            "attention",
        )
    } == dict(
        num_classes=7,
        num_heads=3,
        num_layers=1,
        dropout=0.25,
        temporal_extent=2,
        use_proximity=False,
        use_objects=False,
        attention="transformer",
    )
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(head))
    assert isinstance(restored, StageHead) and restored.get_config() == config
    # 3 heads do not divide d_f = 10: heads of 4, FC back to 10 for the residual.
    assert clone(_inputs()).logits.shape == (3, 2, 7)
    with pytest.raises(ValueError, match="attention"):
        StageHead(num_classes=2, attention="dot")


def test_a_few_training_steps_lower_the_loss():
    keras.utils.set_random_seed(4)
    # Only the action logits are trained here (the actor logit has no gradient).
    head = StageHead(num_classes=3, dropout=0.1, actor_logit=False)
    inputs = _inputs(seed=5)
    labels = tf.constant(np.random.default_rng(6).integers(0, 2, (3, 2, 3)), tf.float32)
    weight = tf.cast(inputs.roi_mask, tf.float32)[..., None] * tf.ones_like(labels)
    opt = keras.optimizers.Adam(3e-2)

    def loss_fn(training):
        logits = head(inputs, training=training).logits
        bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
        return tf.reduce_sum(bce * weight) / tf.reduce_sum(weight)

    before = float(loss_fn(False))
    for _ in range(12):  # eager: tracing a train step costs more than 12 steps here
        with tf.GradientTape() as tape:
            loss = loss_fn(True)
        grads = tape.gradient(loss, head.trainable_variables)
        assert all(g is not None for g in grads)
        opt.apply_gradients(zip(grads, head.trainable_variables))
    after = float(loss_fn(False))
    assert after < 0.8 * before, (before, after)
