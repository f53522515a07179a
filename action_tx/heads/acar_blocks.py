"""Building blocks of the ACAR-Net head (acar_net.txt §3.2): the ACRN first-order encoder, the
HR2O modified non-local block and the Relation Network operator (eq. 3-4).

Shapes: B keyframes, N actors (padded, with a mask), M key actors, H x W the context map,
h x w the relation map (after the encoder's valid 3x3 conv and 2x max-pool), d = hidden_size.
Relation maps are channels-last [B, N, h, w, d]; convolutions run on them folded to
[B * N, h, w, d], so every actor's map is convolved independently.
"""

import keras
import tensorflow as tf


def masked_softmax(logits: tf.Tensor, mask: tf.Tensor, axis: int = -1) -> tf.Tensor:
    """Softmax of `logits` over `axis`, restricted to entries where `mask` (broadcastable,
    bool) is true. Masked entries get exactly 0; a slice with no valid entry gives all zeros
    (not NaN), so a keyframe without key actors contributes nothing."""
    mask = tf.broadcast_to(mask, tf.shape(logits))
    very_negative = tf.constant(-1e9, logits.dtype)
    probs = tf.nn.softmax(tf.where(mask, logits, very_negative), axis=axis)
    return tf.where(mask, probs, tf.zeros_like(probs))


def _fold(x: tf.Tensor) -> tf.Tensor:
    """[B, N, h, w, c] -> [B * N, h, w, c] (keeps the static h, w, c)."""
    shape = tf.shape(x)
    folded = tf.reshape(x, tf.concat([[shape[0] * shape[1]], shape[2:]], 0))
    folded.set_shape([None] + x.shape[2:].as_list())
    return folded


def _unfold(x: tf.Tensor, leading: tf.Tensor) -> tf.Tensor:
    """[B * N, h, w, c] -> [B, N, h, w, c] with `leading` = [B, N]."""
    out = tf.reshape(x, tf.concat([leading, tf.shape(x)[1:]], 0))
    out.set_shape([None, None] + x.shape[1:].as_list())
    return out


def _map_downsample() -> keras.layers.Layer:
    # Authors' code: MaxPool2d(kernel 3, stride 2, padding 1) before HR2O ("max2x2"); TF's
    # "same" padding on odd sizes pads one cell on each side, ignored by the max (as -inf is).
    return keras.layers.MaxPooling2D(pool_size=3, strides=2, padding="same")


@keras.saving.register_keras_serializable(package="action_tx")
class ActorContextEncoder(keras.layers.Layer):
    """ACRN first-order actor-context relations (§3.2, [35]): each actor vector tiled over the
    H x W context map, concatenated with it on channels, then convolutions.

    The concatenation [X, A_i] followed by a 1x1 conv equals W_x X + W_a A_i, computed so
    (no N-fold tiled copy of the map). Then ReLU, a valid 3x3 conv, ReLU and the 2x max-pool:
    the paper says only "convolutions"; the authors' code uses 1x1 -> 3x3 (no padding) -> max
    pool, without biases. H' = 7 gives 5x5 -> 3x3 relation maps.

    Call: actors [B, N, C'], context [B, H, W, C'] -> relation maps F [B, N, h, w, d].
    """

    def __init__(self, hidden_size: int, kernel_size: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.kernel_size = kernel_size
        self._context_proj = keras.layers.Dense(hidden_size, use_bias=False, name="conv1_context")
        self._actor_proj = keras.layers.Dense(hidden_size, use_bias=False, name="conv1_actor")
        self._conv2 = keras.layers.Conv2D(
            hidden_size, kernel_size, padding="valid", use_bias=False, name="conv2"
        )
        self._pool = _map_downsample()

    def call(self, actors: tf.Tensor, context: tf.Tensor) -> tf.Tensor:
        joint = (
            self._context_proj(context)[:, None]  # [B, 1, H, W, d]
            + self._actor_proj(actors)[:, :, None, None]
        )  # [B, N, 1, 1, d]
        x = _fold(tf.nn.relu(joint))
        x = self._pool(tf.nn.relu(self._conv2(x)))
        return _unfold(x, tf.shape(actors)[:2])

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, kernel_size=self.kernel_size)
        return config


