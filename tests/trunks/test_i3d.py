import math
import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # before TF starts: fast Conv3D gradients

import numpy as np
import pytest
import tensorflow as tf

from action_tx.trunks.i3d import ENDPOINTS, InceptionI3D, make_trunk
from action_tx.trunks.unit3d import Unit3D

# The release's Mixed_* filters, written out again independently of the module's table.
RELEASE_MIXED = {
    "Mixed_3b": [64, 96, 128, 16, 32, 32],
    "Mixed_3c": [128, 128, 192, 32, 96, 64],
    "Mixed_4b": [192, 96, 208, 16, 48, 64],
    "Mixed_4c": [160, 112, 224, 24, 64, 64],
    "Mixed_4d": [128, 128, 256, 24, 64, 64],
    "Mixed_4e": [112, 144, 288, 32, 64, 64],
    "Mixed_4f": [256, 160, 320, 32, 128, 128],
    "Mixed_5b": [256, 160, 320, 32, 128, 128],
    "Mixed_5c": [384, 192, 384, 48, 128, 128],
}


def _randomize(model, seed=0):
    """Random weights, and BatchNorm statistics far from (0, 1) so that they matter."""
    rng = np.random.default_rng(seed)
    for key, var in model.release_variables().items():
        if key.endswith("moving_variance"):
            value = rng.uniform(0.5, 2.0, var.shape)
        elif key.endswith("/w"):
            value = rng.normal(0, 1.0 / math.sqrt(np.prod(var.shape[:-1])), var.shape)
        else:
            value = rng.normal(0, 0.3, var.shape)
        var.assign(value.astype("float32"))


def _reference(x, w, final_endpoint, pool_5a=([2, 2, 2], [2, 2, 2])):
    """The release network in plain tf.nn ops, reading weights by release name `w[...]`."""

    def unit(x, path, stride=1, bn=True):
        y = tf.nn.conv3d(x, w[f"{path}/conv_3d/w"], [1, stride, stride, stride, 1], "SAME")
        if not bn:
            return y + w[f"{path}/conv_3d/b"]
        mean, var = w[f"{path}/batch_norm/moving_mean"], w[f"{path}/batch_norm/moving_variance"]
        return tf.nn.relu((y - mean) / tf.sqrt(var + 1e-3) + w[f"{path}/batch_norm/beta"])

    def pool(x, k, s):
        return tf.nn.max_pool3d(x, k, s, "SAME")

    def mixed(x, ep):
        b2 = "Conv3d_0a_3x3" if ep == "Mixed_5b" else "Conv3d_0b_3x3"
        return tf.concat(
            [
                unit(x, f"{ep}/Branch_0/Conv3d_0a_1x1"),
                unit(unit(x, f"{ep}/Branch_1/Conv3d_0a_1x1"), f"{ep}/Branch_1/Conv3d_0b_3x3"),
                unit(unit(x, f"{ep}/Branch_2/Conv3d_0a_1x1"), f"{ep}/Branch_2/{b2}"),
                unit(pool(x, [3, 3, 3], [1, 1, 1]), f"{ep}/Branch_3/Conv3d_0b_1x1"),
            ],
            -1,
        )

    x = unit(x, "Conv3d_1a_7x7", stride=2)
    x = pool(x, [1, 3, 3], [1, 2, 2])
    x = unit(unit(x, "Conv3d_2b_1x1"), "Conv3d_2c_3x3")
    x = pool(x, [1, 3, 3], [1, 2, 2])
    x = mixed(mixed(x, "Mixed_3b"), "Mixed_3c")
    x = pool(x, [3, 3, 3], [2, 2, 2])
    for ep in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
        x = mixed(x, ep)
    if final_endpoint == "Mixed_4f":
        return x
    x = mixed(mixed(pool(x, *pool_5a), "Mixed_5b"), "Mixed_5c")
    if final_endpoint == "Mixed_5c":
        return x
    x = tf.nn.avg_pool3d(x, [2, 7, 7], [1, 1, 1], "VALID")
    return tf.reduce_mean(unit(x, "Logits/Conv3d_0c_1x1", bn=False)[:, :, 0, 0], axis=1)


def test_full_i3d_shapes_without_running_it():
    shape = (1, 64, 224, 224, 3)
    assert InceptionI3D().compute_output_shape(shape) == (1, 16, 14, 14, 832)  # Mixed_4f
    assert InceptionI3D(final_endpoint="Mixed_5c").compute_output_shape(shape) == (1, 8, 7, 7, 1024)
    assert InceptionI3D(final_endpoint="Logits", num_classes=600).compute_output_shape(shape) == (
        1,
        600,
    )
    assert InceptionI3D(final_endpoint="MaxPool3d_3a_3x3").compute_output_shape(shape) == (
        1,
        32,
        28,
        28,
        192,
    )
    for ep, f in RELEASE_MIXED.items():
        assert InceptionI3D(final_endpoint=ep).output_channels == f[0] + f[2] + f[4] + f[5]


