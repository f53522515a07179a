"""Spatio-temporal RoIAlign / ST-RoIPool (Action Transformer §3.3-3.4).

The box is replicated through time (a tube), each time slice is cropped and bilinearly resized to
`crop_size` x `crop_size` (14), then max-pooled 2x2 to `output_size` (7): the TF Object
Detection API "crop_and_resize 14 + max pool" RoIPool that the paper's authors used. All
B * N * T' crops are one `tf.image.crop_and_resize` call (see `st_roi_align`).

Why its semantics and not Model Garden's `multilevel_crop_and_resize`: the latter
reads the feature height/width from the static shape (fails for dynamic sizes), and its sample
grid puts feature cell k at coordinate k (half a cell off the pixel-centre convention, clamped on
the bottom/right but not on the top/left); correcting by -0.5 makes it extrapolate at the
top/left border (bilinear weights > 1). `tf.image.crop_and_resize` is dynamic-shape,
differentiable w.r.t. the features and exports in a SavedModel.

Coordinate conventions (`aligned`):
- aligned=True (default, "pixel centres"; Detectron2 RoIAlign(aligned=True)): a normalized
  box [y1, x1, y2, x2] covers feature cells continuously, cell k spanning [k/H', (k+1)/H'], its
  value at the cell centre. The box is split into crop_size bins and each bin is sampled once at
  its centre: sample i of a box is at cell coordinate (y1 + (i + 0.5) (y2 - y1) / crop) H' - 0.5.
  Samples within half a cell outside the map read the border cell (edge clamp, done by padding
  the map by one replicated cell), further out read 0.
- aligned=False (TF OD API / `tf.image.crop_and_resize` "align corners"): normalized 0 and 1 are
  the centres of the first and last cells; sample i is at (y1 + i (y2 - y1) / (crop - 1)) (H' - 1),
  i.e. the crop includes the box edges. Out-of-map samples read 0.
"""

from typing import Optional

import keras
import tensorflow as tf

_POOLS = ("max", "avg", None)


def _aligned_boxes(rois: tf.Tensor, height: tf.Tensor, width: tf.Tensor, crop_size: int):
    """Boxes [..., 4] for crop_and_resize on the map padded by one replicated cell, so that its
    samples are the bin centres of the aligned convention (module docstring)."""
    y1, x1, y2, x2 = tf.unstack(rois, axis=-1)

    def axis(lo, hi, size):
        half_bin = 0.5 * (hi - lo) / crop_size
        # cell coordinate of the first/last bin centre, +1 for the pad, over (padded size - 1).
        first = ((lo + half_bin) * size - 0.5 + 1.0) / (size + 1.0)
        last = ((hi - half_bin) * size - 0.5 + 1.0) / (size + 1.0)
        return first, last

    ny1, ny2 = axis(y1, y2, tf.cast(height, tf.float32))
    nx1, nx2 = axis(x1, x2, tf.cast(width, tf.float32))
    return tf.stack([ny1, nx1, ny2, nx2], axis=-1)


