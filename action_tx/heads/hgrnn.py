"""`hgrnn`: the hierarchical Graph-RNN head of hgrnn_graph_rnn.txt (Fig. 1, §3.2).

    scene RNN (§3.2.1): x^t = x_c^t ⊕ maxpool_i x_pi^t over the 2l+1 keyframes t-l..t+l,
                        h_c^t = BiGRU(x^t; h_c^{t-1}, h_c^{t+1}), read at the centre t only.
    graph RNN (§3.2.2): per person i, J iterations of a GRU whose input is
                        a_i^(j) = x_pi ⊕ h_c ⊕ maxpool_{k != i} h_k^(j-1)
                        then a sigmoid classifier on h_i^(J).

The scene feature x_c of a keyframe is `features` averaged over T', H', W'; a person feature
x_pi is its RoI tube averaged over T', S, S (both modes of heads_spec.md). The keyframes of the
window are found among the batch entries by `video_index` and `timestamp` (`hgrnn_ops`): in
feature mode a batch is consecutive keyframes of one video (with `--context_keyframes` margin
entries); end to end a batch holds unrelated keyframes and the BiGRU sees each one alone.

No actor (background) logit: the paper classifies the actions of a fine-tuned person detector's
boxes and scores each "by a simple multiplication of the person detection confidence with the
corresponding action prediction score" (§3.3), so the detector's person score is kept as is.
"""

import keras
import tensorflow as tf

from action_tx.heads.base import ActionHead, HeadInputs, HeadOutputs
from action_tx.heads.hgrnn_ops import masked_max, max_over_others, temporal_neighbours