def test_full_width_variables_have_release_shapes():
    model = InceptionI3D(final_endpoint="Logits")
    model.build((1, 64, 224, 224, 3))
    shapes = {k: tuple(v.shape) for k, v in model.release_variables().items()}
    assert len(shapes) == 57 * 4 + 2  # 57 Unit3D (w, beta, mean, variance) + logits w, b
    assert shapes["Conv3d_1a_7x7/conv_3d/w"] == (7, 7, 7, 3, 64)
    assert shapes["Conv3d_2c_3x3/batch_norm/beta"] == (192,)
    assert shapes["Mixed_4f/Branch_1/Conv3d_0b_3x3/conv_3d/w"] == (3, 3, 3, 160, 320)
    assert shapes["Mixed_5b/Branch_2/Conv3d_0a_3x3/conv_3d/w"] == (3, 3, 3, 32, 128)
    assert shapes["Logits/Conv3d_0c_1x1/conv_3d/w"] == (1, 1, 1, 1024, 400)
    assert shapes["Logits/Conv3d_0c_1x1/conv_3d/b"] == (400,)
    assert not any("gamma" in w.path for w in model.weights)  # release BatchNorm has no scale


@pytest.mark.parametrize(
    "final_endpoint,clip", [("Mixed_4f", (2, 9, 35, 33, 3)), ("Logits", (1, 16, 224, 224, 3))]
)
def test_forward_equals_release_reference(final_endpoint, clip):
    model = InceptionI3D(final_endpoint=final_endpoint, width_multiplier=0.25, num_classes=5)
    model.build(clip)
    _randomize(model)
    x = tf.random.stateless_uniform(clip, seed=[3, 4], minval=-1, maxval=1)
    out = model(x, training=False)
    assert tuple(out.shape) == model.compute_output_shape(clip)  # ceil(n / stride) sizes
    weights = {k: v.value for k, v in model.release_variables().items()}
    np.testing.assert_allclose(
        out.numpy(), _reference(x, weights, final_endpoint).numpy(), rtol=1e-4, atol=1e-4
    )


def test_mixed_5c_trunk_at_stride_16_equals_reference():
    """`pool_5a_spatial_stride=1` (ACAR-Net §4.1: res5 at twice the resolution): MaxPool3d_5a
    pools time only, so Mixed_5c keeps Mixed_4f's 16x spatial stride."""
    from action_tx.model_builder import build_detector

    clip = (1, 16, 64, 48, 3)
    model = InceptionI3D(final_endpoint="Mixed_5c", width_multiplier=0.25, pool_5a_spatial_stride=1)
    model.build(clip)
    _randomize(model)
    x = tf.random.stateless_uniform(clip, seed=[5, 6], minval=-1, maxval=1)
    out = model(x, training=False)
    assert tuple(out.shape) == (1, 2, 4, 3, 256) == model.compute_output_shape(clip)
    weights = {k: v.value for k, v in model.release_variables().items()}
    np.testing.assert_allclose(
        out.numpy(),
        _reference(x, weights, "Mixed_5c", ([2, 1, 1], [2, 1, 1])).numpy(),
        rtol=1e-4,
        atol=1e-4,
    )
    det = build_detector(num_classes=3, trunk="i3d_tiny", head="acar", trunk_endpoint="Mixed_5c")
    assert (det.trunk.final_endpoint, det.trunk.pool_5a_spatial_stride) == ("Mixed_5c", 1)
    assert InceptionI3D.from_config(det.trunk.get_config()).pool_5a_spatial_stride == 1
    with pytest.raises(ValueError, match="trunk_endpoint='Mixed_4f'"):
        build_detector(num_classes=3, head="i3d", trunk_endpoint="Mixed_5c")


def test_width_multiplier_scales_channels_with_a_floor():
    model = InceptionI3D(width_multiplier=0.25)
    model.build((1, 8, 64, 64, 3))
    shapes = {k: tuple(v.shape) for k, v in model.release_variables().items()}
    assert shapes["Conv3d_1a_7x7/conv_3d/w"] == (7, 7, 7, 3, 16)
    assert shapes["Mixed_3b/Branch_2/Conv3d_0a_1x1/conv_3d/w"] == (1, 1, 1, 48, 8)  # 16/4 -> 8
    assert model.output_channels == 64 + 80 + 32 + 32


