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


def _reference_st_roi_align(features, rois, roi_mask, crop_size, output_size, pool, aligned):
    """The implementation before the matmul form: one tf.image.crop_and_resize over the
    T'-folded map (padded by one replicated cell when aligned), float32 throughout."""
    shape = tf.shape(features)
    batch, time, height, width = shape[0], shape[1], shape[2], shape[3]
    channels = features.shape[-1]
    num_rois = tf.shape(rois)[1]
    images = tf.reshape(tf.cast(features, tf.float32), [batch * time, height, width, channels])
    if aligned:
        images = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
        y1, x1, y2, x2 = tf.unstack(rois, axis=-1)

        def axis(lo, hi, size):
            half_bin = 0.5 * (hi - lo) / crop_size
            return (
                ((lo + half_bin) * size - 0.5 + 1.0) / (size + 1.0),
                ((hi - half_bin) * size - 0.5 + 1.0) / (size + 1.0),
            )

        ny1, ny2 = axis(y1, y2, tf.cast(height, tf.float32))
        nx1, nx2 = axis(x1, x2, tf.cast(width, tf.float32))
        rois = tf.stack([ny1, nx1, ny2, nx2], axis=-1)
    boxes = tf.reshape(tf.tile(rois[:, :, None, :], [1, 1, time, 1]), [-1, 4])
    index = (
        tf.range(batch)[:, None, None] * time
        + tf.range(time)[None, None, :]
        + tf.zeros([1, num_rois, 1], tf.int32)
    )
    crops = tf.image.crop_and_resize(images, boxes, tf.reshape(index, [-1]), [crop_size, crop_size])
    if pool is not None and crop_size != output_size:
        k = crop_size // output_size
        fn = tf.nn.max_pool2d if pool == "max" else tf.nn.avg_pool2d
        crops = fn(crops, ksize=k, strides=k, padding="VALID")
    out = tf.reshape(crops, [batch, num_rois, time, output_size, output_size, channels])
    return out * tf.cast(roi_mask, tf.float32)[:, :, None, None, None, None]


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("pool,crop,out", [("max", 14, 7), ("avg", 8, 4), (None, 5, 5)])
def test_equals_crop_and_resize_reference(aligned, pool, crop, out):
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
    for fn in (_reference_st_roi_align, st_roi_align):
        with tf.GradientTape() as tape:
            tape.watch(feats)
            if fn is st_roi_align:
                y = fn(
                    feats, rois, mask, crop_size=crop, output_size=out, pool=pool, aligned=aligned
                )
            else:
                y = fn(feats, rois, mask, crop, out, pool, aligned)
            loss = tf.reduce_sum(y * weights)
        results.append((y.numpy(), tape.gradient(loss, feats).numpy()))
    (ref, ref_grad), (got, got_grad) = results
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_grad, ref_grad, rtol=1e-4, atol=1e-4)


def test_bfloat16_stays_bfloat16_and_close_to_float32():
    rng = np.random.default_rng(3)
    feats = tf.constant(rng.normal(size=(1, 2, 7, 7, 16)), tf.float32)
    rois = tf.constant([[[0.1, 0.2, 0.8, 0.7], [0.0, 0.0, 1.0, 1.0]]], tf.float32)
    ref = st_roi_align(feats, rois).numpy()
    got = st_roi_align(tf.cast(feats, tf.bfloat16), rois)
    assert got.dtype == tf.bfloat16
    # bfloat16 keeps 8 significant bits: ~0.4% of the values' scale (|x| <= ~4 here).
    np.testing.assert_allclose(tf.cast(got, tf.float32).numpy(), ref, rtol=0, atol=0.05)
