"""STAGE's spatio-temporal graph (stage_graph_attention.txt §3.1, §3.3): node geometry, the
batch-wide adjacency matrix ADJ (Fig. 3) and the adjacency-conditioned row softmax (Eq. 6-7).

Pure TF functions (eager and inside tf.function). Node layout: the B clips (keyframes) of a
batch each hold M = N actors followed by O objects (padded); the graph has V = B * M nodes,
node (b, m) at row b * M + m. The paper orders all actors before all objects (Eq. 9); that is
a permutation of the same matrix, and clip-major order lets padded nodes stay in place.
"""

from typing import Optional

import tensorflow as tf

# Logit given to non-edges before the softmax (the authors' code uses -9e15; any value that
# underflows exp() in float32 does). Non-edges are also zeroed after it, so padded rows are 0.
_NO_EDGE_LOGIT = -1e9


def box_centers(boxes: tf.Tensor) -> tf.Tensor:
    """boxes float32 [..., 4] normalized [y1, x1, y2, x2] -> centres [..., 2] as (yc, xc)."""
    return 0.5 * (boxes[..., 0:2] + boxes[..., 2:4])


def box_geometry(boxes: tf.Tensor) -> tf.Tensor:
    """boxes float32 [..., 4] yxyx -> [..., 4] (height, width, x centre, y centre), the values
    §4 appends to each node feature ("bounding boxes height, width and center coordinates"),
    in the order of the authors' code."""
    boxes = tf.cast(boxes, tf.float32)
    height = boxes[..., 2] - boxes[..., 0]
    width = boxes[..., 3] - boxes[..., 1]
    centres = box_centers(boxes)
    return tf.stack([height, width, centres[..., 1], centres[..., 0]], axis=-1)


def clip_links(
    num_clips,
    video_index: Optional[tf.Tensor] = None,
    timestamp: Optional[tf.Tensor] = None,
    keyframe_mask: Optional[tf.Tensor] = None,
    temporal_extent: int = 1,
    keyframe_interval: int = 1,
) -> tf.Tensor:
    """Which clips of a batch are joined in the graph (§3.3).

    A clip is joined to itself and, when temporal_extent > 0, to every other clip of the same
    video whose timestamp differs by at most temporal_extent * keyframe_interval seconds (the
    light blocks of Fig. 3; temporal_extent clips on each side). Without video_index or
    timestamp there are no temporal links. Padded keyframes are joined to nothing.

    Args:
      num_clips: B (int or scalar tensor).
      video_index: int32 [B] or None.  timestamp: int32 [B] seconds, or None.
      keyframe_mask: bool [B] or None (None: every keyframe real).
      temporal_extent: clips on each side joined by temporal edges (0: none).
      keyframe_interval: seconds between consecutive clips (AVA: 1, the granularity τ).
    Returns:
      bool [B, B], symmetric.
    """
    links = tf.eye(num_clips, dtype=tf.bool)
    if temporal_extent > 0 and video_index is not None and timestamp is not None:
        same_video = tf.equal(video_index[:, None], video_index[None, :])
        dt = tf.abs(tf.cast(timestamp[:, None] - timestamp[None, :], tf.int64))
        near = dt <= temporal_extent * keyframe_interval
        links = links | (same_video & near)
    if keyframe_mask is not None:
        valid = tf.cast(keyframe_mask, tf.bool)
        links = links & valid[:, None] & valid[None, :]
    return links


def stage_adjacency(
    boxes: tf.Tensor,
    node_mask: tf.Tensor,
    video_index: Optional[tf.Tensor] = None,
    timestamp: Optional[tf.Tensor] = None,
    keyframe_mask: Optional[tf.Tensor] = None,
    temporal_extent: int = 1,
    use_proximity: bool = True,
    keyframe_interval: int = 1,
) -> tf.Tensor:
    """The batch adjacency matrix ADJ of Fig. 3.

    ADJ[(b,i),(c,j)] = exp(-d_ij) (Eq. 1-2, d = Euclidean distance of the box centres in
    normalized image coordinates) when clips b and c are linked (`clip_links`) and both nodes
    are real; 0 otherwise. use_proximity=False puts 1 on every such edge instead (Table 5,
    "w/o boxes proximity"). The diagonal of a real node is exp(0) = 1, so every real node
    attends at least to itself.

    Args:
      boxes: float32 [B, M, 4] normalized yxyx node boxes (actors then objects per clip).
      node_mask: bool [B, M], true for real nodes.
      video_index, timestamp, keyframe_mask, temporal_extent, keyframe_interval: see
        `clip_links`.
      use_proximity: exp(-d) weights (True) or ones (False) on the edges.
    Returns:
      float32 [B*M, B*M], symmetric, node (b, m) at index b*M + m.
    """
    boxes = tf.stop_gradient(tf.cast(boxes, tf.float32))  # a prior, not a learned quantity
    shape = tf.shape(boxes)
    b, m = shape[0], shape[1]
    links = clip_links(b, video_index, timestamp, keyframe_mask, temporal_extent, keyframe_interval)
    mask = tf.reshape(tf.cast(node_mask, tf.bool), [-1])  # [V]
    clip_of = tf.repeat(tf.range(b), m)  # [V]
    edges = tf.gather(tf.gather(links, clip_of), clip_of, axis=1)  # [V, V]
    edges = edges & mask[:, None] & mask[None, :]
    if not use_proximity:
        return tf.cast(edges, tf.float32)
    centres = tf.reshape(box_centers(boxes), [-1, 2])  # [V, 2]
    diff = centres[:, None, :] - centres[None, :, :]
    proximity = tf.exp(-tf.sqrt(tf.reduce_sum(tf.square(diff), axis=-1)))
    return tf.where(edges, proximity, tf.zeros_like(proximity))


def adjacency_softmax(scores: tf.Tensor, adjacency: tf.Tensor) -> tf.Tensor:
    """Attention weights w = row-softmax(ADJ ⊙ E) over the edges only (Eq. 6-7, Eq. 10).

    α = ADJ ⊙ E (Hadamard product); entries without an edge (ADJ = 0) are excluded from the
    softmax and get exactly zero weight (the authors' code: where(adj > 0, e * adj, -9e15)),
    so rows of padded nodes are all zero.

    Args:
      scores: float32 [..., V, V] attention scores E (Eq. 4 or Eq. 11).
      adjacency: float32 [V, V] ADJ, broadcast over the leading axes (heads).
    Returns:
      float32 [..., V, V]; each row of a node with an edge sums to 1.
    """
    # In float32 under mixed precision: the -9e15 of non-edges and exp(-d) weights need its
    # range and resolution (a layer's autocast makes `adjacency` bfloat16/float16 on the way in).
    scores = tf.cast(scores, tf.float32)
    adjacency = tf.cast(adjacency, tf.float32)
    edges = adjacency > 0
    alpha = tf.where(edges, scores * adjacency, _NO_EDGE_LOGIT)
    weights = tf.nn.softmax(alpha, axis=-1)
    return tf.where(edges, weights, tf.zeros_like(weights))