@keras.saving.register_keras_serializable(package="action_tx")
class HGRNNHead(ActionHead):
    """Scene BiGRU over 2l+1 keyframes + graph GRU over the persons of a keyframe. No box
    refinement (box_deltas None): the paper scores the detector's boxes as they are (§3.3).

    Args:
      num_classes: number of action classes.
      window: l, keyframes on each side of the scene BiGRU (paper default 3 = 7 s, Table 1;
        0 = the keyframe alone, i.e. the "Graph-RNN" row of Table 2).
      iterations: J, graph GRU iterations (paper: 2, Table 3).
      hidden_size: H, width of each GRU (the scene state h_c is 2H, both directions). The paper
        does not state it; its features are 256-d (§3.3, an FC reduces I3D's 1024 to 256), so
        256 keeps the states the width of the features it mixes them with.
      dropout: dropout on the classifier input (the paper mentions none: default 0).

    Inputs (HeadInputs): roi_features [B, N, T', S, S, C], roi_mask [B, N], features
    [B, T', H', W', C]; video_index, timestamp, keyframe_mask [B] (optional, for the window).
    Outputs: HeadOutputs(logits [B, N, num_classes]).
    """

    def __init__(
        self,
        num_classes: int,
        window: int = 3,
        iterations: int = 2,
        hidden_size: int = 256,
        dropout: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if window < 0 or iterations < 1 or hidden_size < 1:
            raise ValueError(
                f"HGRNNHead: need window >= 0, iterations >= 1, hidden_size >= 1; "
                f"got window={window}, iterations={iterations}, "
                f"hidden_size={hidden_size}"
            )
        self.num_classes = num_classes
        self.window = window
        self.iterations = iterations
        self.hidden_size = hidden_size
        self.dropout = dropout
        self._scene_forward = keras.layers.GRUCell(hidden_size, name="scene_gru_forward")
        self._scene_backward = keras.layers.GRUCell(hidden_size, name="scene_gru_backward")
        # Paper silent on h^(0): a learned projection of the node's own input, as graph RNNs of
        # its refs [6-8] initialise node states from node features. With zero states one
        # iteration would pool nothing, yet Table 3 has J = 1 beating the Scene-RNN of Table 2.
        self._node_init = keras.layers.Dense(hidden_size, activation="tanh", name="node_init")
        # One GRU shared by all nodes and iterations ("iteratively updates", §3.2.2).
        self._node_gru = keras.layers.GRUCell(hidden_size, name="graph_gru")
        self._dropout = keras.layers.Dropout(dropout)
        self._classifier = keras.layers.Dense(num_classes, name="cls_logits")

    def _pooled(self, inputs: HeadInputs):
        dtype = self.compute_dtype
        persons = tf.reduce_mean(tf.cast(inputs.roi_features, dtype), axis=[2, 3, 4])  # [B,N,C]
        scene = tf.reduce_mean(tf.cast(inputs.features, dtype), axis=[1, 2, 3])  # [B,C]
        return persons, scene, tf.cast(inputs.roi_mask, tf.bool)

    def _scene_state(self, persons, scene, mask, inputs: HeadInputs, training):
        # §3.2.1 eq. 2-3: x^t = x_c^t ⊕ maxpool_i(x_pi^t); padded persons excluded.
        x = tf.concat([scene, masked_max(persons, mask)], axis=-1)  # [B, 2C]
        index, valid = temporal_neighbours(
            inputs.video_index, inputs.timestamp, inputs.keyframe_mask, self.window, tf.shape(x)[0]
        )
        sequence = tf.gather(x, index)  # [B, L, 2C]
        l = self.window
        zeros = tf.zeros([tf.shape(x)[0], self.hidden_size], x.dtype)
        # The BiGRU output at the centre is [forward state after t-l..t, backward state after
        # t+l..t]; the other outputs are never read, so only these 2(l+1) steps run. A missing
        # keyframe is skipped (state carried over), like a Keras RNN mask; an unrolled loop
        # also avoids cuDNN's right-padded-mask restriction (our gaps are on both sides).
        forward, backward = zeros, zeros
        for k in range(l + 1):
            new, _ = self._scene_forward(sequence[:, k], [forward], training=training)
            forward = tf.where(valid[:, k : k + 1], new, forward)
        for k in range(2 * l, l - 1, -1):
            new, _ = self._scene_backward(sequence[:, k], [backward], training=training)
            backward = tf.where(valid[:, k : k + 1], new, backward)
        return tf.concat([forward, backward], axis=-1)  # [B, 2H]

    def scene_state(self, inputs: HeadInputs, training=None) -> tf.Tensor:
        """h_c of every keyframe of the batch: float [B, 2 * hidden_size] (§3.2.1)."""
        persons, scene, mask = self._pooled(inputs)
        return self._scene_state(persons, scene, mask, inputs, training)

    def call(self, inputs: HeadInputs, training=None) -> HeadOutputs:
        persons, scene, mask = self._pooled(inputs)
        h_c = self._scene_state(persons, scene, mask, inputs, training)
        b, n = tf.shape(persons)[0], tf.shape(persons)[1]
        # §3.2.2: node input x_pi ⊕ h_c (the scene state of the person's own keyframe).
        node_in = tf.concat(
            [persons, tf.broadcast_to(h_c[:, None, :], [b, n, 2 * self.hidden_size])], axis=-1
        )  # [B, N, C+2H]
        hidden = self._node_init(node_in)  # [B, N, H]
        for _ in range(self.iterations):
            # Max-pool over the other valid persons (issue 7's reading of eq. "maxpool_{v in
            # V}"): order of persons does not matter and padding never contributes.
            a = tf.concat([node_in, max_over_others(hidden, mask)], axis=-1)  # [B, N, C+3H]
            new, _ = self._node_gru(
                tf.reshape(a, [b * n, -1]),
                [tf.reshape(hidden, [b * n, self.hidden_size])],
                training=training,
            )
            hidden = tf.reshape(new, [b, n, self.hidden_size])
        logits = self._classifier(self._dropout(hidden, training=training))
        # Padded persons: zero logits (their loss weight is 0 anyway).
        return HeadOutputs(logits=tf.where(mask[..., None], logits, tf.zeros_like(logits)))

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            window=self.window,
            iterations=self.iterations,
            hidden_size=self.hidden_size,
            dropout=self.dropout,
        )
        return config