@keras.saving.register_keras_serializable(package="action_tx")
class HR2OBlock(keras.layers.Layer):
    """One modified non-local block of HR2O (eq. 1-2; eq. 5 with a feature bank).

    Q from the query maps, K and V from the key maps (the same maps for self-attention, the
    archived bank maps L for ACFB), each by a k x k conv (authors: 3x3, no bias). At every
    location (x, y) actor i attends over the valid key actors j:
    Att[i, j, x, y] = softmax_j(<Q_i, K_j> / sqrt(d)); H~_i = sum_j Att V_j;
    F'_i = F_i + Dropout(Conv(ReLU(norm(H~_i)))). `norm` is "layer normalization" following
    LFB [46]: over (h, w, d) of each actor's map with per-channel scale and shift (authors:
    GroupNorm with 1 group, which is exactly that); the dropout rate 0.2 is the authors' code's.

    Call: queries [B, N, h, w, d], keys [B, M, h, w, d], key_mask bool [B, M]
      -> (F' [B, N, h, w, d], attention [B, N, M, h, w] (0 on masked keys)).
    """

    def __init__(self, hidden_size: int, kernel_size: int = 3, dropout: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.kernel_size = kernel_size
        self.dropout = dropout

        def conv(name):
            return keras.layers.Conv2D(
                hidden_size, kernel_size, padding="same", use_bias=False, name=name
            )

        self._q, self._k, self._v, self._out = (
            conv("conv_q"),
            conv("conv_k"),
            conv("conv_v"),
            conv("conv_out"),
        )
        self._norm = keras.layers.GroupNormalization(groups=1, axis=-1, epsilon=1e-5, name="norm")
        self._dropout = keras.layers.Dropout(dropout)

    def call(self, queries, keys, key_mask, training=None):
        q_lead, k_lead = tf.shape(queries)[:2], tf.shape(keys)[:2]
        q = _unfold(self._q(_fold(queries)), q_lead)
        k = _unfold(self._k(_fold(keys)), k_lead)
        v = _unfold(self._v(_fold(keys)), k_lead)
        logits = tf.einsum("bnhwc,bmhwc->bnmhw", q, k) / tf.sqrt(tf.cast(self.hidden_size, q.dtype))
        att = masked_softmax(logits, key_mask[:, None, :, None, None], axis=2)
        mixed = tf.einsum("bnmhw,bmhwc->bnhwc", att, v)
        h = self._out(tf.nn.relu(self._norm(_fold(mixed))))
        h = _unfold(self._dropout(h, training=training), q_lead)
        return queries + h, att

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_size=self.hidden_size, kernel_size=self.kernel_size, dropout=self.dropout
        )
        return config


@keras.saving.register_keras_serializable(package="action_tx")
class RelationNetworkBlock(keras.layers.Layer):
    """The Relation Network instantiation of the high-order operator (eq. 3-4).

    H[i, j, x, y] = f([A_i, A_j, V_xy]) with f two convolutions; H_i = mean over the valid
    actors j; F'_i = F_i + H_i. The paper gives no kernel sizes: f mirrors the first-order
    encoder (1x1 conv on the concatenation = W_i A_i + W_j A_j + W_v V, ReLU, valid k x k conv,
    ReLU, the same max-pool) so H_i has F_i's h x w x d shape for the residual. Cost grows with
    N^2 (the triplet maps), as the paper notes; only the pairs of two valid actors are computed
    (a padded batch of the bench features holds ~2.4x more pairs than valid ones). A padded
    actor's own row gets no relation term (F'_i = F_i): its logits are masked anyway.

    Call: actors [B, N, C'], context [B, H, W, C'], mask bool [B, N], maps F [B, N, h, w, d]
      -> F' [B, N, h, w, d].
    """

    def __init__(self, hidden_size: int, kernel_size: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.kernel_size = kernel_size
        self._proj_i = keras.layers.Dense(hidden_size, use_bias=False, name="f1_actor_i")
        self._proj_j = keras.layers.Dense(hidden_size, use_bias=False, name="f1_actor_j")
        self._proj_v = keras.layers.Dense(hidden_size, use_bias=False, name="f1_context")
        self._conv2 = keras.layers.Conv2D(
            hidden_size, kernel_size, padding="valid", use_bias=False, name="f2"
        )
        self._pool = _map_downsample()

    def call(self, actors, context, mask, maps):
        b, n = tf.shape(actors)[0], tf.shape(actors)[1]
        mask = tf.cast(mask, tf.bool)
        pairs = tf.where(mask[:, :, None] & mask[:, None, :])  # [P, 3]: (b, i, j), both valid
        row = tf.cast(pairs[:, 0] * tf.cast(n, tf.int64) + pairs[:, 1], tf.int32)  # b * N + i
        actor_i = tf.gather_nd(self._proj_i(actors), pairs[:, :2])  # [P, d]
        actor_j = tf.gather_nd(self._proj_j(actors), tf.gather(pairs, [0, 2], axis=1))
        scene = tf.gather(self._proj_v(context), pairs[:, 0])  # [P, H, W, d]
        joint = tf.nn.relu(scene + (actor_i + actor_j)[:, None, None])
        h = self._pool(tf.nn.relu(self._conv2(joint)))  # [P, h, w, d]
        total = tf.math.unsorted_segment_sum(h, row, b * n)  # [B * N, h, w, d]
        count = tf.math.unsorted_segment_sum(tf.ones_like(row, h.dtype), row, b * n)
        mean = total / tf.maximum(count, 1.0)[:, None, None, None]
        mean = tf.reshape(mean, tf.shape(maps))
        mean.set_shape(maps.shape)
        return maps + tf.cast(mean, maps.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, kernel_size=self.kernel_size)
        return config
