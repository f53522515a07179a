import keras
import numpy as np
import pytest
import tensorflow as tf

from action_tx.heads import HEADS
from action_tx.heads.action_transformer import ActionTransformerHead
from action_tx.heads.base import HeadInputs
from action_tx.heads.i3d_head import I3DHead
from action_tx.heads.tx_i3d import TxI3DHead
from action_tx.model_builder import build_detector
from head_weights import dense, has_sublayer, weight

CLASSES = 3
# Tiny: I3D tail at width 0.05 (every conv at its 8-channel floor or a little above).
TX = dict(
    num_heads=2,
    num_layers=2,
    hidden_size=8,
    dropout=0.0,
    location_embedding_size=4,
    highres_reduced_channels=3,
    ffn_hidden=16,
)
TINY = dict(width_multiplier=0.05, freeze_bn=True, i3d_dropout=0.0, **TX)


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(0)  # initial weights


def _inputs(seed=0, b=2, n=3, t=2, h=4, w=5, c=6, s=4, mask=None):
    rng = np.random.default_rng(seed)
    y1, x1 = rng.uniform(0, 0.5, [b, n]), rng.uniform(0, 0.5, [b, n])
    rois = np.stack(
        [y1, x1, y1 + rng.uniform(0.2, 0.5, [b, n]), x1 + rng.uniform(0.2, 0.5, [b, n])], -1
    )
    mask = np.ones([b, n], bool) if mask is None else np.asarray(mask)
    return HeadInputs(
        features=tf.constant(rng.normal(size=[b, t, h, w, c]), tf.float32),
        rois=tf.constant(rois, tf.float32),
        roi_mask=tf.constant(mask),
        roi_features=tf.constant(rng.normal(size=[b, n, t, s, s, c]), tf.float32),
    )


def _standalone_copies(head, inputs):
    """An `ActionTransformerHead` and an `I3DHead` with the composite's sub-heads' weights."""
    tx = ActionTransformerHead(CLASSES, regress_boxes=False, **TX)
    i3d = I3DHead(CLASSES, width_multiplier=0.05, freeze_bn=True, dropout=0.0, actor_logit=False)
    tx(inputs), i3d(inputs)
    tx.set_weights(head.tx_head.get_weights())
    i3d.tail.set_weights(head.i3d_head.tail.get_weights())
    for w in ("box_deltas/kernel", "box_deltas/bias"):
        weight(i3d, w).assign(weight(head, "i3d_head/" + w))
    return tx, i3d


def test_logits_from_tx_boxes_from_i3d():
    inputs = _inputs()
    head = TxI3DHead(CLASSES, **TINY)
    out = head(inputs, training=False)
    assert out.logits.shape == (2, 3, CLASSES) and out.box_deltas.shape == (2, 3, 4)
    assert out.attention.shape == (2, 3, 2, 2, 2, 4, 5)

    tx, i3d = _standalone_copies(head, inputs)
    tx_out, i3d_out = tx(inputs, training=False), i3d(inputs, training=False)
    np.testing.assert_allclose(out.logits, tx_out.logits, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.attention, tx_out.attention, rtol=1e-6, atol=1e-6)
    # The actor (background) logit comes with the classification: from the Tx sub-head.
    np.testing.assert_allclose(out.actor_logits, tx_out.actor_logits, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.box_deltas, i3d_out.box_deltas, rtol=1e-6, atol=1e-6)

    # The box deltas by hand: mean of the I3D tail over (t, y, x), then the box layer.
    flat = tf.reshape(inputs.roi_features, [6, 2, 4, 4, 6])
    pooled = head.i3d_head.tail(flat, training=False).numpy().mean(axis=(1, 2, 3))
    np.testing.assert_allclose(
        out.box_deltas.numpy().reshape(6, 4),
        dense(pooled, head, "i3d_head/box_deltas"),
        rtol=1e-5,
        atol=1e-6,
    )

    # No unused weights: the composite holds the Tx head without box layer plus the I3D head
    # without classifier (its classifier: C5 inputs x C classes + C biases).
    c5 = head.i3d_head.tail.output_channels
    assert not has_sublayer(head.i3d_head, "cls_logits")
    assert not has_sublayer(head.tx_head, "box_deltas")
    assert head.count_params() == (
        tx.count_params() + i3d.count_params() - (c5 * CLASSES + CLASSES)
    )


