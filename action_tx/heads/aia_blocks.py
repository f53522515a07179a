"""Building blocks of the AIA head (aia_interaction_aggregation.txt §3.2, §3.3).

- `masked_attention`: softmax attention that gives exactly zero weight to padded keys.
- `InteractionBlock`: one P-, O- or M-block (Figure 3a): query = person features, key/value =
  persons, objects or memory features; transformer-style, with a residual connection.
- `amu_penalty`: the reweighting factor of the Asynchronous Memory Update (§3.3, eq. 2).
- `dense_query`: the query of a Dense Serial IA block (§3.2, eq. 1).
- `aggregate`: the Interaction Aggregation structures (§3.2: serial, Dense Serial, parallel)
  over a list of blocks, `serial_start` the initialiser of the Dense Serial weights and
  `parse_blocks` the check of a block list.
"""

import math
from typing import Sequence, Union

import keras
import tensorflow as tf

BLOCK_TYPES = ("P", "O", "M")
STRUCTURES = ("parallel", "serial", "dense")


def masked_attention(query: tf.Tensor, key: tf.Tensor, value: tf.Tensor, key_mask: tf.Tensor):
    """Scaled dot-product attention over valid keys only.

    Args:
      query: float32 [B, N, D]; key: float32 [B, M, D]; value: float32 [B, M, Dv].
      key_mask: bool [B, M], true for real keys (padded persons/objects, empty memory slots
        are false).
    Returns:
      (output float32 [B, N, Dv], weights float32 [B, N, M]): weights sum to 1 over the real
      keys, are exactly 0 on padded keys, and are all 0 (output 0) when a row has no real key.
    """
    scale = 1.0 / math.sqrt(float(query.shape[-1]))
    # Logits and softmax in float32 under mixed precision: -1e9 overflows float16, and the
    # weights are returned (and visualised) as float32.
    logits = tf.cast(tf.einsum("bnd,bmd->bnm", query, key), tf.float32) * scale
    mask = key_mask[:, tf.newaxis, :]
    logits = tf.where(mask, logits, tf.fill(tf.shape(logits), -1e9))
    # Multiplying by the mask makes padded weights exactly 0 and a key-less row all 0
    # (the softmax of an all -1e9 row is uniform).
    weights = tf.nn.softmax(logits, axis=-1) * tf.cast(mask, logits.dtype)
    return tf.einsum("bnm,bmd->bnd", tf.cast(weights, value.dtype), value), weights


