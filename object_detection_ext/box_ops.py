"""Box math for batched, padded, normalized boxes, on Model Garden's `official.vision.ops.box_ops`.

Conventions (the whole package):
- boxes are float32 normalized `[y1, x1, y2, x2]` (0..1 of the image height/width);
- batched tensors are `[B, N, 4]` with a bool mask `[B, N]` (True = real box, False = padding);
- deltas are Faster R-CNN `[dy, dx, dh, dw]` (centre shift relative to the reference box size,
  log size ratio), optionally multiplied by per-coordinate `weights`.

The Faster R-CNN encoding is invariant to a per-axis scaling of the coordinates (dy, dx are
relative to the reference height/width, dh, dw are log ratios), so encoding normalized boxes gives
the same deltas as encoding pixel boxes: Model Garden's `encode_boxes`/`decode_boxes` are used as
they are, without converting to pixels. Only IoU on non-square images depends on the units; it is
computed here in normalized units unless `image_size` is given (then in pixels, what Model Garden
and the AVA evaluator do).
"""

from typing import Optional, Sequence, Tuple

import tensorflow as tf
from official.vision.ops import box_ops as mg_box_ops

# Second stage (RoI head) weights: the refinement of an already good proposal is small, so the
# deltas are scaled up to about unit variance (Fast R-CNN / Detectron / TF OD API default).
SECOND_STAGE_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
# RPN weights: anchors are far from the boxes, the raw deltas already have about unit scale;
# Faster R-CNN, Detectron2 and Model Garden's RPN use unweighted deltas.
RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)


def _check_last_dim(boxes: tf.Tensor, name: str) -> None:
    shape = tf.TensorShape(getattr(boxes, "shape", None))
    if shape.rank is not None and shape[-1] is not None and shape[-1] != 4:
        raise ValueError(f"{name}: last dimension must be 4 ([y1, x1, y2, x2]), got shape {shape}")


def pairwise_iou(
    boxes1: tf.Tensor,
    boxes2: tf.Tensor,
    mask1: Optional[tf.Tensor] = None,
    mask2: Optional[tf.Tensor] = None,
    image_size: Optional[Sequence[float]] = None,
) -> tf.Tensor:
    """IoU of every box of `boxes1` with every box of `boxes2`, per batch element.

    Args:
      boxes1: float [B, N, 4] normalized yxyx.
      boxes2: float [B, M, 4] normalized yxyx.
      mask1: optional bool [B, N], False for padding rows.
      mask2: optional bool [B, M], False for padding columns.
      image_size: optional (height, width): compute the IoU in pixels (differs from normalized
        units only for non-square images).

    Returns:
      float32 [B, N, M] IoU in [0, 1] (0 for empty boxes); -1 where either box is padding
      (Model Garden's `bbox_overlap` convention: argmax/threshold logic never picks padding).
    """
    _check_last_dim(boxes1, "boxes1")
    _check_last_dim(boxes2, "boxes2")
    boxes1 = tf.cast(boxes1, tf.float32)
    boxes2 = tf.cast(boxes2, tf.float32)
    if image_size is not None:
        scale = tf.constant([image_size[0], image_size[1]] * 2, tf.float32)
        boxes1, boxes2 = boxes1 * scale, boxes2 * scale
    # Own arithmetic rather than Model Garden's `bbox_overlap`: that one treats any box whose
    # coordinates are all negative as padding, which is wrong for anchors partly outside the image.
    y1a, x1a, y2a, x2a = (boxes1[..., i][:, :, None] for i in range(4))
    y1b, x1b, y2b, x2b = (boxes2[..., i][:, None, :] for i in range(4))
    inter = tf.maximum(tf.minimum(y2a, y2b) - tf.maximum(y1a, y1b), 0.0) * tf.maximum(
        tf.minimum(x2a, x2b) - tf.maximum(x1a, x1b), 0.0
    )
    union = box_area(boxes1)[:, :, None] + box_area(boxes2)[:, None, :] - inter
    iou = tf.math.divide_no_nan(inter, union)
    valid = tf.ones_like(iou, tf.bool)
    if mask1 is not None:
        valid &= tf.cast(mask1, tf.bool)[:, :, None]
    if mask2 is not None:
        valid &= tf.cast(mask2, tf.bool)[:, None, :]
    return tf.where(valid, iou, -1.0)