def test_padded_rois_are_zero_and_do_not_change_real_ones():
    mask = [[True, True, False], [True, False, False]]
    head = TxI3DHead(CLASSES, **TINY)
    inputs = _inputs(mask=mask)
    out = head(inputs, training=False)
    padded = ~np.asarray(mask)
    for value in (out.logits, out.box_deltas, out.attention):
        assert np.all(value.numpy()[padded] == 0)
        assert np.all(np.abs(value.numpy()[~padded]).sum(axis=-1) > 0)
    other = _inputs(seed=5, mask=mask)  # new RoIs and tubes; keep the real ones and the map
    keep = tf.constant(np.asarray(mask)[..., None])
    changed = inputs._replace(
        rois=tf.where(keep, inputs.rois, other.rois),
        roi_features=tf.where(keep[..., None, None, None], inputs.roi_features, other.roi_features),
    )
    again = head(changed, training=False)
    for a, b in zip((out.logits, out.box_deltas), (again.logits, again.box_deltas)):
        np.testing.assert_allclose(a.numpy()[~padded], b.numpy()[~padded], rtol=1e-5, atol=1e-6)


def test_inside_tf_function_equals_eager():
    head = TxI3DHead(CLASSES, **TINY)
    inputs = _inputs(seed=1)
    eager = head(inputs, training=False)
    graph = tf.function(lambda x: head(x, training=False))(inputs)
    for a, b in zip(eager, graph):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_config_round_trip_and_validation():
    head = TxI3DHead(
        5,
        width_multiplier=0.5,
        freeze_bn=True,
        i3d_dropout=0.1,
        num_heads=3,
        num_layers=1,
        hidden_size=16,
        dropout=0.2,
        query_mode="lowres",
        location_embedding=False,
        location_embedding_size=8,
        highres_reduced_channels=4,
        ffn_hidden=32,
        return_attention=False,
        name="both",
    )
    config = head.get_config()
    clone = TxI3DHead.from_config(config)
    assert clone.get_config() == config
    args = dict(
        num_classes=5,
        width_multiplier=0.5,
        freeze_bn=True,
        i3d_dropout=0.1,
        num_heads=3,
        num_layers=1,
        hidden_size=16,
        dropout=0.2,
        query_mode="lowres",
        location_embedding=False,
        location_embedding_size=8,
        highres_reduced_channels=4,
        ffn_hidden=32,
        return_attention=False,
    )
    assert {k: config[k] for k in args} == args
    assert clone.tx_head.query_mode == "lowres" and clone.i3d_head.width_multiplier == 0.5
    with pytest.raises(ValueError, match="i3d_dropout"):
        TxI3DHead(5, i3d_dropout=1.0)
    with pytest.raises(ValueError, match="query_mode"):
        TxI3DHead(5, query_mode="mid")


def test_kinetics_init_reaches_the_i3d_tail(tmp_path):
    # tools/train.py's --init_checkpoint restores `detector.head.tail` with restore_trunk.
    from action_tx.trunks.i3d_checkpoint import restore_trunk, save_trunk

    inputs = _inputs(seed=2)
    source, head = TxI3DHead(CLASSES, **TINY), TxI3DHead(CLASSES, **TINY)
    source(inputs), head(inputs)
    assert head.tail is head.i3d_head.tail
    save_trunk(source.tail, str(tmp_path / "tail"))
    restore_trunk(head.tail, str(tmp_path / "tail"))
    for a, b in zip(source.tail.weights, head.tail.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for w in ("box_deltas/kernel", "box_deltas/bias"):
        weight(head, "i3d_head/" + w).assign(weight(source, "i3d_head/" + w))
    np.testing.assert_allclose(
        head(inputs, training=False).box_deltas,
        source(inputs, training=False).box_deltas,
        rtol=1e-6,
        atol=1e-6,
    )


def test_builder_passes_trunk_width_and_bn_mode():
    assert HEADS["tx_i3d"] is TxI3DHead
    detector = build_detector(
        num_classes=CLASSES,
        trunk="i3d_tiny",
        head="tx_i3d",
        freeze_bn=True,
        head_options=dict(query_mode="lowres"),
        rpn_filters=8,
        post_nms_top_k=4,
    )
    head = detector.head
    assert isinstance(head, TxI3DHead)
    assert head.width_multiplier == 0.25 and head.freeze_bn is True
    assert head.i3d_head.tail.width_multiplier == 0.25 and head.tx_head.query_mode == "lowres"
