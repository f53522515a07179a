"""Inception-I3D (Carreira & Zisserman 2017) with the public kinetics-i3d release's structure.

Every layer carries the release's endpoint name (Conv3d_1a_7x7 ... Mixed_5c, Logits) and
`InceptionI3D.release_variables()` maps each release variable name (without the
`RGB/inception_i3d/` scope), e.g. `Mixed_4f/Branch_1/Conv3d_0b_3x3/conv_3d/w`, to our variable,
so Kinetics checkpoints load one-to-one (`action_tx.trunks.i3d_checkpoint`).

The network can be cut at any endpoint: the detector's trunk runs Conv3d_1a_7x7..Mixed_4f
(stride 4 in time, 16 in space) and the `i3d` head runs the tail MaxPool3d_5a_2x2..Mixed_5c on
RoI tubes: `InceptionI3D(first_endpoint="MaxPool3d_5a_2x2", final_endpoint="Mixed_5c")`.
"""

import math

import keras
import tensorflow as tf

from action_tx.trunks.unit3d import Unit3D


def max_pool3d(inputs: tf.Tensor, ksize, strides) -> tf.Tensor:
    """'SAME' tf.nn.max_pool3d of [B, T, H, W, C] in any float dtype: TF has no float16
    MaxPool3D kernel on CPU, so float16 pools in float32 (a max is exact in either)."""
    if inputs.dtype == tf.float16:
        pooled = tf.nn.max_pool3d(
            tf.cast(inputs, tf.float32), ksize=ksize, strides=strides, padding="SAME"
        )
        return tf.cast(pooled, tf.float16)
    return tf.nn.max_pool3d(inputs, ksize=ksize, strides=strides, padding="SAME")


ENDPOINTS = (
    "Conv3d_1a_7x7",
    "MaxPool3d_2a_3x3",
    "Conv3d_2b_1x1",
    "Conv3d_2c_3x3",
    "MaxPool3d_3a_3x3",
    "Mixed_3b",
    "Mixed_3c",
    "MaxPool3d_4a_3x3",
    "Mixed_4b",
    "Mixed_4c",
    "Mixed_4d",
    "Mixed_4e",
    "Mixed_4f",
    "MaxPool3d_5a_2x2",
    "Mixed_5b",
    "Mixed_5c",
    "Logits",
)

# endpoint -> (filters, kernel, strides) of the stem convolutions.
_CONVS = {
    "Conv3d_1a_7x7": (64, (7, 7, 7), (2, 2, 2)),
    "Conv3d_2b_1x1": (64, (1, 1, 1), (1, 1, 1)),
    "Conv3d_2c_3x3": (192, (3, 3, 3), (1, 1, 1)),
}
# endpoint -> (pool size, strides), 'SAME' padding. The first two pools keep time (kernel 1).
_POOLS = {
    "MaxPool3d_2a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool3d_3a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool3d_4a_3x3": ((3, 3, 3), (2, 2, 2)),
    "MaxPool3d_5a_2x2": ((2, 2, 2), (2, 2, 2)),
}
# endpoint -> filters of Branch_0 1x1, Branch_1 1x1 and 3x3, Branch_2 1x1 and 3x3, Branch_3 1x1.
_MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}

# Named trunk configurations. `num_frames` x `image_size`^2 is the clip size the preset is
# meant for; the network itself is fully convolutional up to Mixed_5c.
TRUNK_PRESETS = {
    # The published network: Mixed_4f features of a 64x224x224 clip are [16, 14, 14, 832].
    "i3d": dict(width_multiplier=1.0, num_frames=64, image_size=224),
    # A quarter-width I3D for CPU training and tests: 8x112x112 -> Mixed_4f [2, 7, 7, 208].
    "i3d_tiny": dict(width_multiplier=0.25, num_frames=8, image_size=112),
}


def make_trunk(preset="i3d", **kwargs):
    """The InceptionI3D of `TRUNK_PRESETS[preset]`; `kwargs` override or add init arguments."""
    if preset not in TRUNK_PRESETS:
        raise ValueError(f"unknown trunk preset {preset!r}; known: {sorted(TRUNK_PRESETS)}")
    args = {k: v for k, v in TRUNK_PRESETS[preset].items() if k not in ("num_frames", "image_size")}
    args.update(kwargs)
    return InceptionI3D(**args)


