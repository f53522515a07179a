"""`stage`: Spatio-Temporal Attention on Graph Entities (stage_graph_attention.txt).

The actors and objects of every clip in the batch are the nodes of one graph (§3.1, §3.3); a
node's feature is its pooled RoI feature (mean of the tube over T', S, S) with the box height,
width and centre appended (§4): d_f = C + 4, as in the authors' code. Edges carry ADJ = exp(-d)
of the box-centre distance, inside a clip and between clips of the same video at most
`temporal_extent` clips apart (Fig. 3, `stage_graph.stage_adjacency`). Layers (Fig. 2, §4,
Table 6), `num_layers` times:

    x  -> Dropout -> n_h heads: h = x W (d_f -> d_f / n_h)                      (FC_l1)
                                e_ij = LeakyReLU_0.2(a^T [h_i || h_j])          (Eq. 4, FC_l2)
                                w = row-softmax(ADJ ⊙ e) over edges             (Eq. 6-7, 10)
                                h'_i = ELU(Dropout(sum_j w_ij h_j))             (Eq. 8)
       -> concat heads -> FC (-> d_f) -> x + . -> LayerNorm                     (FC_l3, LNorm)

then objects are dropped and one linear layer gives the per-class logits of the N actors (FC3;
sigmoid cross-entropy in the loss). The paper's 81st independent "background class" output
(§4, "Implementation and training details") is the actor logit (`actor_logit`): one more
linear output of the same actor features, sigmoid, trained on the detector's sampled RoIs.

Batches: in feature mode (`FeatureActionModel`) the B keyframes are consecutive keyframes of
one video, so temporal edges join neighbouring clips. End to end the batch holds unrelated
keyframes: temporal edges appear only where two entries share a video and are close in time.
"""

import math

import keras
import tensorflow as tf

from action_tx.heads.base import ActionHead, HeadInputs, HeadOutputs
from action_tx.heads.stage_graph import adjacency_softmax, box_geometry, stage_adjacency

_ATTENTIONS = ("graph", "transformer")


def _gat_init():
    # The authors' code: xavier_uniform with gain 1.414 for W and a (GAT's reference init).
    return keras.initializers.VarianceScaling(2.0, mode="fan_avg", distribution="uniform")


class _GraphAttentionLayer(keras.layers.Layer):
    """One graph attention layer (Fig. 2, red box) on the V nodes of the batch graph.

    call(x [V, D] float32, adjacency [V, V] float32) -> (x' [V, D], weights [heads, V, V]).
    """

    def __init__(self, num_heads: int, head_size: int, dropout: float, attention: str, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.head_size = head_size
        self.dropout = dropout
        self.attention = attention
        # "The keep probability is 0.5 for both the dropout layers in Fig. 2" (A.1): one on
        # the layer input, one on each head's aggregated features (authors' code: before ELU).
        self._input_dropout = keras.layers.Dropout(dropout)
        self._head_dropout = keras.layers.Dropout(dropout)
        self._leaky_relu = keras.layers.LeakyReLU(negative_slope=0.2)  # A.1: alpha 0.2
        self._fc = None
        # PyTorch's LayerNorm epsilon (the authors' nn.LayerNorm).
        self._norm = keras.layers.LayerNormalization(epsilon=1e-5)

    def build(self, x_shape):
        width = x_shape[-1]
        heads, size = self.num_heads, self.head_size
        if self.attention == "graph":
            # FC_l1 of every head stacked: [heads, D, D/heads]; no bias (Eq. 3, GAT).
            self.kernel = self.add_weight(
                shape=(heads, width, size), name="kernel", initializer=_gat_init()
            )
            # FC_l2: a in R^{2 d_h}, no bias ("a feedforward layer with 2 x d_h parameters").
            self.attention_kernel = self.add_weight(
                shape=(heads, 2 * size), name="a", initializer=_gat_init()
            )
        else:
            # Table 5 / Eq. 11: Q, K, V from three separate linear maps of the input.
            self.query_kernel = self.add_weight(
                shape=(heads, width, size), name="query", initializer="glorot_uniform"
            )
            self.key_kernel = self.add_weight(
                shape=(heads, width, size), name="key", initializer="glorot_uniform"
            )
            self.kernel = self.add_weight(
                shape=(heads, width, size), name="value", initializer="glorot_uniform"
            )
        self._fc = keras.layers.Dense(width, name="fc")  # FC_l3 (with bias)
        self._fc.build((None, heads * size))
        self._norm.build(x_shape)

    def call(self, x, adjacency, training=None):
        dropped = self._input_dropout(x, training=training)
        h = tf.einsum("vd,hdk->hvk", dropped, tf.cast(self.kernel, x.dtype))  # [H, V, d_h]
        if self.attention == "graph":
            a = tf.cast(self.attention_kernel, x.dtype)
            # FC(h_i || h_j) = a_1 . h_i + a_2 . h_j: no V x V x 2d_h tensor needed.
            source = tf.einsum("hvk,hk->hv", h, a[:, : self.head_size])
            target = tf.einsum("hvk,hk->hv", h, a[:, self.head_size :])
            scores = self._leaky_relu(source[:, :, None] + target[:, None, :])  # [H, V, V]
        else:
            q = tf.einsum("vd,hdk->hvk", dropped, tf.cast(self.query_kernel, x.dtype))
            k = tf.einsum("vd,hdk->hvk", dropped, tf.cast(self.key_kernel, x.dtype))
            scores = tf.einsum("hvk,hwk->hvw", q, k) / math.sqrt(self.head_size)
        weights = adjacency_softmax(scores, adjacency)  # [H, V, V]
        aggregated = tf.einsum("hvw,hwk->hvk", tf.cast(weights, h.dtype), h)
        aggregated = tf.nn.elu(self._head_dropout(aggregated, training=training))  # Eq. 8
        heads = tf.reshape(
            tf.transpose(aggregated, [1, 0, 2]), [-1, self.num_heads * self.head_size]
        )  # concat
        return self._norm(x + self._fc(heads)), weights

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            head_size=self.head_size,
            dropout=self.dropout,
            attention=self.attention,
        )
        return config


