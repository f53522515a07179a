"""Unit3D: the Conv3D + BatchNorm + ReLU unit that every Inception-I3D layer is made of.

The layout follows the public kinetics-i3d release so its checkpoints load one-to-one:
a bias-free 'SAME' Conv3D (`conv_3d/w`), a BatchNorm with offset (beta) but no scale (gamma),
eps 1e-3 and moving-average decay 0.999 (Sonnet v1 `snt.BatchNorm` defaults), then ReLU.
The Logits unit is the exception: no BatchNorm, a bias (`conv_3d/b`) and no activation.
"""

import math

import keras
import tensorflow as tf


def bfloat16_conv3d_unsafe(compute_dtype: str, time_steps, kernel_time: int) -> bool:
    """Whether a bfloat16 Conv3D must run in float32 instead: TF 2.20's oneDNN CPU kernel for
    the bfloat16 filter gradient (Conv3DBackpropFilterV2) reads outside its buffers when the
    input is shorter in time than the kernel (1 < T < kt): NaN, inf or ~1e36 gradients, or a
    heap corruption ("free(): invalid next size"). Measured: any batch size, T=2 with kt=3,
    T=3 or 4 with kt=5 or 7; T=1 and T >= kt are exact (tests/trunks/test_unit3d_precision.py).
    The demo's Mixed_4 blocks (8 frames -> T'=2, 3x3x3 kernels) hit it on the first step.
    The affected layers see at most kt-1 time steps, so running them in float32 costs little.
    """
    return compute_dtype == "bfloat16" and time_steps is not None and 1 < time_steps < kernel_time


def float16_conv3d_on_cpu(compute_dtype: str) -> bool:
    """Whether a float16 Conv3D must run in float32 instead: with no GPU, TF's float16 Conv3D
    is Eigen's generic code, ~1500x slower than bfloat16 or float32 (forward+filter gradient
    of a [2, 8, 32, 32, 3] clip, 4x8x8 kernel: 4.9 s vs 3 ms). mixed_float16 is for GPUs;
    on a CPU-only machine it still runs, with float32 convolutions."""
    return compute_dtype == "float16" and not tf.config.list_logical_devices("GPU")


@keras.saving.register_keras_serializable(package="action_tx")
class Unit3D(keras.layers.Layer):
    """Conv3D (no bias) -> BatchNorm (beta only) -> activation, on [B, T, H, W, C] tensors.

    Args:
      filters: output channels.
      kernel_size: (kt, kh, kw).
      strides: (st, sh, sw); padding is always 'SAME' (TF semantics: output = ceil(in / stride)).
      use_batch_norm: add the BatchNorm (False only for the Logits unit).
      use_bias: give the convolution a bias (True only for the Logits unit).
      activation: "relu" or None.
      freeze_bn: BatchNorm always runs in inference mode: it normalises with its moving
        statistics and never updates them, whatever `training` says (beta still trains).
    """

    def __init__(
        self,
        filters,
        kernel_size=(1, 1, 1),
        strides=(1, 1, 1),
        use_batch_norm=True,
        use_bias=False,
        activation="relu",
        freeze_bn=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = tuple(int(k) for k in kernel_size)
        self.strides = tuple(int(s) for s in strides)
        self.use_batch_norm = bool(use_batch_norm)
        self.use_bias = bool(use_bias)
        if activation not in ("relu", None):
            raise ValueError(
                f"Unit3D {self.name}: activation must be 'relu' or None, got {activation!r}"
            )
        self.activation = activation
        self.freeze_bn = bool(freeze_bn)
        self.conv = keras.layers.Conv3D(
            self.filters,
            self.kernel_size,
            strides=self.strides,
            padding="same",
            use_bias=self.use_bias,
            name="conv_3d",
            dtype=self.dtype_policy,
        )
        # snt.BatchNorm defaults: decay 0.999, eps 1e-3, offset but no scale.
        self.bn = (
            keras.layers.BatchNormalization(
                momentum=0.999,
                epsilon=1e-3,
                scale=False,
                name="batch_norm",
                dtype=self.dtype_policy,
            )
            if self.use_batch_norm
            else None
        )

    def build(self, input_shape):
        # Building the sublayers from shapes alone lets a model create all its variables
        # (e.g. to load a checkpoint) without running a forward pass.
        if bfloat16_conv3d_unsafe(
            self.conv.compute_dtype, input_shape[1], self.kernel_size[0]
        ) or float16_conv3d_on_cpu(self.conv.compute_dtype):
            # Same float32 kernel variable, so checkpoints do not depend on this.
            self.conv.dtype_policy = "float32"
        self.conv.build(input_shape)
        if self.bn is not None:
            self.bn.build(self.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        """inputs: float [B, T, H, W, C_in] -> float [B, ceil(T/st), ceil(H/sh), ceil(W/sw),
        filters]."""
        x = self.conv(inputs)
        if self.bn is not None:
            x = self.bn(x, training=False if self.freeze_bn else training)
        if self.activation == "relu":
            x = tf.nn.relu(x)
        return x

    def compute_output_shape(self, input_shape):
        b, *spatial, _ = input_shape
        out = [None if n is None else math.ceil(n / s) for n, s in zip(spatial, self.strides)]
        return (b, *out, self.filters)

    def flops(self, input_shape):
        """Forward FLOPs of the convolution (2 x multiply-adds) for an input of `input_shape`
        [B, T, H, W, C_in] (all known); BatchNorm and ReLU are not counted."""
        out = self.compute_output_shape(input_shape)
        macs = math.prod(out) * math.prod(self.kernel_size) * input_shape[-1]
        return 2 * macs

    def release_variables(self):
        """{suffix in the kinetics-i3d release: our variable}, e.g. {"conv_3d/w": kernel, ...}."""
        out = {"conv_3d/w": self.conv.kernel}
        if self.use_bias:
            out["conv_3d/b"] = self.conv.bias
        if self.bn is not None:
            out["batch_norm/beta"] = self.bn.beta
            out["batch_norm/moving_mean"] = self.bn.moving_mean
            out["batch_norm/moving_variance"] = self.bn.moving_variance
        return out

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            use_batch_norm=self.use_batch_norm,
            use_bias=self.use_bias,
            activation=self.activation,
            freeze_bn=self.freeze_bn,
        )
        return config