def encode_boxes(
    boxes: tf.Tensor,
    reference: tf.Tensor,
    weights: Optional[Sequence[float]] = SECOND_STAGE_WEIGHTS,
) -> tf.Tensor:
    """Faster R-CNN deltas of `boxes` relative to `reference` (anchors or RoIs).

    Args:
      boxes: float [..., 4] normalized yxyx targets.
      reference: float [..., 4] (same or broadcastable shape) anchors/RoIs.
      weights: (wy, wx, wh, ww) multipliers; `SECOND_STAGE_WEIGHTS` (10, 10, 5, 5) for the RoI
        head, `RPN_WEIGHTS` (1, 1, 1, 1) for the RPN, None for no scaling.

    Returns:
      float32 [..., 4] deltas [dy, dx, dh, dw] * weights.
    """
    _check_last_dim(boxes, "boxes")
    return mg_box_ops.encode_boxes(
        tf.cast(boxes, tf.float32),
        tf.cast(reference, tf.float32),
        weights=list(weights) if weights else None,
    )


def decode_boxes(
    deltas: tf.Tensor,
    reference: tf.Tensor,
    weights: Optional[Sequence[float]] = SECOND_STAGE_WEIGHTS,
) -> tf.Tensor:
    """Inverse of `encode_boxes`: boxes [..., 4] normalized yxyx from deltas [..., 4].

    dh/dw are clipped at log(1000/16) before exp (Model Garden), so huge deltas cannot overflow.
    """
    _check_last_dim(deltas, "deltas")
    return mg_box_ops.decode_boxes(
        tf.cast(deltas, tf.float32),
        tf.cast(reference, tf.float32),
        weights=list(weights) if weights else None,
    )


def clip_boxes(boxes: tf.Tensor) -> tf.Tensor:
    """Clips normalized boxes [..., 4] to the image, [0, 1]."""
    return tf.clip_by_value(tf.cast(boxes, tf.float32), 0.0, 1.0)


def box_area(boxes: tf.Tensor) -> tf.Tensor:
    """Area [...] of boxes [..., 4] (0 for degenerate boxes)."""
    return tf.maximum(boxes[..., 2] - boxes[..., 0], 0.0) * tf.maximum(
        boxes[..., 3] - boxes[..., 1], 0.0
    )


