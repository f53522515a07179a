"""Training augmentation as small pure TF functions (no Python randomness, no py_function).

Boxes are normalized [y1, x1, y2, x2] float32 [N, 4]. Randomness is drawn only by the
`sample_*` functions, from stateless ops with an explicit seed [2] int32/int64, so the
pipeline is deterministic and its iterator checkpointable; the `apply` functions are plain math
and are tested against hand-computed boxes.
"""

from __future__ import annotations

import tensorflow as tf


def flip_boxes(boxes: tf.Tensor) -> tf.Tensor:
    """Mirrors boxes left-right. boxes: [N, 4] yxyx normalized -> [N, 4] (x -> 1 - x)."""
    y1, x1, y2, x2 = tf.unstack(boxes, 4, axis=-1)
    return tf.stack([y1, 1.0 - x2, y2, 1.0 - x1], axis=-1)


def flip_frames(frames: tf.Tensor) -> tf.Tensor:
    """Mirrors frames left-right. frames: [T, H, W, C] -> [T, H, W, C]."""
    return tf.reverse(frames, axis=[-2])


def crop_boxes(boxes: tf.Tensor, window: tf.Tensor, min_visible: float = 0.25):
    """Maps boxes into a crop window's coordinates, clips them and flags those to keep.

    Args:
      boxes: [N, 4] yxyx normalized to the full frame.
      window: [4] the crop, yxyx normalized to the full frame.
      min_visible: a box is kept when at least this fraction of its area lies inside the crop
        (and the clipped box has positive area). The papers are silent; 0.25 keeps people who
        are mostly visible, which is what a crop-based augmentation in their code would keep.
    Returns:
      (boxes [N, 4] yxyx normalized to the crop, clipped to [0, 1]; keep bool [N]).
    """
    wy1, wx1, wy2, wx2 = tf.unstack(tf.cast(window, tf.float32), 4)
    scale = tf.stack([wy2 - wy1, wx2 - wx1, wy2 - wy1, wx2 - wx1])
    moved = (boxes - tf.stack([wy1, wx1, wy1, wx1])) / scale
    clipped = tf.clip_by_value(moved, 0.0, 1.0)

    def area(b):
        return tf.maximum(b[:, 2] - b[:, 0], 0.0) * tf.maximum(b[:, 3] - b[:, 1], 0.0)

    full, inside = area(moved), area(clipped)
    keep = (inside > 0.0) & (inside >= min_visible * full)
    return clipped, keep


def jitter_boxes(boxes: tf.Tensor, noise: tf.Tensor, amount: float) -> tf.Tensor:
    """Moves each box side by noise x amount x the box's size along that axis (AIA jitters its
    ground-truth boxes this way for training), then clips to [0, 1] and re-orders the sides.

    Args:
      boxes: [N, 4] yxyx normalized. noise: [N, 4] in [-1, 1]. amount: max shift as a fraction
        of the box height (y sides) or width (x sides).
    Returns:
      [N, 4] yxyx normalized, y1 <= y2, x1 <= x2.
    """
    h = boxes[:, 2] - boxes[:, 0]
    w = boxes[:, 3] - boxes[:, 1]
    moved = tf.clip_by_value(boxes + noise * amount * tf.stack([h, w, h, w], axis=-1), 0.0, 1.0)
    y1, x1, y2, x2 = tf.unstack(moved, 4, axis=-1)
    return tf.stack(
        [tf.minimum(y1, y2), tf.minimum(x1, x2), tf.maximum(y1, y2), tf.maximum(x1, x2)], axis=-1
    )


def sample_crop_window(seed: tf.Tensor, min_scale: float) -> tf.Tensor:
    """A random crop: side fraction s ~ U[min_scale, 1] on both axes (keeps the aspect ratio),
    position uniform inside the frame. seed: [2]. Returns [4] yxyx normalized."""
    u = tf.random.stateless_uniform([3], seed=seed)
    s = min_scale + (1.0 - min_scale) * u[0]
    y1 = (1.0 - s) * u[1]
    x1 = (1.0 - s) * u[2]
    return tf.stack([y1, x1, y1 + s, x1 + s])


def sample_flip(seed: tf.Tensor) -> tf.Tensor:
    """bool [] true with probability 1/2. seed: [2]."""
    return tf.random.stateless_uniform([], seed=seed) < 0.5


def sample_jitter_noise(seed: tf.Tensor, num_boxes) -> tf.Tensor:
    """[num_boxes, 4] uniform noise in [-1, 1]. seed: [2]."""
    return tf.random.stateless_uniform([num_boxes, 4], seed=seed, minval=-1.0, maxval=1.0)


def select_frame_indices(keyframe_frame, window_size, num_frames: int, frame_stride: int):
    """Positions in a stored window of the T frames at stride s centred on the keyframe.

    Offsets are (i - T // 2) * s for i in 0..T-1 (for even T one more frame before the
    keyframe than after), clipped to the window: the window itself repeats the edge frames at
    the ends of the video, so clipping repeats them further. Returns int32 [T].
    """
    offsets = (tf.range(num_frames, dtype=tf.int32) - num_frames // 2) * frame_stride
    return tf.clip_by_value(
        tf.cast(keyframe_frame, tf.int32) + offsets, 0, tf.cast(window_size, tf.int32) - 1
    )
