"""Spatio-temporal RoIAlign / ST-RoIPool (Action Transformer §3.3-3.4).

The box is replicated through time (a tube), each time slice is cropped and bilinearly resized to
`crop_size` x `crop_size` (14), then max-pooled 2x2 to `output_size` (7): the TF Object
Detection API "crop_and_resize 14 + max pool" RoIPool that the paper's authors used. All
B * N * T' crops are two batched matmuls in the features' dtype (see `st_roi_align`).

The samples are `tf.image.crop_and_resize`'s (which this module used until the matmul form
replaced it; tests/object_detection_ext/test_st_roi_align.py keeps it as the reference).
Why its semantics and not Model Garden's `multilevel_crop_and_resize`: the latter
reads the feature height/width from the static shape (fails for dynamic sizes), and its sample
grid puts feature cell k at coordinate k (half a cell off the pixel-centre convention, clamped on
the bottom/right but not on the top/left); correcting by -0.5 makes it extrapolate at the
top/left border (bilinear weights > 1). The matmul form is dynamic-shape, differentiable
w.r.t. the features and exports in a SavedModel.

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


def _interpolation_weights(
    lo: tf.Tensor, hi: tf.Tensor, size: tf.Tensor, crop_size: int, aligned: bool
) -> tf.Tensor:
    """float32 [..., crop_size, size]: bilinear weights of each crop sample over the map cells of
    one axis, exactly as `tf.image.crop_and_resize` samples (the docstring's conventions).

    lo, hi: [...] normalized box edges on this axis; size: cells of the map on this axis.
    A sample outside the (padded, for aligned) map has all-zero weights, i.e. reads 0.
    """
    cells = tf.cast(size, tf.float32)
    if aligned:
        # crop_and_resize on the map padded by one replicated cell: normalized box on that map.
        half_bin = 0.5 * (hi - lo) / crop_size
        lo, hi = (
            ((lo + half_bin) * cells + 0.5) / (cells + 1.0),
            ((hi - half_bin) * cells + 0.5) / (cells + 1.0),
        )
        last = cells + 1.0  # last index of the padded map
    else:
        last = cells - 1.0
    # crop_and_resize's own arithmetic (crop_size > 1):
    # in = lo * last + i * (hi - lo) * last / (crop - 1).
    if crop_size > 1:
        step = (hi - lo) * last / (crop_size - 1)
        pos = lo[..., None] * last + tf.range(crop_size, dtype=tf.float32) * step[..., None]
    else:
        pos = (0.5 * (lo + hi) * last)[..., None]
    inside = tf.cast((pos >= 0.0) & (pos <= last), tf.float32)
    top = tf.floor(pos)
    frac = pos - top
    bottom = tf.math.ceil(pos)
    if aligned:  # padded index p is map cell clip(p - 1): the replicated border
        top, bottom = top - 1.0, bottom - 1.0
    size = tf.cast(size, tf.int32)
    top = tf.clip_by_value(tf.cast(top, tf.int32), 0, size - 1)
    bottom = tf.clip_by_value(tf.cast(bottom, tf.int32), 0, size - 1)
    weights = (
        tf.one_hot(top, size) * (1.0 - frac)[..., None] + tf.one_hot(bottom, size) * frac[..., None]
    )
    return weights * inside[..., None]


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

    Bilinear sampling is separable: crop (b, n, t) = Wy[b, n] @ features[b, t] @ Wx[b, n]^T with
    [crop, H'] and [crop, W'] interpolation weights (`_interpolation_weights`). So all B * N * T'
    crops are two batched matmuls in the dtype of `features` (bfloat16 under mixed precision: no
    float32 copy of the map; `tf.image.crop_and_resize` has no bfloat16 kernel), and the
    gradient is two matmuls too. The weights are computed in float32 (sample positions need the
    resolution) and cast to the feature dtype. Values equal `tf.image.crop_and_resize` on the
    T'-folded map within float rounding (tests keep that reference).

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
    y1, x1, y2, x2 = tf.unstack(tf.cast(rois, tf.float32), axis=-1)
    wy = _interpolation_weights(y1, y2, height, crop_size, aligned)  # [B, N, crop, H']
    wx = _interpolation_weights(x1, x2, width, crop_size, aligned)  # [B, N, crop, W']
    if roi_mask is not None:
        wy *= tf.cast(roi_mask, tf.float32)[:, :, None, None]
    wy, wx = tf.cast(wy, dtype), tf.cast(wx, dtype)
    # rows: [B, N * crop, H'] @ [B, H', T' W' C] -> [B, N, crop_i, T', W', C]
    by_row = tf.transpose(features, [0, 2, 1, 3, 4])
    rows = tf.matmul(
        tf.reshape(wy, tf.stack([batch, num_rois * crop_size, height])),
        tf.reshape(by_row, tf.stack([batch, height, -1])),
    )
    rows = tf.reshape(rows, tf.stack([batch, num_rois, crop_size * time, width, channels]))
    # columns: per (b, n): [crop_j, W'] @ [W', (crop_i T') C] -> [B, N, crop_i, T', crop_j, C]
    crops = tf.einsum("bnjw,bnmwc->bnmjc", wx, rows)
    crops = tf.reshape(crops, tf.stack([batch, num_rois, crop_size, time, crop_size, channels]))
    if pool is not None and crop_size != output_size:
        k = crop_size // output_size
        crops = tf.reshape(
            crops, tf.stack([batch, num_rois, output_size, k, time, output_size, k, channels])
        )
        reduce = tf.reduce_max if pool == "max" else tf.reduce_mean
        crops = reduce(crops, axis=[3, 6])
    return tf.transpose(crops, [0, 1, 3, 2, 4, 5])  # [B, N, T', out, out, C]


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