def st_roi_align(
    features: tf.Tensor,
    rois: tf.Tensor,
    roi_mask: Optional[tf.Tensor] = None,
    *,
    crop_size: int = 14,
    output_size: int = 7,
    pool: Optional[str] = "max",
    aligned: bool = True,
) -> tf.Tensor:
    """Crops a tube per RoI from every time slice of a feature map.

    All B * N * T' crops are ONE `tf.image.crop_and_resize` over the T'-folded map [B T', H',
    W', C], in float32 (it has no bfloat16 kernel; the float32 copy is of the map, not of the
    crops) and cast back to the features' dtype. It reads only the 4 cells of each sample, so
    its cost and memory scale with the crops, not with crops x map: the separable matmul form
    (crop = Wy @ map @ Wx^T; kept in the tests as an independent reference) materialised
    [B, N crop, T' W' C] (5.6 GB for 300 proposals of a 64x400 clip) and was ~10x slower
    forward+backward at paper size on the CPU (issue 30, 2026-12-06).

    Args:
      features: float [B, T', H', W', C] trunk features.
      rois: float [B, N, 4] normalized yxyx boxes, the same box at every time slice.
      roi_mask: optional bool [B, N]; padding RoIs give all-zero outputs.
      crop_size: bilinear crop size (14, paper §3.4).
      output_size: size after pooling (7); crop_size must be a multiple of it. With pool=None,
        output_size must equal crop_size.
      pool: 'max' (RoIPool, paper), 'avg', or None (plain RoIAlign crop).
      aligned: coordinate convention, see the module docstring.

    Returns:
      [B, N, T', output_size, output_size, C] in the dtype of `features`.
    """
    if pool not in _POOLS:
        raise ValueError(f"st_roi_align: pool must be one of {_POOLS}, got {pool!r}")
    if pool is None and crop_size != output_size:
        raise ValueError(
            f"st_roi_align: pool=None needs crop_size == output_size, got {crop_size} "
            f"and {output_size}"
        )
    if crop_size % output_size:
        raise ValueError(
            f"st_roi_align: crop_size {crop_size} is not a multiple of output_size {output_size}"
        )
    features = tf.convert_to_tensor(features)
    if features.shape.rank != 5:
        raise ValueError(f"st_roi_align: features must be [B, T', H', W', C], got {features.shape}")
    dtype = features.dtype
    shape = tf.shape(features)
    batch, time, height, width = shape[0], shape[1], shape[2], shape[3]
    channels = features.shape[-1] if features.shape[-1] is not None else shape[4]
    num_rois = tf.shape(rois)[1]
    rois = tf.cast(rois, tf.float32)
    images = tf.reshape(
        tf.cast(features, tf.float32), tf.stack([batch * time, height, width, channels])
    )
    if aligned:
        # One replicated border cell = edge clamp for samples up to half a cell outside.
        images = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
        rois = _aligned_boxes(rois, height, width, crop_size)
    # Crops ordered [B, N, T'], so the result needs no transpose: crop (b, n, t) reads image
    # b T' + t.
    boxes = tf.reshape(tf.tile(rois[:, :, None, :], tf.stack([1, 1, time, 1])), [-1, 4])
    image_index = (
        tf.range(batch)[:, None, None] * time
        + tf.range(time)[None, None, :]
        + tf.zeros(tf.stack([1, num_rois, 1]), tf.int32)
    )
    crops = tf.image.crop_and_resize(
        images, boxes, tf.reshape(image_index, [-1]), [crop_size, crop_size]
    )
    if pool is not None and crop_size != output_size:
        k = crop_size // output_size
        pool_fn = tf.nn.max_pool2d if pool == "max" else tf.nn.avg_pool2d
        crops = pool_fn(crops, ksize=k, strides=k, padding="VALID")
    out = tf.reshape(crops, tf.stack([batch, num_rois, time, output_size, output_size, channels]))
    if roi_mask is not None:
        out *= tf.cast(roi_mask, out.dtype)[:, :, None, None, None, None]
    return tf.cast(out, dtype)


def roi_pool_mean(pooled: tf.Tensor, roi_mask: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Average of RoI tubes over time and space: [B, N, T', h, w, C] -> [B, N, C] (0 at padding)."""
    out = tf.reduce_mean(pooled, axis=[2, 3, 4])
    if roi_mask is not None:
        out *= tf.cast(roi_mask, out.dtype)[:, :, None]
    return out


@keras.saving.register_keras_serializable(package="object_detection_ext")
class STRoIAlign(keras.layers.Layer):
    """Keras 3 wrapper of `st_roi_align`: call(features [B,T',H',W',C], rois [B,N,4],
    roi_mask [B,N] or None) -> [B, N, T', output_size, output_size, C]. No weights."""

    def __init__(
        self,
        crop_size: int = 14,
        output_size: int = 7,
        pool: Optional[str] = "max",
        aligned: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if pool not in _POOLS:
            raise ValueError(f"STRoIAlign: pool must be one of {_POOLS}, got {pool!r}")
        self.crop_size = crop_size
        self.output_size = output_size
        self.pool = pool
        self.aligned = aligned

    def call(self, features, rois, roi_mask=None):
        return st_roi_align(
            features,
            rois,
            roi_mask,
            crop_size=self.crop_size,
            output_size=self.output_size,
            pool=self.pool,
            aligned=self.aligned,
        )

    def compute_output_shape(self, features_shape, rois_shape, roi_mask_shape=None):
        return (
            features_shape[0],
            rois_shape[1],
            features_shape[1],
            self.output_size,
            self.output_size,
            features_shape[-1],
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            crop_size=self.crop_size,
            output_size=self.output_size,
            pool=self.pool,
            aligned=self.aligned,
        )
        return config
