"""Building blocks of the Action Transformer head (action_transformer.txt §3.2, §3.4).

- `relative_coordinates`: cell positions relative to the centre of the map.
- `LocationEmbedding`: the two 2-layer MLPs of §3.4 ([h, w] and [t] -> embedding vectors).
- `roi_align_map`: RoIAlign of one batch-independent map (the spatial location embedding) at
  a batch of boxes, so the query carries the same embedding as the trunk cells it pools.
- `TxUnit`: one Action Transformer unit (one head of one layer), §3.2's two equations.
"""

import math

import keras
import tensorflow as tf


def relative_coordinates(size) -> tf.Tensor:
    """Positions of `size` cells relative to the centre, scaled to [-1, 1].

    Args:
      size: int or int32 scalar tensor, number of cells along one axis.
    Returns:
      float32 [size]: (i - (size - 1) / 2) / max((size - 1) / 2, 0.5); a single cell gives [0].
    """
    # §3.4 says "relative to the center" but not the unit; fractions of the half-extent keep
    # the MLP inputs O(1) for any map size (cell offsets would reach ±12 on a 25x25 map).
    size_f = tf.cast(size, tf.float32)
    half = (size_f - 1.0) / 2.0
    return (tf.range(size_f) - half) / tf.maximum(half, 0.5)


def _two_layer_mlp(units: int, name: str) -> list:
    # "We pass each through a 2-layer MLP" (§3.4); ReLU between, linear output (silent in paper).
    return [
        keras.layers.Dense(units, activation="relu", name=f"{name}_1"),
        keras.layers.Dense(units, name=f"{name}_2"),
    ]


@keras.saving.register_keras_serializable(package="action_tx")
class LocationEmbedding(keras.layers.Layer):
    """[h, w] and [t] of every trunk cell, each through its own 2-layer MLP (§3.4).

    Args:
      size: width (hidden and output) of each MLP; the full embedding has 2 * size channels.
    Call:
      features: [B, T', H', W', C] trunk map (only its shape is read).
    Returns:
      spatial:  float32 [H', W', size]  MLP([h, w]) of each cell, h along rows.
      temporal: float32 [T', size]      MLP([t]) of each time slice.
    """

    def __init__(self, size: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.size = size
        self._spatial_mlp = _two_layer_mlp(size, "spatial_mlp")
        self._temporal_mlp = _two_layer_mlp(size, "temporal_mlp")

    def build(self, features_shape):
        # Explicit builds: Keras would otherwise trace `call` symbolically to find the weights.
        for mlp, inputs in ((self._spatial_mlp, 2), (self._temporal_mlp, 1)):
            mlp[0].build((None, inputs))
            mlp[1].build((None, self.size))

    def call(self, features):
        shape = tf.shape(features)
        ys = relative_coordinates(shape[2])
        xs = relative_coordinates(shape[3])
        ts = relative_coordinates(shape[1])
        grid = tf.stack(tf.meshgrid(ys, xs, indexing="ij"), axis=-1)  # [H', W', 2] = [h, w]
        spatial = self._spatial_mlp[1](self._spatial_mlp[0](grid))
        temporal = self._temporal_mlp[1](self._temporal_mlp[0](ts[:, None]))
        return spatial, temporal

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size)
        return config


def _tent_weights(lo: tf.Tensor, hi: tf.Tensor, size: tf.Tensor, output_size: int) -> tf.Tensor:
    """Bilinear weights of `output_size` bin centres of [lo, hi] over `size` cells.

    lo, hi: float32 [B, N] normalized box edges. Returns float32 [B, N, output_size, size].
    """
    size_f = tf.cast(size, tf.float32)
    bins = (tf.range(output_size, dtype=tf.float32) + 0.5) / output_size
    # RoIAlign convention (Model Garden crop_and_resize, sample_offset=0.5): cell i covers
    # [i, i + 1) in map units, its centre is i + 0.5; samples are clamped to the outer centres.
    centres = (lo[..., None] + bins * (hi - lo)[..., None]) * size_f - 0.5
    centres = tf.clip_by_value(centres, 0.0, size_f - 1.0)
    cells = tf.range(size_f)
    return tf.maximum(0.0, 1.0 - tf.abs(centres[..., None] - cells))