def test_tail_runs_mixed_5_on_roi_tubes():
    trunk = make_trunk("i3d_tiny")
    tail = InceptionI3D(
        first_endpoint="MaxPool3d_5a_2x2", final_endpoint="Mixed_5c", width_multiplier=0.25
    )
    tubes = tf.random.stateless_normal((6, 2, 7, 7, trunk.output_channels), seed=[1, 1])
    assert tail(tubes).shape == (6, 1, 4, 4, 96 + 96 + 32 + 32)
    assert (
        sorted(k.split("/")[0] for k in tail.release_variables())
        == ["Mixed_5b"] * 24 + ["Mixed_5c"] * 24
    )


def test_unit3d_batchnorm_values_and_freeze():
    x = tf.constant(np.arange(16, dtype="float32").reshape(2, 2, 2, 2, 1))
    for freeze in (False, True):
        unit = Unit3D(1, freeze_bn=freeze)
        unit.build(x.shape)
        unit.conv.kernel.assign(tf.fill([1, 1, 1, 1, 1], 2.0))  # y = 2x: mean 15, var 4 * 21.25
        unit.bn.moving_mean.assign([1.0])
        unit.bn.moving_variance.assign([3.0])
        unit.bn.beta.assign([0.5])
        out = unit(x, training=True).numpy()
        if freeze:  # moving statistics, and they do not move
            expected = np.maximum((2 * x.numpy() - 1) / np.sqrt(3 + 1e-3) + 0.5, 0)
            np.testing.assert_allclose(unit.bn.moving_mean.numpy(), [1.0])
        else:  # batch statistics; moving average with the release's decay 0.999
            expected = np.maximum((2 * x.numpy() - 15) / np.sqrt(85 + 1e-3) + 0.5, 0)
            np.testing.assert_allclose(unit.bn.moving_mean.numpy(), [0.999 + 0.001 * 15], rtol=1e-6)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_tiny_preset_trains_one_step():
    trunk = make_trunk("i3d_tiny")
    clip = tf.random.stateless_uniform((2, 8, 112, 112, 3), seed=[5, 6], minval=-1, maxval=1)

    # Eager: tracing the step costs more than running it once (the benchmark times it traced).
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(trunk(clip, training=True)))
    grads = tape.gradient(loss, trunk.trainable_weights)
    assert trunk.compute_output_shape(clip.shape) == (2, 2, 7, 7, 208)
    assert len(grads) == 57 * 2 - 12 * 2  # conv kernels and betas of the 45 units up to Mixed_4f
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
    assert all(np.abs(g.numpy()).sum() > 0 for g in grads)


def test_flops_hand_computed():
    stem = InceptionI3D(final_endpoint="Conv3d_1a_7x7")
    # output 1x2x2 positions x 64 filters, each 7*7*7*3 multiply-adds
    assert stem.flops((1, 2, 4, 4, 3)) == 2 * (1 * 2 * 2 * 64) * (343 * 3)
    mixed = InceptionI3D(first_endpoint="Mixed_3b", final_endpoint="Mixed_3b")
    n = 2 * 3 * 3  # positions of a [1, 2, 3, 3, 192] input
    macs = n * (192 * (64 + 96 + 16 + 32) + 27 * (96 * 128 + 16 * 32))
    assert mixed.flops((1, 2, 3, 3, 192)) == 2 * macs


def test_config_round_trip_and_bad_arguments():
    model = InceptionI3D(
        final_endpoint="Mixed_5c",
        first_endpoint="Mixed_3b",
        width_multiplier=0.5,
        min_channels=4,
        freeze_bn=True,
        num_classes=600,
        dropout_keep_prob=0.5,
        name="trunk",
    )
    config = model.get_config()
    assert InceptionI3D.from_config(config).get_config() == config
    assert {
        k: config[k]
        for k in (
            "final_endpoint",
            "first_endpoint",
            "width_multiplier",
            "min_channels",
            "freeze_bn",
            "num_classes",
            "dropout_keep_prob",
            "name",
        )
    } == dict(
        final_endpoint="Mixed_5c",
        first_endpoint="Mixed_3b",
        width_multiplier=0.5,
        min_channels=4,
        freeze_bn=True,
        num_classes=600,
        dropout_keep_prob=0.5,
        name="trunk",
    )
    unit = Unit3D(8, (3, 1, 1), (1, 2, 2), freeze_bn=True, name="u")
    assert Unit3D.from_config(unit.get_config()).get_config() == unit.get_config()
    with pytest.raises(ValueError, match="unknown final_endpoint 'Mixed_9z'"):
        InceptionI3D(final_endpoint="Mixed_9z")
    with pytest.raises(ValueError, match="comes after"):
        InceptionI3D(first_endpoint="Mixed_5b", final_endpoint="Mixed_4f")
    with pytest.raises(ValueError, match="unknown trunk preset"):
        make_trunk("resnet")
    assert ENDPOINTS[0] == "Conv3d_1a_7x7" and ENDPOINTS[-1] == "Logits"