@keras.saving.register_keras_serializable(package="action_tx")
class _InceptionModule(keras.layers.Layer):
    """One Mixed_* block: four branches concatenated on channels.

    Branch_0: 1x1x1 conv; Branch_1: 1x1x1 -> 3x3x3; Branch_2: 1x1x1 -> 3x3x3;
    Branch_3: 3x3x3 max pool (stride 1, SAME) -> 1x1x1 conv. `branch_2_name` exists because
    the release names Mixed_5b's Branch_2 3x3 conv `Conv3d_0a_3x3` (not `0b`).
    """

    def __init__(self, filters, freeze_bn=False, branch_2_name="Conv3d_0b_3x3", **kwargs):
        super().__init__(**kwargs)
        self.filters = tuple(int(f) for f in filters)
        self.freeze_bn = bool(freeze_bn)
        self.branch_2_name = branch_2_name
        f0, f1a, f1b, f2a, f2b, f3 = self.filters
        unit = lambda f, k, name: Unit3D(
            f, (k, k, k), freeze_bn=self.freeze_bn, name=name, dtype=self.dtype_policy
        )
        # (release path, unit); the order is the release's concatenation order.
        self.units = [
            ("Branch_0/Conv3d_0a_1x1", unit(f0, 1, "Branch_0_Conv3d_0a_1x1")),
            ("Branch_1/Conv3d_0a_1x1", unit(f1a, 1, "Branch_1_Conv3d_0a_1x1")),
            ("Branch_1/Conv3d_0b_3x3", unit(f1b, 3, "Branch_1_Conv3d_0b_3x3")),
            ("Branch_2/Conv3d_0a_1x1", unit(f2a, 1, "Branch_2_Conv3d_0a_1x1")),
            (f"Branch_2/{branch_2_name}", unit(f2b, 3, f"Branch_2_{branch_2_name}")),
            ("Branch_3/Conv3d_0b_1x1", unit(f3, 1, "Branch_3_Conv3d_0b_1x1")),
        ]
        self.unit_layers = [u for _, u in self.units]  # a plain list of layers: Keras tracks it

    def _unit_inputs(self, input_shape):
        """Input shape of each of the six units, in `self.units` order."""
        mid = lambda f: (*input_shape[:-1], f)
        f1a, f2a = self.filters[1], self.filters[3]
        return [input_shape, input_shape, mid(f1a), input_shape, mid(f2a), input_shape]

    def build(self, input_shape):
        for (_, u), shape in zip(self.units, self._unit_inputs(input_shape)):
            u.build(shape)
        self.built = True

    def call(self, inputs, training=None):
        """inputs [B, T, H, W, C_in] -> [B, T, H, W, f0 + f1b + f2b + f3]."""
        u = [unit for _, unit in self.units]
        b0 = u[0](inputs, training=training)
        b1 = u[2](u[1](inputs, training=training), training=training)
        b2 = u[4](u[3](inputs, training=training), training=training)
        pooled = max_pool3d(inputs, ksize=3, strides=1)
        b3 = u[5](pooled, training=training)
        return tf.concat([b0, b1, b2, b3], axis=-1)

    def compute_output_shape(self, input_shape):
        f0, _, f1b, _, f2b, f3 = self.filters
        return (*input_shape[:-1], f0 + f1b + f2b + f3)

    def flops(self, input_shape):
        return sum(u.flops(s) for (_, u), s in zip(self.units, self._unit_inputs(input_shape)))

    def release_variables(self):
        return {
            f"{path}/{k}": v for path, u in self.units for k, v in u.release_variables().items()
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters, freeze_bn=self.freeze_bn, branch_2_name=self.branch_2_name
        )
        return config


@keras.saving.register_keras_serializable(package="action_tx")
class _MaxPool(keras.layers.Layer):
    """'SAME' 3D max pooling [B, T, H, W, C] -> [B, ceil(T/st), ceil(H/sh), ceil(W/sw), C]."""

    def __init__(self, pool_size, strides, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = tuple(pool_size)
        self.strides = tuple(strides)

    def call(self, inputs):
        return max_pool3d(inputs, ksize=self.pool_size, strides=self.strides)

    def compute_output_shape(self, input_shape):
        b, *spatial, c = input_shape
        return (
            b,
            *[None if n is None else math.ceil(n / s) for n, s in zip(spatial, self.strides)],
            c,
        )

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size, strides=self.strides)
        return config


