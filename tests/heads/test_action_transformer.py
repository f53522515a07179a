import keras
import numpy as np
import pytest
import tensorflow as tf

from action_tx.heads.action_transformer import ActionTransformerHead
from action_tx.heads.base import HeadInputs
from action_tx.heads.linear import LinearHead
from action_tx.heads.tx_unit import TxUnit, relative_coordinates, roi_align_map
from head_weights import dense, weight

NORM_EPSILON = 1e-6  # TxUnit's LayerNormalization
SMALL = dict(
    num_heads=2,
    num_layers=2,
    hidden_size=8,
    dropout=0.0,
    location_embedding_size=4,
    highres_reduced_channels=3,
    ffn_hidden=16,
)


def _inputs(features, rois, mask, roi_features):
    return HeadInputs(
        features=tf.constant(features, tf.float32),
        rois=tf.constant(rois, tf.float32),
        roi_mask=tf.constant(mask, tf.bool),
        roi_features=tf.constant(roi_features, tf.float32),
    )


def _random_inputs(seed=0, b=2, n=3, t=3, h=4, w=5, c=6, s=2):
    rng = np.random.default_rng(seed)
    y1 = rng.uniform(0, 0.5, [b, n])
    x1 = rng.uniform(0, 0.5, [b, n])
    rois = np.stack(
        [y1, x1, y1 + rng.uniform(0.2, 0.5, [b, n]), x1 + rng.uniform(0.2, 0.5, [b, n])], -1
    )
    return (
        rng.normal(size=[b, t, h, w, c]),
        rois,
        np.ones([b, n], bool),
        rng.normal(size=[b, n, t, s, s, c]),
    )


# ---- numpy reference of §3.2 / §3.4, written from the equations ----------------------------


def _dense(x, layer, name, relu=False):
    return dense(x, layer, name, relu)


def _layer_norm(x, layer, name):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + NORM_EPSILON) * weight(
        layer, name + "/gamma"
    ).numpy() + weight(layer, name + "/beta").numpy()


def _unit_ref(layer, query, memory, unit=""):
    """TxUnit `unit` of `layer` ("tx_l0_h1/"; "" when `layer` is the unit itself)."""
    q = _dense(query, layer, unit + "query")
    k, v = _dense(memory, layer, unit + "key"), _dense(memory, layer, unit + "value")
    scores = np.einsum("bnd,bmd->bnm", q, k) / np.sqrt(q.shape[-1])
    att = np.exp(scores - scores.max(-1, keepdims=True))
    att /= att.sum(-1, keepdims=True)
    q1 = _layer_norm(q + att @ v, layer, unit + "norm1")
    q2 = _layer_norm(
        q1 + _dense(_dense(q1, layer, unit + "ffn1", relu=True), layer, unit + "ffn2"),
        layer,
        unit + "norm2",
    )
    return q2, att


def _mlp_ref(layer, name, x):
    return _dense(_dense(x, layer, name + "_1", relu=True), layer, name + "_2")


def _bilinear(value_map, y, x):
    """value_map [H, W, E] at continuous cell coordinates (y, x), clamped like RoIAlign."""
    h, w = value_map.shape[:2]
    y, x = min(max(y, 0.0), h - 1.0), min(max(x, 0.0), w - 1.0)
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
    dy, dx = y - y0, x - x0
    return (
        (1 - dy) * (1 - dx) * value_map[y0, x0]
        + (1 - dy) * dx * value_map[y0, x1]
        + dy * (1 - dx) * value_map[y1, x0]
        + dy * dx * value_map[y1, x1]
    )