@keras.saving.register_keras_serializable(package="action_tx")
class InteractionBlock(keras.layers.Layer):
    """One interaction block (Figure 3a), "adapted from the Transformer block [35] ... basically
    follows [36, 39]" (§3.2):

        out = query + Dropout(W_o · ReLU(LayerNorm(Attention(W_q q, W_k kv, W_v kv))))

    The paper gives no more detail; this is the non-local/LFB-style unit of its references and
    of the authors' release (its config: LAYER_NORM, USE_ZERO_INIT_CONV): LayerNorm without
    affine parameters, ReLU, then the output projection W_o, which starts at zero so every
    block starts as the identity and a deep serial stack trains stably. W_o must come after
    the ReLU: a zero projection before LayerNorm and ReLU would give ReLU(0), whose gradient
    is 0, and the block would never leave the identity.

    Temporal positions (M-blocks; the paper is silent, the authors' release adds them by
    default, `TEMPORAL_POSITION: True`): a learned vector per memory offset, zero-initialised,
    is added to the projected keys and to the projected values of that offset's entries.
    Without them the memory is an unordered set and an M-block cannot tell a person seen 2 s
    ago from one seen 20 s ago or in the future.

    Args:
      hidden_size: D, width of the query, key, value and output (query width must be D).
      dropout: dropout rate on the block's update.
      temporal_positions: W > 0: the context is W offsets x P entries, offset-major
        (M = W * P, entry m belongs to offset m // P), each offset with its own key and value
        embedding; 0: no positions (P- and O-blocks).
    Call:
      query:    float32 [B, N, D] person (or enhanced person) features.
      context:  float32 [B, M, Dc] key/value features (persons, objects or memory).
      context_mask: bool [B, M], true for real entries.
    Returns:
      (output float32 [B, N, D], attention float32 [B, N, M] (0 on padded entries)).
    """

    def __init__(
        self, hidden_size: int = 512, dropout: float = 0.2, temporal_positions: int = 0, **kwargs
    ):
        super().__init__(**kwargs)
        if int(temporal_positions) < 0:
            raise ValueError(
                f"InteractionBlock: temporal_positions must be >= 0, got {temporal_positions}"
            )
        self.hidden_size = hidden_size
        self.dropout = dropout
        self.temporal_positions = int(temporal_positions)
        self._query = keras.layers.Dense(hidden_size, name="query")
        self._key = keras.layers.Dense(hidden_size, name="key")
        self._value = keras.layers.Dense(hidden_size, name="value")
        self._out = keras.layers.Dense(hidden_size, kernel_initializer="zeros", name="out")
        self._norm = keras.layers.LayerNormalization(
            epsilon=1e-5, center=False, scale=False, name="layer_norm"
        )
        self._dropout = keras.layers.Dropout(dropout)

    def build(self, query_shape, context_shape=None):
        context_shape = context_shape or query_shape
        self._query.build((None, None, query_shape[-1]))
        self._key.build((None, None, context_shape[-1]))
        self._value.build((None, None, context_shape[-1]))
        self._out.build((None, None, self.hidden_size))
        self._norm.build((None, None, self.hidden_size))
        if self.temporal_positions:
            shape = (self.temporal_positions, self.hidden_size)
            self.position_key = self.add_weight(
                name="position_key", shape=shape, initializer="zeros"
            )
            self.position_value = self.add_weight(
                name="position_value", shape=shape, initializer="zeros"
            )

    def _with_positions(self, projected, embedding):
        """projected [B, W*P, D] + embedding [W, D] repeated over each offset's P entries."""
        w = self.temporal_positions
        m = projected.shape[1]
        if m is not None and m % w:
            raise ValueError(
                f"InteractionBlock {self.name!r}: context has {m} entries, not a "
                f"multiple of temporal_positions={w}"
            )
        per_offset = tf.shape(projected)[1] // w
        return projected + tf.repeat(embedding, per_offset, axis=0)[tf.newaxis]

    def call(self, query, context, context_mask, training=None):
        key, value = self._key(context), self._value(context)
        if self.temporal_positions:
            key = self._with_positions(key, self.position_key)
            value = self._with_positions(value, self.position_value)
        attended, weights = masked_attention(self._query(query), key, value, context_mask)
        update = self._out(tf.nn.relu(self._norm(attended)))
        return query + self._dropout(update, training=training), weights

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_size=self.hidden_size,
            dropout=self.dropout,
            temporal_positions=self.temporal_positions,
        )
        return config


def amu_penalty(loss_tag: tf.Tensor, current_loss: tf.Tensor) -> tf.Tensor:
    """The AMU reweighting factor w = min(err / δ, δ / err) (§3.3 eq. 2, Algorithm 1 line 8).

    Args:
      loss_tag: float32 [...], δ: the loss value the memory entry was written with.
      current_loss: float32 [] (or broadcastable), err: the loss of the latest training step
        (Algorithm 1 line 15; +inf before the first step, line 2).
    Returns:
      float32 [...] in [0, 1]; 1 when δ == err. Entries never written (δ = 0, line 1) and the
      first step (err = inf) give 0, as min(x/0, 0/x) = 0 in the algorithm.
    """
    err = tf.broadcast_to(tf.cast(current_loss, tf.float32), tf.shape(loss_tag))
    ok = (loss_tag > 0.0) & (err > 0.0) & tf.math.is_finite(err)
    safe_tag = tf.where(ok, loss_tag, tf.ones_like(loss_tag))
    safe_err = tf.where(ok, err, tf.ones_like(err))
    return tf.where(
        ok, tf.minimum(safe_err / safe_tag, safe_tag / safe_err), tf.zeros_like(loss_tag)
    )


