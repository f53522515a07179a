from typing import Optional

import numpy as np
import pytest
import tensorflow as tf

from object_detection_ext.st_roi_align import STRoIAlign, roi_pool_mean, st_roi_align


def ramp(batch=1, time=2, size=4):
    """[B, T, size, size, 2]: channel 0 = row index, channel 1 = column index, + 10 t + 100 b."""
    f = np.zeros([batch, time, size, size, 2], np.float32)
    f[..., 0] = np.arange(size)[:, None]
    f[..., 1] = np.arange(size)[None, :]
    f += 10.0 * np.arange(time)[None, :, None, None, None]
    f += 100.0 * np.arange(batch)[:, None, None, None, None]
    return f


@pytest.mark.parametrize("aligned", [True, False])
def test_constant_map_gives_constant_output(run, aligned):
    feats = np.full([2, 3, 5, 6, 4], 2.5, np.float32)
    rois = np.array([[[0.1, 0.2, 0.7, 0.9], [0.0, 0.0, 1.0, 1.0]]] * 2, np.float32)
    out = run(st_roi_align, feats, rois, aligned=aligned)
    assert out.shape == (2, 2, 3, 7, 7, 4)
    np.testing.assert_allclose(out, 2.5, rtol=1e-6)


def test_aligned_ramp_bin_centres_edge_clamp_max_pool(run):
    # Whole-image box on a 4-cell map, 8 bins: bin centres at cell coordinate (i + .5) / 2 - .5 =
    # -.25 (clamped to 0), .25, .75, ..., 3.25 (clamped to 3); max over pairs: .25, 1.25, 2.25, 3.
    out = run(
        st_roi_align, ramp(), np.array([[[0, 0, 1, 1]]], np.float32), crop_size=8, output_size=4
    )
    assert out.shape == (1, 1, 2, 4, 4, 2)
    np.testing.assert_allclose(out[0, 0, 0, :, 0, 0], [0.25, 1.25, 2.25, 3.0], atol=1e-5)
    np.testing.assert_allclose(out[0, 0, 1, 0, :, 1], [10.25, 11.25, 12.25, 13.0], atol=1e-5)


def test_aligned_ramp_sub_box_and_batch_fold(run):
    # Box rows [.25, .75] x cols [0, .5] of a 4x4 map, 2x2 bins without pooling: row samples at
    # (.25 + (i + .5) .25) 4 - .5 = 1, 2; column samples at ((j + .5) .25) 4 - .5 = 0, 1.
    rois = np.array([[[0.25, 0.0, 0.75, 0.5]], [[0.0, 0.0, 1.0, 1.0]]], np.float32)
    out = run(st_roi_align, ramp(batch=2, time=1), rois, crop_size=2, output_size=2, pool=None)
    np.testing.assert_allclose(out[0, 0, 0, :, :, 0], [[1, 1], [2, 2]], atol=1e-5)
    np.testing.assert_allclose(out[0, 0, 0, :, :, 1], [[0, 1], [0, 1]], atol=1e-5)
    # Second batch element reads its own map (+100): rows (i + .5) 2 - .5 = .5, 2.5.
    np.testing.assert_allclose(out[1, 0, 0, :, 0, 0], [100.5, 102.5], atol=1e-5)


def test_align_corners_convention(run):
    # aligned=False: sample i at (y1 + i (y2 - y1) / (crop - 1)) (H - 1): rows .25..75 -> .75, 1.5,
    # 2.25; columns 0..1 -> 0, 1.5, 3.
    out = run(
        st_roi_align,
        ramp(time=1),
        np.array([[[0.25, 0, 0.75, 1]]], np.float32),
        crop_size=3,
        output_size=3,
        pool=None,
        aligned=False,
    )
    np.testing.assert_allclose(out[0, 0, 0, :, 0, 0], [0.75, 1.5, 2.25], atol=1e-5)
    np.testing.assert_allclose(out[0, 0, 0, 0, :, 1], [0.0, 1.5, 3.0], atol=1e-5)


def test_avg_pool_mask_and_mean(run):
    rois = np.array([[[0, 0, 1, 1], [0, 0, 1, 1]]], np.float32)
    mask = np.array([[True, False]])
    out = run(st_roi_align, ramp(), rois, mask, crop_size=8, output_size=4, pool="avg")
    # Avg over pairs of (0, .25), (.75, 1.25), (1.75, 2.25), (2.75, 3): .125, 1, 2, 2.875.
    np.testing.assert_allclose(out[0, 0, 0, :, 0, 0], [0.125, 1.0, 2.0, 2.875], atol=1e-5)
    np.testing.assert_array_equal(out[0, 1], 0.0)
    mean = run(roi_pool_mean, out, mask)
    # Channel 0 (rows) averages to 1.5 + 10 t; over t = 0, 1: 6.5. Padding RoI -> 0.
    np.testing.assert_allclose(mean, [[[6.5, 6.5], [0, 0]]], atol=1e-5)