def _head_ref(head, features, rois, mask, roi_features):
    b, t, h, w, c = features.shape
    n, s = roi_features.shape[1], roi_features.shape[3]
    rel = lambda k: (np.arange(k) - (k - 1) / 2) / max((k - 1) / 2, 0.5)
    yy, xx = np.meshgrid(rel(h), rel(w), indexing="ij")
    spatial = _mlp_ref(head, "location_embedding/spatial_mlp", np.stack([yy, xx], -1))  # [H, W, E]
    temporal = _mlp_ref(head, "location_embedding/temporal_mlp", rel(t)[:, None])  # [T, E]
    e = spatial.shape[-1]
    emb = np.concatenate(
        [
            np.broadcast_to(spatial, [t, h, w, e]),
            np.broadcast_to(temporal[:, None, None], [t, h, w, e]),
        ],
        -1,
    )
    memory = np.concatenate([features, np.broadcast_to(emb, [b, t, h, w, 2 * e])], -1)
    memory = memory.reshape(b, t * h * w, -1)
    query_map = np.zeros([b, n, s, s, c + 2 * e])
    for bi in range(b):
        for ni in range(n):
            y1, x1, y2, x2 = rois[bi, ni]
            for i in range(s):
                for j in range(s):
                    yc = (y1 + (i + 0.5) * (y2 - y1) / s) * h - 0.5
                    xc = (x1 + (j + 0.5) * (x2 - x1) / s) * w - 0.5
                    query_map[bi, ni, i, j] = np.concatenate(
                        [
                            roi_features[bi, ni, t // 2, i, j],
                            _bilinear(spatial, yc, xc),
                            temporal[t // 2],
                        ]
                    )
    if head.query_mode == "highres":
        query = _dense(query_map, head, "qpr_conv1x1", relu=True).reshape(b, n, -1)
    else:
        query = query_map.mean(axis=(2, 3))
    atts = []
    for layer in range(head.num_layers):
        outs = [_unit_ref(head, query, memory, f"tx_l{layer}_h{h}/") for h in range(head.num_heads)]
        query = np.concatenate([o for o, _ in outs], -1)
        atts.append(np.stack([a for _, a in outs], 2))
    m = mask[:, :, None].astype(float)
    return (
        _dense(query, head, "cls_logits") * m,
        _dense(query, head, "box_deltas") * m,
        np.stack(atts, 2).reshape(b, n, head.num_layers, head.num_heads, t, h, w),
    )


# ---- tests ---------------------------------------------------------------------------------


def test_relative_coordinates_hand_values():
    np.testing.assert_allclose(relative_coordinates(5).numpy(), [-1, -0.5, 0, 0.5, 1])
    np.testing.assert_allclose(relative_coordinates(2).numpy(), [-1, 1])
    np.testing.assert_allclose(relative_coordinates(1).numpy(), [0])


def test_roi_align_map_hand_values():
    grid = np.arange(4.0)
    value_map = (10 * grid[:, None] + grid[None, :])[..., None]  # value 10*h + w, [4, 4, 1]
    boxes = tf.constant(
        [
            [
                [0.25, 0.25, 0.75, 0.75],  # bin centres fall on cells 1 and 2
                [0.0, 0.0, 0.5, 0.5],  # one bin, centre at cell 0.5 -> 5.5
                [0.0, 0.0, 0.1, 0.1],
            ]
        ]
    )  # centre at cell -0.3, clamped to 0
    out2 = roi_align_map(value_map.astype(np.float32), boxes, 2).numpy()[..., 0]
    np.testing.assert_allclose(out2[0, 0], [[11, 12], [21, 22]], atol=1e-5)
    out1 = roi_align_map(value_map.astype(np.float32), boxes, 1).numpy()[0, :, 0, 0, 0]
    np.testing.assert_allclose(out1[1:], [5.5, 0.0], atol=1e-5)


def test_tx_unit_matches_equations():
    unit = TxUnit(hidden_size=4, ffn_hidden=6, dropout=0.0)
    rng = np.random.default_rng(3)
    query, memory = rng.normal(size=[2, 3, 5]), rng.normal(size=[2, 7, 9])
    out, att = unit(tf.constant(query, tf.float32), tf.constant(memory, tf.float32))
    ref_out, ref_att = _unit_ref(unit, query, memory)
    np.testing.assert_allclose(att.numpy(), ref_att, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out.numpy(), ref_out, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("query_mode", ["highres", "lowres"])
def test_head_matches_numpy_reference(query_mode):
    head = ActionTransformerHead(num_classes=3, query_mode=query_mode, **SMALL)
    features, rois, mask, roi_features = _random_inputs(seed=1)
    mask[1, 2] = False
    out = head(_inputs(features, rois, mask, roi_features))
    assert out.logits.shape == (2, 3, 3) and out.box_deltas.shape == (2, 3, 4)
    assert out.attention.shape == (2, 3, 2, 2, 3, 4, 5)
    logits, deltas, att = _head_ref(head, features, rois, mask, roi_features)
    np.testing.assert_allclose(out.logits.numpy(), logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.box_deltas.numpy(), deltas, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        out.attention.numpy(), att * mask[:, :, None, None, None, None, None], rtol=1e-4, atol=1e-6
    )


def test_attention_sums_to_one_and_padding_is_inert():
    head = ActionTransformerHead(num_classes=4, **SMALL)
    features, rois, mask, roi_features = _random_inputs(seed=2, n=2)
    base = head(_inputs(features, rois, mask, roi_features))
    sums = base.attention.numpy().sum(axis=(4, 5, 6))
    np.testing.assert_allclose(sums, np.ones([2, 2, 2, 2]), rtol=1e-5)
    # Append two padded RoIs with random boxes and features: real rows must not change.
    rng = np.random.default_rng(9)
    pad_rois = np.concatenate([rois, np.tile([[[0.1, 0.2, 0.6, 0.9]]], [2, 2, 1])], 1)
    pad_feats = np.concatenate([roi_features, rng.normal(size=[2, 2, 3, 2, 2, 6])], 1)
    pad_mask = np.concatenate([mask, np.zeros([2, 2], bool)], 1)
    padded = head(_inputs(features, pad_rois, pad_mask, pad_feats))
    np.testing.assert_allclose(padded.logits.numpy()[:, :2], base.logits.numpy(), atol=1e-5)
    np.testing.assert_allclose(padded.attention.numpy()[:, :2], base.attention.numpy(), atol=1e-6)
    assert np.all(padded.logits.numpy()[:, 2:] == 0) and np.all(
        padded.box_deltas.numpy()[:, 2:] == 0
    )
    assert np.all(padded.attention.numpy()[:, 2:] == 0)


@pytest.mark.parametrize("query_mode", ["highres", "lowres"])
def test_location_embedding_distinguishes_positions_of_identical_content(query_mode):
    # Every trunk cell and every RoI cell holds the same vector: only position tells them apart.
    b, t, h, w, c, s = 1, 3, 6, 6, 5, 2
    features = np.broadcast_to(np.linspace(-1, 1, c), [b, t, h, w, c])
    roi_features = np.broadcast_to(np.linspace(-1, 1, c), [b, 3, t, s, s, c])
    rois = np.array([[[0.0, 0.0, 0.34, 0.34], [0.66, 0.5, 1.0, 0.84], [0.0, 0.0, 0.34, 0.34]]])
    inputs = _inputs(features, rois, np.ones([b, 3], bool), roi_features)
    kwargs = dict(SMALL, query_mode=query_mode)
    plain = ActionTransformerHead(num_classes=4, location_embedding=False, **kwargs)(inputs)
    # Identical keys: attention is exactly uniform, 1 / (T'H'W') on every cell.
    np.testing.assert_allclose(plain.attention.numpy(), 1.0 / (t * h * w), rtol=1e-5)
    np.testing.assert_allclose(plain.logits.numpy()[0, 0], plain.logits.numpy()[0, 1], atol=1e-5)
    located = ActionTransformerHead(num_classes=4, location_embedding=True, **kwargs)(inputs)
    logits = located.logits.numpy()[0]
    np.testing.assert_allclose(logits[0], logits[2], atol=1e-5)  # same box, same output
    assert np.abs(logits[0] - logits[1]).max() > 1e-3
    assert np.abs(located.attention.numpy()[0, 0] - located.attention.numpy()[0, 1]).max() > 1e-4


def test_config_round_trip_and_bad_arguments():
    head = ActionTransformerHead(
        num_classes=7,
        num_heads=3,
        num_layers=1,
        hidden_size=16,
        dropout=0.1,
        query_mode="lowres",
        location_embedding=False,
        location_embedding_size=8,
        highres_reduced_channels=4,
        ffn_hidden=32,
        regress_boxes=False,
        return_attention=False,
        name="tx",
    )
    config = head.get_config()
    assert ActionTransformerHead.from_config(config).get_config() == config
    assert config["query_mode"] == "lowres" and config["num_heads"] == 3
    out = head(_inputs(*_random_inputs(c=6)))
    assert out.box_deltas is None and out.attention is None and out.logits.shape == (2, 3, 7)
    with pytest.raises(ValueError, match="query_mode must be one of"):
        ActionTransformerHead(num_classes=2, query_mode="medres")
    features, rois, mask, roi_features = _random_inputs(c=6)
    with pytest.raises(ValueError, match="roi_features has 5 channels but features has 6"):
        head(_inputs(features, rois, mask, roi_features[..., :5]))


def test_works_inside_tf_function_with_dynamic_shapes():
    head = ActionTransformerHead(num_classes=3, **SMALL)
    features, rois, mask, roi_features = _random_inputs(seed=4)
    inputs = _inputs(features, rois, mask, roi_features)
    eager = head(inputs)
    signature = [
        tf.TensorSpec([None, None, None, None, 6]),
        tf.TensorSpec([None, None, 4]),
        tf.TensorSpec([None, None], tf.bool),
        tf.TensorSpec([None, None, None, 2, 2, 6]),
    ]

    @tf.function(input_signature=signature)
    def run(features, rois, roi_mask, roi_features):
        return head(
            HeadInputs(features=features, rois=rois, roi_mask=roi_mask, roi_features=roi_features),
            training=False,
        )

    graph = run(inputs.features, inputs.rois, inputs.roi_mask, inputs.roi_features)
    assert graph.attention.shape.rank == 7
    for a, g in zip(eager, graph):
        np.testing.assert_allclose(g.numpy(), a.numpy(), rtol=1e-5, atol=1e-6)


def _context_task(rng, count, t=2, h=6, w=6, c=3):
    """The label is whether a bright blob (channel 0) exists OUTSIDE the person box; the
    person's box content has the same distribution either way."""
    features = rng.normal(0, 0.1, [count, t, h, w, c])
    rois, tubes, labels = [], [], rng.integers(0, 2, count)
    for i in range(count):
        y, x = rng.integers(0, h - 1), rng.integers(0, w - 1)
        features[i, :, y : y + 2, x : x + 2, 1] += 1.0  # the person pattern
        if labels[i]:
            cells = [
                (a, b)
                for a in range(h)
                for b in range(w)
                if not (y <= a < y + 2 and x <= b < x + 2)
            ]
            a, b = cells[rng.integers(len(cells))]
            features[i, :, a, b, 0] += 3.0
        rois.append([y / h, x / w, (y + 2) / h, (x + 2) / w])
        tubes.append(features[i, :, y : y + 2, x : x + 2])  # exact 2x2 RoIAlign of cell-aligned box
    return _inputs(
        features, np.array(rois)[:, None], np.ones([count, 1], bool), np.array(tubes)[:, None]
    ), tf.constant(labels[:, None, None], tf.float32)


def _train(head, train, test, steps=100):
    optimizer = keras.optimizers.Adam(1e-2)
    head(train[0])

    @tf.function
    def step(inputs, labels):
        with tf.GradientTape() as tape:
            logits = head(inputs, training=True).logits
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits))
        optimizer.apply_gradients(
            zip(tape.gradient(loss, head.trainable_weights), head.trainable_weights)
        )
        return loss

    losses = [float(step(*train)) for _ in range(steps)]
    logits = head(test[0]).logits.numpy()
    accuracy = float(((logits > 0) == (test[1].numpy() > 0.5)).mean())
    return losses, accuracy


def test_tx_head_learns_context_that_a_roi_only_head_cannot():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    train, test = _context_task(rng, 128), _context_task(rng, 256)
    tx = ActionTransformerHead(
        num_classes=1,
        num_heads=1,
        num_layers=1,
        hidden_size=8,
        dropout=0.0,
        query_mode="lowres",
        location_embedding_size=4,
        ffn_hidden=16,
        regress_boxes=False,
    )
    tx_losses, tx_accuracy = _train(tx, train, test)
    _, linear_accuracy = _train(LinearHead(num_classes=1), train, test)
    assert tx_losses[-1] < 0.3 * tx_losses[0], (tx_losses[0], tx_losses[-1])
    assert tx_accuracy > 0.9, tx_accuracy
    assert linear_accuracy < 0.65, linear_accuracy  # chance is 0.5 (held-out, n = 256)


def test_count_params_by_hand():
    head = ActionTransformerHead(num_classes=3, query_mode="highres", **SMALL)
    head(_inputs(*_random_inputs(c=6, s=2)))
    # C = 6 + 2 * 4 embedding channels = 14; HighRes query = 2 * 2 cells * 3 channels = 12.
    embedding = (2 * 4 + 4) + (4 * 4 + 4) + (1 * 4 + 4) + (4 * 4 + 4)  # two 2-layer MLPs
    conv1x1 = 14 * 3 + 3
    unit_rest = 2 * (14 * 8 + 8) + (8 * 16 + 16) + (16 * 8 + 8) + 2 * (2 * 8)  # K, V, FFN, LNs
    layer1 = 2 * ((12 * 8 + 8) + unit_rest)
    layer2 = 2 * ((16 * 8 + 8) + unit_rest)  # query = concat of 2 heads x 8
    outputs = (16 * 3 + 3) + (16 * 4 + 4) + (16 + 1)  # classes, box, actor logit
    assert head.count_params() == embedding + conv1x1 + layer1 + layer2 + outputs == 2929


def test_mixed_precision_outputs_float32_and_normalised_attention():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        head = ActionTransformerHead(num_classes=3, **SMALL)
        out = head(_inputs(*_random_inputs(seed=5)))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert out.logits.dtype == tf.float32 and out.attention.dtype == tf.float32
    np.testing.assert_allclose(out.attention.numpy().sum(axis=(4, 5, 6)), 1.0, rtol=1e-5)
    assert np.all(np.isfinite(out.logits.numpy()))


def test_registered_for_keras_serialization():
    head = ActionTransformerHead(num_classes=2, num_layers=1, hidden_size=4, name="tx_head")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(head))
    assert isinstance(clone, ActionTransformerHead) and clone.get_config() == head.get_config()