def dense_query(weights: tf.Variable, outputs) -> tf.Tensor:
    """Query of Dense Serial IA block i (eq. 1): Q_i = Σ_j softmax_j(W)_j ⊙ E_j.

    Args:
      weights: [i, D] learnable vectors W_j, one per previous block (softmax over j, per
        channel: "normalized with a Softmax function among C").
      outputs: list of i float32 [B, N, D], the enhanced outputs E_j of the previous blocks.
    Returns:
      float32 [B, N, D].
    """
    normalised = tf.nn.softmax(weights, axis=0)  # [i, D]
    stacked = tf.stack(outputs, axis=0)  # [i, B, N, D]
    return tf.reduce_sum(stacked * normalised[:, tf.newaxis, tf.newaxis, :], axis=0)


def serial_start(shape, dtype=None):
    """Dense weights [i, D] that start as a serial stack: softmax ~1 on the latest block's
    output, ~1e-5 on the older ones (the paper is silent; the authors' release initialises its
    dense parameters to -5 ln 10 except the latest, 0). Uniform weights would instead feed
    every block the mean of all earlier outputs, diluting each block's update by 1/i."""
    older = tf.fill([shape[0] - 1, shape[1]], -5.0 * math.log(10.0))
    return tf.cast(tf.concat([older, tf.zeros([1, shape[1]])], axis=0), dtype or tf.float32)


def parse_blocks(blocks: Union[str, Sequence[str]]) -> list:
    """Block types as a list of "P", "O", "M": from a sequence or a string like "P,O,M"
    (case and spaces ignored). Raises ValueError on an empty list or another type."""
    if isinstance(blocks, str):
        blocks = [b for b in blocks.replace(" ", "").split(",") if b]
    blocks = [str(b).upper() for b in blocks]
    if not blocks or any(b not in BLOCK_TYPES for b in blocks):
        raise ValueError(
            f"AIAHead: blocks must be a non-empty list of {BLOCK_TYPES}, got {blocks!r}"
        )
    return blocks


def aggregate(structure, kinds, blocks, dense_weights, persons, person_mask, contexts, training):
    """The IA structure (§3.2): the person features through the blocks -> action features A_t
    [B, N, D].

    Args:
      structure: one of STRUCTURES: "serial" (each block's output is the next one's query),
        "dense" (Dense Serial IA, eq. 1: queries from `dense_query`) or "parallel" (Figure 4a:
        one branch per block type, the blocks of that type in order, branch outputs averaged).
      kinds: the block types in order ("P", "O", "M"); blocks: their `InteractionBlock`s.
      dense_weights: with "dense", one variable [i, D] per block i > 0 (`serial_start`).
      persons: [B, N, D] projected person features P_t (the first query and the P-blocks'
        context); person_mask: bool [B, N].
      contexts: {"O": (objects [B, O, D], mask [B, O]), "M": (memory [B, W, D], mask [B, W])}
        for the O- and M-blocks.
      training: passed to the blocks (dropout).
    """

    def run(i, query):
        kind = kinds[i]
        context, mask = contexts[kind] if kind != "P" else (query, person_mask)
        return blocks[i](query, context, mask, training=training)[0]

    if structure == "serial":
        out = persons
        for i in range(len(kinds)):
            out = run(i, out)
        return out
    if structure == "dense":
        outputs = []
        for i in range(len(kinds)):
            query = persons if i == 0 else dense_query(dense_weights[i - 1], outputs)
            outputs.append(run(i, query))
        return outputs[-1]
    branches = []  # parallel
    for kind in BLOCK_TYPES:
        indices = [i for i, k in enumerate(kinds) if k == kind]
        if indices:
            out = persons
            for i in indices:
                out = run(i, out)
            branches.append(out)
    return tf.add_n(branches) / float(len(branches))