@keras.saving.register_keras_serializable(package="action_tx")
class _Logits(keras.layers.Layer):
    """Release classifier: 2x7x7 average pool (VALID, stride 1), dropout, 1x1x1 conv with bias,
    spatial squeeze, mean over time. [B, T, 7, 7, C] -> [B, num_classes] (needs T >= 2)."""

    def __init__(self, num_classes, dropout_keep_prob=1.0, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.dropout_keep_prob = float(dropout_keep_prob)
        self.dropout = keras.layers.Dropout(1.0 - self.dropout_keep_prob)
        self.conv = Unit3D(
            self.num_classes,
            use_batch_norm=False,
            use_bias=True,
            activation=None,
            name="Conv3d_0c_1x1",
            dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        self.conv.build((*input_shape[:-1], input_shape[-1]))
        self.built = True

    def call(self, inputs, training=None):
        x = tf.nn.avg_pool3d(inputs, ksize=(2, 7, 7), strides=1, padding="VALID")
        x = self.conv(self.dropout(x, training=training), training=training)
        return tf.reduce_mean(tf.squeeze(x, axis=[2, 3]), axis=1)

    def compute_output_shape(self, input_shape):
        if tuple(input_shape[2:4]) != (7, 7):
            raise ValueError(
                f"Logits needs 7x7 Mixed_5c features (a 224x224 clip), got "
                f"{tuple(input_shape[2:4])}"
            )
        return (input_shape[0], self.num_classes)

    def flops(self, input_shape):
        return self.conv.flops((input_shape[0], input_shape[1] - 1, 1, 1, input_shape[-1]))

    def release_variables(self):
        return {f"Conv3d_0c_1x1/{k}": v for k, v in self.conv.release_variables().items()}

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, dropout_keep_prob=self.dropout_keep_prob)
        return config


@keras.saving.register_keras_serializable(package="action_tx")
class InceptionI3D(keras.Model):
    """Inception-I3D from `first_endpoint` to `final_endpoint` (both included).

    Args:
      final_endpoint: last endpoint computed (one of `ENDPOINTS`); its output is returned.
      first_endpoint: first endpoint computed; its input is what the previous endpoint would
        output (e.g. "MaxPool3d_5a_2x2" takes Mixed_4f features).
      width_multiplier: every convolution's channels are round(c * width_multiplier), at least
        `min_channels`; 1.0 gives the release's shapes exactly. The classes are not scaled.
      min_channels: lower bound on the scaled channels.
      freeze_bn: every BatchNorm runs in inference mode (moving statistics, no updates).
      num_classes: outputs of the Logits endpoint (400 or 600 for Kinetics); used only when
        Logits is built.
      dropout_keep_prob: keep probability of the dropout before the logits (training only).
      pool_5a_spatial_stride: spatial stride (and size) of MaxPool3d_5a_2x2: 2 is the release;
        1 keeps Mixed_5b/5c at stride 16 in space, as ACAR-Net §4.1 "increase[s] the spatial
        resolution of res5 by 2x" for detection (the trunk of `trunk_endpoint="Mixed_5c"`).

    Call: inputs float32 [B, T, H, W, C_in] (RGB in [-1, 1] for the stem) ->
      the final endpoint's features [B, T', H', W', C'] ('SAME' padding, so e.g. Mixed_4f is
      [B, ceil(T/4), ceil(H/16), ceil(W/16), 832 at width 1]), or logits [B, num_classes].
    """

    def __init__(
        self,
        final_endpoint="Mixed_4f",
        first_endpoint="Conv3d_1a_7x7",
        width_multiplier=1.0,
        min_channels=8,
        freeze_bn=False,
        num_classes=400,
        dropout_keep_prob=1.0,
        pool_5a_spatial_stride=2,
        name="inception_i3d",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        for arg, ep in (("final_endpoint", final_endpoint), ("first_endpoint", first_endpoint)):
            if ep not in ENDPOINTS:
                raise ValueError(f"InceptionI3D: unknown {arg} {ep!r}; valid: {ENDPOINTS}")
        first, last = ENDPOINTS.index(first_endpoint), ENDPOINTS.index(final_endpoint)
        if first > last:
            raise ValueError(
                f"InceptionI3D: first_endpoint {first_endpoint} comes after "
                f"final_endpoint {final_endpoint}"
            )
        if width_multiplier <= 0:
            raise ValueError(f"InceptionI3D: width_multiplier must be > 0, got {width_multiplier}")
        self.final_endpoint = final_endpoint
        self.first_endpoint = first_endpoint
        self.width_multiplier = float(width_multiplier)
        self.min_channels = int(min_channels)
        self.freeze_bn = bool(freeze_bn)
        self.num_classes = int(num_classes)
        self.dropout_keep_prob = float(dropout_keep_prob)
        if pool_5a_spatial_stride not in (1, 2):
            raise ValueError(
                f"InceptionI3D: pool_5a_spatial_stride must be 1 or 2, got "
                f"{pool_5a_spatial_stride!r}"
            )
        self.pool_5a_spatial_stride = int(pool_5a_spatial_stride)
        self.endpoints = ENDPOINTS[first : last + 1]
        self.blocks = [self._make_block(ep) for ep in self.endpoints]

    def channels(self, c):
        """Channels of a release layer with `c` channels at this width."""
        return max(self.min_channels, int(round(c * self.width_multiplier)))

    def _make_block(self, ep):
        dtype = self.dtype_policy
        if ep in _CONVS:
            filters, kernel, strides = _CONVS[ep]
            return Unit3D(
                self.channels(filters),
                kernel,
                strides,
                freeze_bn=self.freeze_bn,
                name=ep,
                dtype=dtype,
            )
        if ep in _POOLS:
            size, strides = _POOLS[ep]
            if ep == "MaxPool3d_5a_2x2" and self.pool_5a_spatial_stride == 1:
                size, strides = (2, 1, 1), (2, 1, 1)  # time only
            return _MaxPool(size, strides, name=ep, dtype=dtype)
        if ep in _MIXED:
            return _InceptionModule(
                [self.channels(f) for f in _MIXED[ep]],
                freeze_bn=self.freeze_bn,
                name=ep,
                dtype=dtype,
                branch_2_name="Conv3d_0a_3x3" if ep == "Mixed_5b" else "Conv3d_0b_3x3",
            )
        return _Logits(self.num_classes, self.dropout_keep_prob, name=ep, dtype=dtype)

    @property
    def output_channels(self):
        """Channels C' of the final endpoint (num_classes for Logits)."""
        if self.final_endpoint == "Logits":
            return self.num_classes
        # Conv channels do not depend on the input's; 0 survives only if every block is a pool.
        return self._shapes((1, 64, 224, 224, 0))[-1][-1] or None

    def _shapes(self, input_shape):
        """Input shape of every block, then the final output shape (Logits not checked)."""
        shapes = [tuple(input_shape)]
        for ep, block in zip(self.endpoints, self.blocks):
            if ep == "Logits":
                shapes.append((shapes[-1][0], self.num_classes))
            else:
                shapes.append(tuple(block.compute_output_shape(shapes[-1])))
        return shapes

    def build(self, input_shape):
        """Creates every variable from `input_shape` [B, T, H, W, C_in] without a forward pass."""
        for block, shape in zip(self.blocks, self._shapes(input_shape)):
            if hasattr(block, "build") and not block.built:
                block.build(shape)
        self.built = True

    def call(self, inputs, training=None):
        x = inputs
        for block in self.blocks:
            x = block(x) if isinstance(block, _MaxPool) else block(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        shapes = self._shapes(input_shape)
        if self.final_endpoint == "Logits":
            return self.blocks[-1].compute_output_shape(shapes[-2])
        return shapes[-1]

    def flops(self, input_shape):
        """Forward FLOPs (2 x conv multiply-adds; pooling, BatchNorm, ReLU not counted) for an
        input of fully known `input_shape` [B, T, H, W, C_in]."""
        return sum(
            block.flops(shape)
            for block, shape in zip(self.blocks, self._shapes(input_shape))
            if hasattr(block, "flops")
        )

    def release_variables(self):
        """{release name without the `RGB/inception_i3d/` scope: our variable}, in release order.
        The model must be built."""
        if not self.built:
            raise ValueError(
                "InceptionI3D.release_variables: build the model first "
                "(model.build([B, T, H, W, 3]) or one call)"
            )
        out = {}
        for ep, block in zip(self.endpoints, self.blocks):
            if not isinstance(block, _MaxPool):
                out.update({f"{ep}/{k}": v for k, v in block.release_variables().items()})
        return out

    def get_config(self):
        config = super().get_config()
        config.update(
            final_endpoint=self.final_endpoint,
            first_endpoint=self.first_endpoint,
            width_multiplier=self.width_multiplier,
            min_channels=self.min_channels,
            freeze_bn=self.freeze_bn,
            num_classes=self.num_classes,
            dropout_keep_prob=self.dropout_keep_prob,
            pool_5a_spatial_stride=self.pool_5a_spatial_stride,
        )
        return config