def test_gradient_reaches_features():
    feats = tf.Variable(ramp())
    with tf.GradientTape() as tape:
        out = st_roi_align(feats, tf.constant([[[0.0, 0.0, 1.0, 1.0]]]))
        loss = tf.reduce_sum(out)
    grad = tape.gradient(loss, feats)
    assert grad is not None and float(tf.reduce_sum(tf.abs(grad))) > 0.0


def test_layer_config_round_trip_and_errors():
    layer = STRoIAlign(crop_size=4, output_size=2, pool="max", aligned=False, name="roi")
    clone = STRoIAlign.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    out = layer(tf.constant(ramp()), tf.constant([[[0.0, 0.0, 1.0, 1.0]]]))
    assert out.shape == (1, 1, 2, 2, 2, 2)
    with pytest.raises(ValueError, match="pool must be one of"):
        STRoIAlign(pool="median")
    with pytest.raises(ValueError, match="not a multiple"):
        st_roi_align(ramp(), np.zeros([1, 1, 4], np.float32), crop_size=14, output_size=4)


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


def _matmul_st_roi_align(
    features: tf.Tensor,
    rois: tf.Tensor,
    roi_mask: Optional[tf.Tensor] = None,
    *,
    crop_size: int = 14,
    output_size: int = 7,
    pool: Optional[str] = "max",
    aligned: bool = True,
) -> tf.Tensor:
    """An independent formulation of ST-RoIAlign: bilinear sampling is separable, so crop
    (b, n, t) = Wy[b, n] @ features[b, t] @ Wx[b, n]^T with [crop, H'] and [crop, W'] weights.
    (The implementation from 2026-12-06 01:53 until the same day, when it proved 8.7x slower in
    float32 and too large in memory at paper size; the module is crop_and_resize again.)"""
    # Called with valid arguments only: st_roi_align's own checks are tested above.
    features = tf.convert_to_tensor(features)
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


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("pool,crop,out", [("max", 14, 7), ("avg", 8, 4), (None, 5, 5)])
def test_equals_the_separable_matmul_form(aligned, pool, crop, out):
    # Random maps and boxes, some reaching outside the map (extrapolation, edge clamp), a
    # degenerate one, and masked rows: values and feature gradients equal the reference.
    rng = np.random.default_rng(7)
    feats = tf.constant(rng.normal(size=(2, 3, 9, 11, 5)), tf.float32)
    corners = rng.uniform(-0.2, 1.2, (2, 6, 2, 2))
    rois = np.concatenate([corners.min(2), corners.max(2)], -1).astype(np.float32)
    rois[0, 0] = [0.3, 0.4, 0.3, 0.4]
    rois = tf.constant(rois)
    mask = tf.constant(rng.uniform(size=(2, 6)) < 0.8)
    weights = tf.constant(rng.normal(size=(2, 6, 3, out, out, 5)), tf.float32)
    results = []
    for fn in (_matmul_st_roi_align, st_roi_align):
        with tf.GradientTape() as tape:
            tape.watch(feats)
            y = fn(feats, rois, mask, crop_size=crop, output_size=out, pool=pool, aligned=aligned)
            loss = tf.reduce_sum(y * weights)
        results.append((y.numpy(), tape.gradient(loss, feats).numpy()))
    (ref, ref_grad), (got, got_grad) = results
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    if pool != "max":
        np.testing.assert_allclose(got_grad, ref_grad, rtol=1e-4, atol=1e-4)
        return
    # Max pooling sends a window's gradient to one maximum; the two forms round the samples
    # differently, so a near tie can pick another sample of the window (seen once in a full
    # suite run: 8 of 2970 feature cells). All but 1% of the cells must match.
    close = np.isclose(got_grad, ref_grad, rtol=1e-4, atol=1e-4)
    assert close.mean() > 0.99, f"{(~close).sum()} of {close.size} gradient cells differ"


def test_bfloat16_stays_bfloat16_and_close_to_float32():
    rng = np.random.default_rng(3)
    feats = tf.constant(rng.normal(size=(1, 2, 7, 7, 16)), tf.float32)
    rois = tf.constant([[[0.1, 0.2, 0.8, 0.7], [0.0, 0.0, 1.0, 1.0]]], tf.float32)
    ref = st_roi_align(feats, rois).numpy()
    got = st_roi_align(tf.cast(feats, tf.bfloat16), rois)
    assert got.dtype == tf.bfloat16
    # bfloat16 keeps 8 significant bits: ~0.4% of the values' scale (|x| <= ~4 here).
    np.testing.assert_allclose(tf.cast(got, tf.float32).numpy(), ref, rtol=0, atol=0.05)