def inside_box_mask(boxes: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """Which pixels of a height x width image lie inside each box: pixel (i, j), centre
    ((i + 0.5) / height, (j + 0.5) / width) in normalized units, is inside [y1, x1, y2, x2]
    when y1 <= its y <= y2 and x1 <= its x <= x2.

    Args:
      boxes: float [..., 4] normalized yxyx; height, width: int (Python or scalar tensor).
    Returns:
      bool [..., height, width].
    """
    boxes = tf.cast(boxes, tf.float32)
    ys = (tf.range(height, dtype=tf.float32) + 0.5) / tf.cast(height, tf.float32)  # [H]
    xs = (tf.range(width, dtype=tf.float32) + 0.5) / tf.cast(width, tf.float32)  # [W]
    y1, x1, y2, x2 = (boxes[..., k, None] for k in range(4))  # [..., 1] each
    rows = (ys >= y1) & (ys <= y2)  # [..., H]
    cols = (xs >= x1) & (xs <= x2)  # [..., W]
    return rows[..., :, None] & cols[..., None, :]


def to_absolute(boxes: tf.Tensor, image_size: Sequence[float]) -> tf.Tensor:
    """Normalized yxyx [..., 4] -> pixel yxyx for an image of (height, width)."""
    return mg_box_ops.denormalize_boxes(tf.cast(boxes, tf.float32), list(image_size))


def to_normalized(boxes: tf.Tensor, image_size: Sequence[float]) -> tf.Tensor:
    """Pixel yxyx [..., 4] -> normalized yxyx for an image of (height, width)."""
    return mg_box_ops.normalize_boxes(tf.cast(boxes, tf.float32), list(image_size))


def jitter_boxes(
    boxes: tf.Tensor,
    seed: tf.Tensor,
    mask: Optional[tf.Tensor] = None,
    *,
    noise_scale: float = 0.025,
) -> tf.Tensor:
    """Randomly jitters boxes (training augmentation of proposals/GT), deterministic under `seed`.

    Same distribution as Model Garden's `jitter_boxes` (centre shifted by N(0, s) x size, size
    scaled by exp(N(0, s))), which is exactly `decode_boxes(noise, boxes, weights=None)`; Model
    Garden's version draws from the stateful `tf.random.normal`, which cannot be seeded per call.

    Args:
      boxes: float [..., 4] normalized yxyx.
      seed: int [2] stateless seed (e.g. `[global_seed, step]`).
      mask: optional bool [...]: padding boxes are returned unchanged.
      noise_scale: standard deviation s.

    Returns:
      float32 [..., 4] jittered boxes clipped to [0, 1].
    """
    boxes = tf.cast(boxes, tf.float32)
    noise = tf.random.stateless_normal(tf.shape(boxes), seed=seed, stddev=noise_scale)
    out = clip_boxes(decode_boxes(noise, boxes, weights=None))
    if mask is not None:
        out = tf.where(tf.cast(mask, tf.bool)[..., None], out, boxes)
    return out


def batched_nms(
    boxes: tf.Tensor,
    scores: tf.Tensor,
    mask: tf.Tensor,
    *,
    max_output_size: int,
    iou_threshold: float,
    score_threshold: float = float("-inf"),
) -> Tuple[tf.Tensor, tf.Tensor]:
    """Class-agnostic NMS per batch element, padded to a fixed size.

    Uses TF's C++ kernel `NonMaxSuppressionV4` (padded output) on each image in a `tf.map_fn`:
    it runs in tf.function and exports in a SavedModel. (`tf.image.non_max_suppression_padded`
    and Model Garden's `sorted_non_max_suppression_padded` are Python while-loops over IoU tiles.)

    Args:
      boxes: float [B, N, 4] normalized yxyx.
      scores: float [B, N].
      mask: bool [B, N]; padding never survives.
      max_output_size: K, python int.
      iou_threshold: a box is suppressed when its IoU with a kept higher-scoring box is > this.
      score_threshold: boxes with score <= this are dropped.

    Returns:
      indices: int32 [B, K] into N, in descending score order, 0 for padding slots.
      valid: bool [B, K] true for real detections.
    """
    boxes = tf.cast(boxes, tf.float32)
    scores = tf.cast(scores, tf.float32)
    # Padding gets the lowest float and a threshold just above it, so it is never selected.
    lowest = tf.float32.min
    threshold = max(float(score_threshold), lowest / 2.0)
    scores = tf.where(tf.cast(mask, tf.bool), scores, lowest)

    def one(args):
        b, s = args
        idx, num = tf.raw_ops.NonMaxSuppressionV4(
            boxes=b,
            scores=s,
            max_output_size=max_output_size,
            iou_threshold=iou_threshold,
            score_threshold=threshold,
            pad_to_max_output_size=True,
        )
        return idx, tf.range(max_output_size) < num

    indices, valid = tf.map_fn(
        one,
        (boxes, scores),
        fn_output_signature=(
            tf.TensorSpec([max_output_size], tf.int32),
            tf.TensorSpec([max_output_size], tf.bool),
        ),
    )
    return tf.where(valid, indices, 0), valid
