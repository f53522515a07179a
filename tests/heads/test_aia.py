"""AIA head (aia_interaction_aggregation.txt): AMU penalty, dense serial weights, masking,
structures, config round trip, both input modes, training writes the memory."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from action_tx.heads.aia import AIAHead
from action_tx.heads.aia_blocks import InteractionBlock, amu_penalty, dense_query
from action_tx.heads.base import HeadInputs
from head_weights import dense, weight

B, N, O, C, K = 3, 4, 3, 6, 16


def _inputs(seed=0, tubes=(1, 1, 1), labels=True):
    """Feature-mode shapes by default (T' = S = 1); tubes=(T', S, S) gives end-to-end ones."""
    rng = np.random.default_rng(seed)
    return HeadInputs(
        features=tf.zeros([B, tubes[0], 3, 3, C]),
        rois=tf.zeros([B, N, 4]),
        roi_mask=tf.constant([[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]]) > 0,
        roi_features=tf.constant(rng.normal(size=[B, N, *tubes, C]), tf.float32),
        roi_scores=tf.constant([[0.9, 0.8, 0, 0], [0.5, 0.9, 0.7, 0], [0.6, 0, 0, 0]]),
        objects=tf.zeros([B, O, 4]),
        object_mask=tf.constant([[1, 0, 0], [1, 1, 0], [0, 0, 0]]) > 0,
        object_features=tf.constant(rng.normal(size=[B, O, *tubes, C]), tf.float32),
        video_index=tf.constant([0, 0, 1]),
        timestamp=tf.constant([3, 4, 2]),
        keyframe_index=tf.constant([2, 3, 9]),
        roi_labels=tf.constant(rng.integers(0, 2, size=[B, N, 5]), tf.float32) if labels else None,
    )


def _head(**kwargs):
    keras.utils.set_random_seed(0)
    args = dict(num_classes=5, memory_window=2, memory_size=K, hidden_size=8, dropout=0.0)
    args.update(kwargs)
    return AIAHead(**args)


def test_amu_penalty_hand_set_tags():
    # w = min(err/δ, δ/err), err = 2: δ=4 -> 0.5, δ=2 -> 1, δ=1 -> 0.5, δ=8 -> 0.25, δ=0 -> 0.
    got = amu_penalty(tf.constant([4.0, 2.0, 1.0, 8.0, 0.0]), tf.constant(2.0))
    np.testing.assert_allclose(got.numpy(), [0.5, 1.0, 0.5, 0.25, 0.0], rtol=1e-6)
    # Before the first step err = inf (Algorithm 1 line 2): every read feature is zeroed.
    got = amu_penalty(tf.constant([4.0, 0.0]), tf.constant(math.inf))
    np.testing.assert_array_equal(got.numpy(), [0.0, 0.0])


def test_head_reads_memory_with_penalty():
    head = _head(blocks=["M"])
    x = _inputs()
    head(x, training=False)  # builds (and fills the eval table)
    head.reset_inference_memory()
    memory = head.memory.train
    assert memory.dim == C  # the table holds trunk features P_t (§3.1)
    feats = np.ones([3, 5, C], np.float32)
    # Keyframes 1, 2, 4 of video 0 at t = 2, 3, 5, tagged with losses 4, 2, 1.
    memory.write(
        tf.constant([1, 2, 4]),
        tf.constant([0, 0, 0]),
        tf.constant([2, 3, 5]),
        feats * np.array([1, 2, 3], np.float32)[:, None, None],
        tf.constant([[1, 1, 0, 0, 0]] * 3) > 0,
        loss_tag=tf.constant([4.0, 2.0, 1.0]),
    )
    head.current_loss.assign(2.0)
    current, current_mask = head.select_persons(
        tf.reduce_mean(x.roi_features, axis=[2, 3, 4]), x.rois, x.roi_mask, x.roi_scores, None
    )
    context, mask = head.memory_context(x, current, current_mask, training=True)
    context = tf.reshape(context, [B, 5, 5, C]).numpy()  # [B, 2L+1, P, C]
    mask = tf.reshape(mask, [B, 5, 5]).numpy()
    # Keyframe index 3 (video 0, t=4): offsets -2..2 are indices 1, 2, 3, 4, 5.
    # index 1: value 1 x w(4)=0.5; index 2: 2 x w(2)=1; index 4: 3 x w(1)=0.5 -> 1.5.
    np.testing.assert_allclose(context[1, 0, 0], 0.5)
    np.testing.assert_allclose(context[1, 1, 0], 2.0)
    np.testing.assert_allclose(context[1, 3, 0], 1.5)
    assert mask[1, 0].tolist() == [True, True, False, False, False]
    assert not mask[1, 4].any()  # index 5: never written
    # Offset 0 holds the current persons (best score first: RoIs 1, 0, 2 of keyframe 1).
    np.testing.assert_allclose(context[1, 2, :3], current.numpy()[1, :3])
    assert mask[1, 2].tolist() == [True, True, True, False, False]
    # Video 1's keyframe 9 sees nothing of video 0.
    assert not mask[2, [0, 1, 3, 4]].any()
    # Inference reads the eval table, unpenalised (empty here).
    _, eval_mask = head.memory_context(x, current, current_mask, training=False)
    assert not tf.reshape(eval_mask, [B, 5, 5]).numpy()[1, [0, 1, 3]].any()


def test_every_block_weight_gets_a_gradient():
    # The block starts as the identity (W_o = 0) but must be able to leave it: a zero W_o
    # placed before LayerNorm + ReLU gives ReLU(0), whose gradient is 0 for every weight.
    block = InteractionBlock(hidden_size=8, dropout=0.0, temporal_positions=2)
    rng = np.random.default_rng(3)
    query = tf.constant(rng.normal(size=[2, 3, 8]), tf.float32)
    context = tf.constant(rng.normal(size=[2, 4, 8]), tf.float32)
    mask = tf.constant([[True, True, True, False], [True, False, True, True]])
    out, _ = block(query, context, mask)
    np.testing.assert_allclose(out.numpy(), query.numpy())  # identity at init
    direction = tf.constant(rng.normal(size=[2, 3, 8]), tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(block(query, context, mask)[0] * direction)
    grads = tape.gradient(loss, block.trainable_variables)
    assert {v.path.split("/", 1)[1] for v in block.trainable_variables} == {
        "position_key",
        "position_value",
        "query/kernel",
        "query/bias",
        "key/kernel",
        "key/bias",
        "value/kernel",
        "value/bias",
        "out/kernel",
        "out/bias",
    }
    # At W_o = 0 only W_o gets a gradient (the rest sits behind it); one SGD step on W_o
    # then opens the path to every other weight.
    by_path = {v.path: g for v, g in zip(block.trainable_variables, grads)}
    assert np.abs(by_path[weight(block, "out/kernel").path].numpy()).max() > 0
    for v, g in zip(block.trainable_variables, grads):
        v.assign_sub(0.1 * g)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(block(query, context, mask)[0] * direction)
    for v, g in zip(block.trainable_variables, tape.gradient(loss, block.trainable_variables)):
        assert g is not None and np.abs(g.numpy()).max() > 0, v.path


def test_memory_keeps_each_person_once():
    head = _head(blocks=["M"], memory_persons=3)
    persons = tf.constant(np.arange(5, dtype=np.float32)[None, :, None] * np.ones([1, 1, 8]))
    # RoIs 0, 1, 2 cover one person (IoU 0.8 / 0.64 with RoI 0), RoI 3 another, RoI 4 a third.
    rois = tf.constant(
        [
            [
                [0.1, 0.1, 0.5, 0.5],
                [0.1, 0.1, 0.5, 0.42],
                [0.1, 0.1, 0.42, 0.42],
                [0.5, 0.5, 0.9, 0.9],
                [0.0, 0.6, 0.3, 0.9],
            ]
        ]
    )
    mask = tf.constant([[True] * 5])
    # Training: IoU scores with the person; RoI 4 is background (no label), never stored.
    scores = tf.constant([[0.8, 1.0, 0.64, 0.9, 0.0]])
    labels = tf.constant([[[1.0, 0], [1, 0], [1, 0], [0, 1], [0, 0]]])
    got, kept = head.select_persons(persons, rois, mask, scores, labels)
    assert kept.numpy().tolist() == [[True, True, False]]
    np.testing.assert_array_equal(got.numpy()[0, :2, 0], [1.0, 3.0])  # best box of each
    # Inference: every real RoI is a candidate, by person score.
    scores = tf.constant([[0.9, 0.3, 0.2, 0.5, 0.7]])
    got, kept = head.select_persons(persons, rois, mask, scores, None)
    assert kept.numpy().tolist() == [[True, True, True]]
    np.testing.assert_array_equal(got.numpy()[0, :, 0], [0.0, 4.0, 3.0])


def test_dense_serial_weights_softmax_normalised():
    # Per channel: weights [0, ln 3] -> softmax [1/4, 3/4]; E_0 = 1, E_1 = 5 -> 4.
    weights = tf.constant([[0.0, 0.0], [math.log(3.0), 0.0]])
    outputs = [tf.ones([1, 1, 2]), 5.0 * tf.ones([1, 1, 2])]
    np.testing.assert_allclose(dense_query(weights, outputs).numpy()[0, 0], [4.0, 3.0], rtol=1e-6)
    head = _head(structure="dense")
    head(_inputs(), training=False)
    assert [tuple(w.shape) for w in head.dense_weights] == [(i, 8) for i in range(1, 6)]
    # Initialised as the release does: a serial stack, block i's query is block i-1's output.
    outputs = [float(j + 1) * tf.ones([1, 1, 8]) for j in range(5)]
    for i, w in enumerate(head.dense_weights, start=1):
        np.testing.assert_allclose(
            dense_query(w, outputs[:i]).numpy(), outputs[i - 1].numpy(), rtol=1e-4
        )


def test_padded_entries_get_zero_attention():
    keras.utils.set_random_seed(0)
    block = InteractionBlock(hidden_size=4, dropout=0.0)
    rng = np.random.default_rng(1)
    query = tf.constant(rng.normal(size=[2, 3, 4]), tf.float32)
    context = tf.constant(rng.normal(size=[2, 5, 4]), tf.float32)
    mask = tf.constant([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0]]) > 0
    out, weights = block(query, context, mask)
    w = weights.numpy()
    assert np.all(w[0][:, [2, 4]] == 0.0)
    np.testing.assert_allclose(w[0].sum(-1), 1.0, rtol=1e-6)
    assert np.all(w[1] == 0.0)  # no real key: no attention
    np.testing.assert_allclose(out.numpy()[1], query.numpy()[1])  # identity (residual only)
    # Padded persons, objects and memory slots cannot change a real person's logits.
    for blocks in (["P"], ["O"], ["M"]):
        head = _head(blocks=blocks)
        x = _inputs()
        before = head(x, training=False).logits.numpy()
        head.reset_inference_memory()
        noisy = x._replace(
            roi_features=tf.where(x.roi_mask[:, :, None, None, None, None], x.roi_features, 100.0),
            object_features=tf.where(
                x.object_mask[:, :, None, None, None, None], x.object_features, -100.0
            ),
        )
        after = head(noisy, training=False).logits.numpy()
        real = x.roi_mask.numpy()
        np.testing.assert_allclose(after[real], before[real], rtol=1e-5, atol=1e-6)
        assert np.all(after[~real] == 0.0)


def test_temporal_positions_added_per_offset():
    # Context of W = 2 offsets x 2 entries: offset 0 = entries 0, 1; offset 1 = entries 2, 3.
    block = InteractionBlock(hidden_size=4, dropout=0.0, temporal_positions=2)
    rng = np.random.default_rng(2)
    query = tf.constant(rng.normal(size=[1, 1, 4]), tf.float32)
    context = tf.constant(np.repeat(rng.normal(size=[1, 1, 4]), 4, axis=1), tf.float32)
    mask = tf.constant([[True, False, True, False]])
    block(query, context, mask)
    assert block.position_key.shape == (2, 4) and block.position_value.shape == (2, 4)
    # Zero-initialised: identical entries at both offsets get equal attention (the release's).
    _, weights = block(query, context, mask)
    np.testing.assert_allclose(weights.numpy()[0, 0], [0.5, 0.0, 0.5, 0.0], rtol=1e-6)
    pos_k = np.array([[0, 0, 0, 0], [1, -1, 2, 0.5]], np.float32)
    pos_v = np.array([[0, 0, 0, 0], [3, -1, 0, 2]], np.float32)  # not constant: LayerNorm
    block.position_key.assign(pos_k)
    block.position_value.assign(pos_v)
    _, weights = block(query, context, mask)
    # By hand: logits q·(k + pos_k[offset]) / sqrt(D) over the two real entries.
    q = dense(query.numpy(), block, "query")[0, 0]
    k = dense(context.numpy(), block, "key")[0, 0]
    logits = np.array([q @ k, q @ (k + pos_k[1])]) / 2.0
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(weights.numpy()[0, 0, [0, 2]], expected, rtol=1e-5)
    # The same feature at offset 0 or offset 1 now gives different outputs (values differ;
    # the output projection starts at zero, so give it weights first).
    weight(block, "out/kernel").assign(np.eye(4, dtype=np.float32))
    only_first = block(query, context, tf.constant([[True, False, False, False]]))[0]
    only_second = block(query, context, tf.constant([[False, False, True, False]]))[0]
    assert not np.allclose(only_first.numpy(), only_second.numpy())
    with pytest.raises(ValueError, match="multiple of temporal_positions"):
        block(query, context[:, :3], mask[:, :3])
    assert InteractionBlock.from_config(block.get_config()).get_config() == block.get_config()


def test_only_memory_blocks_with_a_table_get_positions():
    head = _head(blocks=["P", "O", "M"])
    head(_inputs(), training=False)
    assert [b.temporal_positions for b in head.interaction_blocks] == [0, 0, 5]  # 2L + 1, L = 2
    assert head.interaction_blocks[2].position_key.shape == (5, 8)
    for kwargs in (dict(temporal_position=False), dict(memory_window=0)):
        head = _head(blocks=["P", "O", "M"], **kwargs)
        assert [b.temporal_positions for b in head.interaction_blocks] == [0, 0, 0]


@pytest.mark.parametrize("tubes", [(1, 1, 1), (2, 3, 3)], ids=["feature_mode", "end_to_end"])
def test_structures_run_in_both_modes(tubes):
    logits = {}
    for structure in ("parallel", "serial", "dense"):
        head = _head(structure=structure)
        out = head(_inputs(tubes=tubes), training=True).logits.numpy()
        assert out.shape == (B, N, 5) and np.all(np.isfinite(out))
        logits[structure] = out
    # Zero-initialised block outputs make every structure start as the identity.
    np.testing.assert_allclose(logits["serial"], logits["dense"], rtol=1e-5, atol=1e-6)


def test_get_config_round_trip():
    head = _head(
        blocks="P,M,O",
        structure="parallel",
        use_amu=False,
        memory_dtype="float16",
        memory_persons=3,
        temporal_position=False,
    )
    config = head.get_config()
    assert config["blocks"] == ["P", "M", "O"]
    again = AIAHead.from_config(config)
    assert again.get_config() == config
    with pytest.raises(ValueError, match="blocks"):
        AIAHead(5, blocks=["P", "X"])
    with pytest.raises(ValueError, match="memory_size"):
        AIAHead(5, memory_size=0)
    assert AIAHead(5, memory_window=0).inference_passes == 1


def test_missing_objects_is_a_clear_error():
    head = _head(blocks=["O"])
    with pytest.raises(ValueError, match="use_objects=True"):
        head(_inputs()._replace(object_features=None), training=False)


def test_training_lowers_loss_and_writes_memory():
    head = _head(blocks=["P", "O", "M"])
    x = _inputs()
    head(x, training=False)
    head.reset_inference_memory()
    assert np.all(head.memory.train.video.numpy() == -1)
    optimizer = keras.optimizers.Adam(0.05)
    labels, mask = x.roi_labels, tf.cast(x.roi_mask, tf.float32)

    def step():  # eager: tracing costs more than 20 tiny steps
        with tf.GradientTape() as tape:
            logits = head(x, training=True).logits
            loss = tf.reduce_sum(
                tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits), -1) * mask
            ) / tf.reduce_sum(mask)
        grads = tape.gradient(loss, head.trainable_variables)
        optimizer.apply_gradients(zip(grads, head.trainable_variables))
        return loss

    losses = [float(step()) for _ in range(8)]
    assert losses[-1] < 0.7 * losses[0]
    # err is the latest step's loss (it equals the loss computed from the same logits).
    np.testing.assert_allclose(head.current_loss.numpy(), losses[-1], rtol=1e-5)
    video = head.memory.train.video.numpy()
    assert video[[2, 3, 9]].tolist() == [0, 0, 1] and np.all(np.delete(video, [2, 3, 9]) == -1)
    np.testing.assert_allclose(head.memory.train.loss_tag.numpy()[[2, 3, 9]], losses[-1], rtol=1e-5)
    # Persons with labels are stored, best score first; padding stays empty.
    has_label = (x.roi_labels.numpy().max(-1) > 0) & x.roi_mask.numpy()
    assert head.memory.train.mask.numpy()[[2, 3, 9]].sum(1).tolist() == has_label.sum(1).tolist()
    # What is stored is P_t itself, the pooled RoI features (§3.1), not a learned projection.
    pooled, scores = x.roi_features.numpy()[:, :, 0, 0, 0], x.roi_scores.numpy()
    for b, row in enumerate([2, 3, 9]):
        kept = [i for i in np.argsort(-scores[b], kind="stable") if has_label[b, i]]
        np.testing.assert_allclose(
            head.memory.train.features.numpy()[row, : len(kept)], pooled[b, kept], rtol=1e-6
        )
    assert np.all(head.memory.eval.video.numpy() == -1)  # training never touches it
