"""Pure TF helpers of the hierarchical Graph-RNN head (`hgrnn.py`, hgrnn_graph_rnn.txt).

`temporal_neighbours` finds the 2l+1 keyframes of the scene RNN's window (§3.1 eq. 1) among the
entries of a batch; `masked_max` and `max_over_others` are the node max-poolings of §3.2.
"""

from typing import Optional, Tuple

import tensorflow as tf


def temporal_neighbours(
    video_index: Optional[tf.Tensor],
    timestamp: Optional[tf.Tensor],
    keyframe_mask: Optional[tf.Tensor],
    window: int,
    batch_size: tf.Tensor,
) -> Tuple[tf.Tensor, tf.Tensor]:
    """For each batch entry b, the entries holding its keyframes t-l .. t+l.

    A neighbour at offset k is the batch entry j with the same `video_index`, timestamp
    `timestamp[b] + k` (keyframes are whole seconds, one per second in AVA: §3.1 "l annotated
    frames before and after frame t") and `keyframe_mask[j]` true. Missing keyframes (video
    start/end, chunk borders, an end-to-end batch of unrelated keyframes) are masked. The
    centre k = 0 is always entry b itself.

    Args:
      video_index: int [B] or None (None: no neighbours, every entry alone).
      timestamp: int [B] seconds, or None (likewise).
      keyframe_mask: bool [B] or None (None: all real); padded entries are nobody's neighbour.
      window: l >= 0, python int.
      batch_size: B, scalar int tensor (or int).

    Returns:
      index: int32 [B, 2l+1] batch entry of offset k = -l..l (b itself where missing).
      valid: bool [B, 2l+1] true where that neighbour exists; valid[:, l] is all true.
    """
    offsets = tf.range(-window, window + 1, dtype=tf.int32)  # [L]
    own = tf.range(batch_size, dtype=tf.int32)  # [B]
    centre = tf.equal(offsets, 0)[None, :]  # [1, L]
    if video_index is None or timestamp is None or window == 0:
        index = tf.tile(own[:, None], [1, 2 * window + 1])
        return index, tf.broadcast_to(centre, tf.shape(index))
    video = tf.cast(video_index, tf.int32)
    time = tf.cast(timestamp, tf.int32)
    real = (
        tf.ones_like(video, tf.bool) if keyframe_mask is None else tf.cast(keyframe_mask, tf.bool)
    )
    # match[b, j, k]: entry j is entry b's neighbour at offset k.
    same_video = tf.equal(video[:, None], video[None, :]) & real[None, :]  # [B, B]
    dt = time[None, :] - time[:, None]  # [B, B]
    match = same_video[:, :, None] & tf.equal(dt[:, :, None], offsets[None, None, :])
    valid = tf.reduce_any(match, axis=1)  # [B, L]
    index = tf.argmax(tf.cast(match, tf.int32), axis=1, output_type=tf.int32)  # first match
    index = tf.where(valid, index, own[:, None])
    # The centre is the entry itself, also for a padded keyframe (its own outputs are unused).
    index = tf.where(centre, own[:, None], index)
    valid = valid | centre
    return index, valid


def masked_max(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Max over axis -2 of `values` [..., N, D] where `mask` [..., N]; 0 when nothing is valid."""
    mask = tf.cast(mask, tf.bool)
    lowest = tf.constant(values.dtype.min, values.dtype)
    pooled = tf.reduce_max(tf.where(mask[..., None], values, lowest), axis=-2)
    return tf.where(tf.reduce_any(mask, axis=-1)[..., None], pooled, tf.zeros_like(pooled))


def max_over_others(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """For each node i, the per-channel max of `values` over the OTHER valid nodes j != i.

    Two largest values per channel (top_k over the nodes): node i takes the largest unless it
    is itself the argmax, then the second. Ties give equal values either way, so the result is
    exactly equivariant to permutations of the nodes. O(N D) memory instead of O(N^2 D).

    Args:
      values: float [B, N, D]; mask: bool [B, N].

    Returns:
      float [B, N, D]; 0 for a node without valid others (and at padded nodes' own rows the
      max over the valid nodes, which the caller ignores).
    """
    mask = tf.cast(mask, tf.bool)
    lowest = tf.constant(values.dtype.min, values.dtype)
    masked = tf.where(mask[..., None], values, lowest)
    n = tf.shape(values)[1]
    # Pad one lowest node so top_k(2) works for N = 1 (and N = 0).
    padded = tf.concat([masked, tf.fill(tf.shape(masked[:, :1]), lowest)], axis=1)
    top = tf.math.top_k(tf.transpose(padded, [0, 2, 1]), k=2)  # [B, D, 2]
    first, second = top.values[..., 0], top.values[..., 1]  # [B, D]
    arg = top.indices[..., 0]  # [B, D]
    is_arg = tf.equal(tf.range(n)[None, :, None], arg[:, None, :])  # [B, N, D]
    others = tf.where(is_arg, second[:, None, :], first[:, None, :])
    # No valid other node: the max is `lowest` -> 0 (an empty max-pool contributes nothing).
    return tf.where(others > lowest / 2, others, tf.zeros_like(others))