@keras.saving.register_keras_serializable(package="action_tx")
class StageHead(ActionHead):
    """STAGE graph attention over the actors and objects of the batch's clips.

    Args:
      num_classes: C_a, action classes.
      num_heads: n_h graph attention heads per layer (paper: 4 for I3D features, Table 4).
      num_layers: graph attention layers (paper: 2).
      dropout: rate of both dropouts of a layer (A.1: keep probability 0.5).
      temporal_extent: clips on each side joined by temporal edges (paper: 1; 0 = Table 5
        "w/o temporal extent").
      use_proximity: exp(-d) adjacency (False: ones on every edge, Table 5).
      use_objects: object nodes in the graph when the inputs carry objects (False: actors
        only, Table 5). With no objects in the inputs the graph has actor nodes only.
      attention: "graph" (GAT, Eq. 4) or "transformer" (scaled dot product, Eq. 11, Table 5).
      keyframe_interval: seconds between consecutive clips (AVA's τ = 1).
      return_attention: return the last layer's attention (see Returns).
      actor_logit: the person (non-background) logit of each actor (§4: 80 actions plus a
        background class).

    Inputs (`HeadInputs`): roi_features [B, N, T', S, S, F] (feature mode: [B, N, 1, 1, 1, F]),
      rois [B, N, 4] yxyx, roi_mask [B, N]; objects [B, O, 4], object_mask [B, O],
      object_features [B, O, T', S, S, F] (optional); video_index, timestamp [B] (optional,
      temporal edges); keyframe_mask [B] (optional, padded keyframes get no edges).
    Returns (`HeadOutputs`):
      logits:     float32 [B, N, num_classes].
      box_deltas: None (the RoIs are kept).
      attention:  float32 [B, N, B, N + O'] (O' = O with objects, else 0): the last layer's
                  attention of each actor over every node of the batch graph, mean over heads;
                  rows of padded actors are 0. None when return_attention=False.
      actor_logits: float32 [B, N] (0 for padded actors), or None when actor_logit=False.
    """

    def __init__(
        self,
        num_classes: int,
        num_heads: int = 4,
        num_layers: int = 2,
        dropout: float = 0.5,
        temporal_extent: int = 1,
        use_proximity: bool = True,
        use_objects: bool = True,
        attention: str = "graph",
        keyframe_interval: int = 1,
        return_attention: bool = True,
        actor_logit: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if attention not in _ATTENTIONS:
            raise ValueError(f"StageHead: attention={attention!r}; choose one of {_ATTENTIONS}")
        if num_heads < 1 or num_layers < 1 or temporal_extent < 0:
            raise ValueError(
                f"StageHead: need num_heads >= 1, num_layers >= 1 and "
                f"temporal_extent >= 0, got {num_heads}, {num_layers}, "
                f"{temporal_extent}"
            )
        self.num_classes = num_classes
        self.num_heads = num_heads
        self.num_layers = num_layers
        self.dropout = dropout
        self.temporal_extent = temporal_extent
        self.use_proximity = use_proximity
        self.use_objects = use_objects
        self.attention = attention
        self.keyframe_interval = keyframe_interval
        self.return_attention = return_attention
        self.actor_logit = actor_logit
        self._gal_layers = []
        self._classifier = keras.layers.Dense(num_classes, name="cls_logits")  # FC3
        self._actor = keras.layers.Dense(1, name="actor_logit") if actor_logit else None

    @property
    def uses_objects(self) -> bool:
        """Object nodes in the graph (`use_objects`)."""
        return bool(self.use_objects)

    def build(self, input_shape):
        """Creates every weight from the feature width F of `roi_features` (must be static)."""
        channels = input_shape.roi_features[-1]
        if channels is None:
            raise ValueError(
                f"StageHead {self.name!r}: the channels of roi_features must be "
                f"static, got {input_shape.roi_features}"
            )
        objects = input_shape.object_features
        if self.use_objects and objects is not None and objects[-1] != channels:
            raise ValueError(
                f"StageHead {self.name!r}: object features have {objects[-1]} "
                f"channels, actor features {channels}; they must match"
            )
        width = channels + 4  # d_f: pooled feature + h, w, xc, yc (§4)
        # d_f / n_h per head (§4); rounded up when n_h does not divide d_f, and FC_l3 maps the
        # n_h * d_h concatenation back to d_f for the residual.
        head_size = -(-width // self.num_heads)
        self._gal_layers = [
            _GraphAttentionLayer(
                self.num_heads, head_size, self.dropout, self.attention, name=f"gal{i + 1}"
            )
            for i in range(self.num_layers)
        ]
        for layer in self._gal_layers:
            layer.build((None, width))
        self._classifier.build((None, None, width))
        if self._actor is not None:
            self._actor.build((None, None, width))

    def _nodes(self, inputs: HeadInputs):
        """-> features [B, M, d_f], boxes [B, M, 4], mask [B, M] (actors first in each clip)."""

        def node_features(tubes, boxes):
            pooled = tf.reduce_mean(tf.cast(tubes, tf.float32), axis=[2, 3, 4])  # [B, n, F]
            return tf.concat([pooled, box_geometry(boxes)], axis=-1)

        features = [node_features(inputs.roi_features, inputs.rois)]
        boxes, masks = [tf.cast(inputs.rois, tf.float32)], [tf.cast(inputs.roi_mask, tf.bool)]
        if self.use_objects and inputs.object_features is not None:
            if inputs.objects is None or inputs.object_mask is None:
                raise ValueError(
                    f"StageHead {self.name!r}: object_features given without "
                    f"objects boxes or object_mask"
                )
            features.append(node_features(inputs.object_features, inputs.objects))
            boxes.append(tf.cast(inputs.objects, tf.float32))
            masks.append(tf.cast(inputs.object_mask, tf.bool))
        return tf.concat(features, 1), tf.concat(boxes, 1), tf.concat(masks, 1)

    def call(self, inputs: HeadInputs, training=None) -> HeadOutputs:
        features, boxes, mask = self._nodes(inputs)
        shape = tf.shape(features)
        b, m, n = shape[0], shape[1], tf.shape(inputs.roi_features)[1]
        adjacency = stage_adjacency(
            boxes,
            mask,
            inputs.video_index,
            inputs.timestamp,
            inputs.keyframe_mask,
            temporal_extent=self.temporal_extent,
            use_proximity=self.use_proximity,
            keyframe_interval=self.keyframe_interval,
        )  # [V, V]
        x = tf.reshape(features, [b * m, features.shape[-1]])  # [V, d_f]
        weights = None
        for layer in self._gal_layers:
            x, weights = layer(x, adjacency, training=training)
        actors = tf.reshape(x, [b, m, x.shape[-1]])[:, :n]  # objects dropped
        logits = self._classifier(actors)
        actor = None
        if self._actor is not None:
            actor = self._actor(actors)[..., 0] * tf.cast(inputs.roi_mask, actors.dtype)
        attention = None
        if self.return_attention:
            mean = tf.reshape(tf.reduce_mean(weights, axis=0), [b, m, b, m])
            attention = mean[:, :n]
        return HeadOutputs(logits=logits, attention=attention, actor_logits=actor)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            num_heads=self.num_heads,
            num_layers=self.num_layers,
            dropout=self.dropout,
            temporal_extent=self.temporal_extent,
            use_proximity=self.use_proximity,
            use_objects=self.use_objects,
            attention=self.attention,
            keyframe_interval=self.keyframe_interval,
            return_attention=self.return_attention,
            actor_logit=self.actor_logit,
        )
        return config