def roi_align_map(value_map: tf.Tensor, boxes: tf.Tensor, output_size: int) -> tf.Tensor:
    """RoIAlign (one bilinear sample per bin centre) of a map shared by the whole batch.

    Bilinear interpolation is separable, so it is two small contractions with the tent weights
    of rows and columns: no gathers, differentiable, vectorised over RoIs.

    Args:
      value_map: float32 [H, W, E].
      boxes: float32 [B, N, 4] normalized [y1, x1, y2, x2].
      output_size: S, the number of bins per side.
    Returns:
      float32 [B, N, S, S, E].
    """
    value_map = tf.convert_to_tensor(value_map)
    boxes = tf.cast(boxes, tf.float32)  # sample positions in float32 even under float16
    shape = tf.shape(value_map)
    wy = tf.cast(
        _tent_weights(boxes[..., 0], boxes[..., 2], shape[0], output_size), value_map.dtype
    )
    wx = tf.cast(
        _tent_weights(boxes[..., 1], boxes[..., 3], shape[1], output_size), value_map.dtype
    )
    columns = tf.einsum("bnjw,hwe->bnjhe", wx, value_map)  # [B, N, S(x), H, E]
    return tf.einsum("bnih,bnjhe->bnije", wy, columns)


@keras.saving.register_keras_serializable(package="action_tx")
class TxUnit(keras.layers.Layer):
    """One Action Transformer unit (§3.2, Figure 2 "Tx unit"):

        Q   = Linear(query)                     (the "linear layer" to a D-dim query)
        A   = softmax(Q K^T / sqrt(D)) V,  K = Linear(memory), V = Linear(memory)
        Q'  = LayerNorm(Q + Dropout(A))
        Q'' = LayerNorm(Q' + Dropout(FFN(Q')))  FFN = Dense(ffn_hidden, relu) -> Dense(D)

    Args:
      hidden_size: D, the size of Q, K, V and the output.
      ffn_hidden: hidden width of the 2-layer FFN.
      dropout: rate of both dropouts.
    Call:
      query:  [B, N, Q_in] one query vector per RoI (any width; projected to D).
      memory: [B, M, C_mem] the flattened (location-embedded) trunk cells, M = T'H'W'.
    Returns:
      updated: [B, N, D].
      attention: float32 [B, N, M], softmax over the M cells (each row sums to 1).
    """

    def __init__(
        self, hidden_size: int = 128, ffn_hidden: int = 512, dropout: float = 0.3, **kwargs
    ):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.ffn_hidden = ffn_hidden
        self.dropout = dropout
        self.query_proj = keras.layers.Dense(hidden_size, name="query")
        self.key_proj = keras.layers.Dense(hidden_size, name="key")
        self.value_proj = keras.layers.Dense(hidden_size, name="value")
        self.attention_dropout = keras.layers.Dropout(dropout)
        # epsilon 1e-6 as in the Transformer [41] implementations (tensor2tensor).
        self.norm1 = keras.layers.LayerNormalization(epsilon=1e-6, name="norm1")
        self.ffn1 = keras.layers.Dense(ffn_hidden, activation="relu", name="ffn1")
        self.ffn2 = keras.layers.Dense(hidden_size, name="ffn2")
        self.ffn_dropout = keras.layers.Dropout(dropout)
        self.norm2 = keras.layers.LayerNormalization(epsilon=1e-6, name="norm2")

    def build(self, query_shape, memory_shape):
        d = self.hidden_size
        self.query_proj.build(query_shape)
        self.key_proj.build(memory_shape)
        self.value_proj.build(memory_shape)
        self.norm1.build((None, None, d))
        self.ffn1.build((None, None, d))
        self.ffn2.build((None, None, self.ffn_hidden))
        self.norm2.build((None, None, d))

    def call(self, query, memory, training=None, keys_values=None):
        """keys_values: optional (K, V), each [B, M, D]: this unit's projections of `memory`
        computed by the caller (`ActionTransformerHead` computes every unit's in one matmul);
        `memory` is then not read."""
        q = self.query_proj(query)
        if keys_values is None:
            k, v = self.key_proj(memory), self.value_proj(memory)
        else:
            k, v = keys_values
        scores = tf.einsum("bnd,bmd->bnm", q, k) / math.sqrt(self.hidden_size)
        # Softmax in float32 so mixed precision cannot overflow over 10^4 cells.
        attention = tf.nn.softmax(tf.cast(scores, tf.float32), axis=-1)
        attended = tf.einsum("bnm,bmd->bnd", tf.cast(attention, v.dtype), v)
        q1 = self.norm1(q + self.attention_dropout(attended, training=training))
        ffn = self.ffn2(self.ffn1(q1))
        q2 = self.norm2(q1 + self.ffn_dropout(ffn, training=training))
        return q2, attention

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_size=self.hidden_size, ffn_hidden=self.ffn_hidden, dropout=self.dropout
        )
        return config
