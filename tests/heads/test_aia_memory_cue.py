"""AIA's memory learns what only memory can decide (aia_interaction_aggregation.txt §3.1-3.3).

A toy split of per-person features (no trunk). In each video two watchers stand still, and now
and then a mover is in the scene for two keyframes. A watcher is positive at keyframe t when the
mover was there at some keyframe in [t - 6, t - 2] (the long-term `watch` rule of
SYNTHETIC_DATA.md). A watcher's own features are the same for positives and negatives, so on
unseen videos a head without M-blocks can only guess. With M-blocks, the AMU memory and the
temporal position embeddings it must tell them apart. Evaluation is the real inference path:
one pass fills the eval memory, the next one scores.
"""

import keras
import numpy as np
import tensorflow as tf

from action_tx.heads.aia import AIAHead
from action_tx.heads.base import HeadInputs
from object_detection_ext import voc_ap

T, C, N = 16, 16, 3  # keyframes per video, feature width, persons per keyframe
TRAIN_VIDEOS, VAL_VIDEOS = 60, 40
ROIS = np.array([[0, 0, 0.3, 0.3], [0, 0.35, 0.3, 0.65], [0.5, 0.5, 0.9, 0.9]], np.float32)
MOVER, WATCH, STAND = 0, 1, 2  # classes


def _split(videos, rng, proto_watcher, proto_mover):
    """-> features [V, T, N, C], mask [V, T, N], labels [V, T, N, 3]; person 2 is the mover."""
    feats = np.zeros((videos, T, N, C), np.float32)
    mask = np.zeros((videos, T, N), bool)
    labels = np.zeros((videos, T, N, 3), np.float32)
    for v in range(videos):
        watchers = proto_watcher + 0.5 * rng.normal(size=(2, C))
        mover = np.zeros(T, bool)
        t = int(rng.integers(0, 5))
        while t < T:
            mover[t : t + 2] = True
            t += 2 + int(rng.integers(6, 14))
        for t in range(T):
            feats[v, t, :2] = watchers + 0.1 * rng.normal(size=(2, C))
            mask[v, t, :2] = True
            # Every person has a pose, as in AVA, so training stores every person (AIAHead
            # stores the RoIs with a positive label).
            labels[v, t, :2, STAND] = 1.0
            labels[v, t, :2, WATCH] = mover[max(0, t - 6) : max(0, t - 1)].any()
            if mover[t]:
                feats[v, t, 2] = proto_mover + 0.3 * rng.normal(size=C)
                mask[v, t, 2] = True
                labels[v, t, 2, MOVER] = 1.0
    return feats, mask, labels


def _inputs(split, index):
    feats, mask, labels = split
    v, t = index // T, index % T
    return HeadInputs(
        features=tf.zeros([len(index), 1, 1, 1, C]),
        rois=tf.constant(np.tile(ROIS, (len(index), 1, 1))),
        roi_mask=tf.constant(mask[v, t]),
        roi_features=tf.constant(feats[v, t][:, :, None, None, None]),
        roi_scores=tf.ones([len(index), N]),
        video_index=tf.constant(v, tf.int32),
        timestamp=tf.constant(t, tf.int32),
        keyframe_index=tf.constant(index, tf.int32),
        roi_labels=tf.constant(labels[v, t]),
    )


def _train_and_score(blocks, memory_window, steps=1200, seed=0, lr=1e-3, batch=16, **head_args):
    """-> (val VOC AP of `watch` on the watchers at keyframes without the mover, positive rate).
    The arguments past memory_window are the knobs of the budget figures in
    docs/notes/2026-11-21-aia-memory.md."""
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    proto_watcher, proto_mover = rng.normal(size=C), rng.normal(size=C)
    train = _split(TRAIN_VIDEOS, rng, proto_watcher, proto_mover)
    val = _split(VAL_VIDEOS, rng, proto_watcher, proto_mover)
    head = AIAHead(
        3,
        blocks=blocks,
        structure="serial",
        memory_window=memory_window,
        memory_size=TRAIN_VIDEOS * T,
        hidden_size=32,
        dropout=0.0,
        memory_persons=N,
        **head_args,
    )
    optimizer = keras.optimizers.Adam(lr)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            weights = tf.cast(x.roi_mask, tf.float32)[..., None]
            loss = tf.reduce_sum(
                tf.nn.sigmoid_cross_entropy_with_logits(x.roi_labels, head(x, training=True).logits)
                * weights
            ) / tf.reduce_sum(weights)
        grads = tape.gradient(loss, head.trainable_variables)
        # object_proj exists without O-blocks and gets no gradient.
        optimizer.apply_gradients(
            [(g, v) for g, v in zip(grads, head.trainable_variables) if g is not None]
        )

    for _ in range(steps):
        step(_inputs(train, rng.choice(TRAIN_VIDEOS * T, batch, replace=False)))
    head.reset_inference_memory()
    index = np.arange(VAL_VIDEOS * T)
    for _ in range(head.inference_passes):  # the first of two passes fills the eval memory
        logits = head(_inputs(val, index), training=False).logits.numpy()
    # Keyframes without the mover: nothing in the keyframe itself tells the watchers apart.
    still = ~val[1][index // T, index % T, 2]
    watchers = val[2][index // T, index % T][still, :2, WATCH].ravel() > 0
    ranked = watchers[voc_ap.descending_score_order(logits[still, :2, WATCH].ravel())]
    return voc_ap.average_precision(ranked, int(watchers.sum())), watchers.mean()


def test_memory_decides_a_long_term_watcher_that_no_memory_cannot():
    with_memory, positives = _train_and_score("P,M", memory_window=8)
    without_memory, _ = _train_and_score("P,P", memory_window=0)
    assert 0.4 < positives < 0.75, positives
    assert without_memory < positives + 0.1, (without_memory, positives)
    assert with_memory > 0.8 and with_memory > without_memory + 0.15, (with_memory, without_memory)
