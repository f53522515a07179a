"""`tx`: the Action Transformer head (action_transformer.txt §3.2 and §3.4).

Each RoI is a query that attends over every cell of the trunk map (the "memory"), through a
stack of `num_layers` layers of `num_heads` parallel Tx units (default 2 heads x 3 layers).

Design decisions (the paper is silent or ambiguous on these; each says why):
- Location embedding (§3.4): [h, w] and [t] of every trunk cell, relative to the centre and
  scaled to [-1, 1], each through its own 2-layer MLP (width `location_embedding_size`), are
  concatenated to the trunk map on channels; K and V are projections of that embedded map.
  "Q is extracted from that feature via RoIPool", so the query is the RoIAlign of the embedded
  map: the given RoI tube's central slice (trunk channels) concatenated with the RoIAlign of
  the embedding channels at the same box (`roi_align_map`; RoIAlign is per channel, so this
  equals RoIAligning the embedded map, without re-pooling the 832 trunk channels).
- Query preprocessor (QPr, §3.2) works on that 7x7 central-slice query map.
  HighRes: 1x1 conv to `highres_reduced_channels` (ReLU: the TF-OD-API/slim conv2d default the
  authors built on), then the 7x7 cells concatenated into one vector. LowRes: spatial average.
  The "linear layer to get the query feature of size 1x1xD" is each Tx unit's own query
  projection, as each Transformer head has its own W_Q: layer 1's heads all read the one QPr
  vector (Figure 2), layer l > 1's heads read the concatenation of layer l-1's heads' outputs.
- `highres_reduced_channels` = 128 (= D): the paper only says the 1x1 conv "reduces the
  dimensionality"; matching the key/value width is the natural choice.
- `ffn_hidden` = 4 * D = 512 as in the Transformer [41] (d_ff = 4 d_model). With it, at paper
  size and 80 classes, the LowRes head has 2,677,525 parameters and the I3D head 4,848,421
  (each with its actor logit), 2.17M fewer, close to §4.2's "2.3M fewer parameters than the
  I3D head" (`python tools/benchmark.py --suite=params`).
- Classification and class-agnostic box regression: linear layers on the last layer's
  concatenated heads (§3, "This feature is then used to regress a tight bounding box and
  classify"). No dropout before them (the paper mentions dropout only inside the Tx unit).
  The classifier covers "C action classes or background" (§3): the background part is one
  more linear output, the actor logit (sigmoid "is this RoI a person"), trained on the
  sampled RoIs and used to rescore the detections (`ActionDetector`'s `person_score`).
- Padded RoIs: rows are independent (cross-attention from RoIs to cells), so padding can never
  change a real RoI; their logits, box deltas and attention maps are set to 0.
"""

import dataclasses

import keras
import tensorflow as tf

from action_tx.heads.base import ActionHead, HeadInputs, HeadOutputs
from action_tx.heads.head_config import HeadConfig
from action_tx.heads.tx_unit import LocationEmbedding, TxUnit, roi_align_map

QUERY_MODES = ("highres", "lowres")


@keras.saving.register_keras_serializable(package="action_tx")
class ActionTransformerHead(ActionHead):
    """Action Transformer head: RoI queries attend over the location-embedded trunk map.

    Args:
      num_classes: number of action classes C (logits width).
      num_heads: Tx units per layer, run in parallel and concatenated (paper: 2).
      num_layers: stacked layers (paper: 3).
      hidden_size: D, width of Q, K, V and each unit's output (paper: 128).
      dropout: dropout rate inside every Tx unit (paper: 0.3).
      query_mode: "highres" (1x1 conv + flattened 7x7 cells) or "lowres" (spatial average).
      location_embedding: attach the [h, w] and [t] MLP embeddings to the trunk map (§3.4).
      location_embedding_size: width of each of the two MLPs (2x that many channels are added).
      highres_reduced_channels: output channels of HighRes's 1x1 conv.
      ffn_hidden: hidden width of each unit's 2-layer FFN.
      regress_boxes: also output class-agnostic box deltas [B, N, 4].
      return_attention: return the attention maps (at paper size 300 RoIs x 6 units x 10^4
        cells = 72 MB per clip; turn off when they are not visualised).
      actor_logit: also output the person (non-background) logit [B, N] (§3).
    Call (`inputs: HeadInputs`):
      features:     float32 [B, T', H', W', C] trunk map.
      rois:         float32 [B, N, 4] normalized [y1, x1, y2, x2].
      roi_mask:     bool [B, N], true for real RoIs.
      roi_features: float32 [B, N, T', S, S, C] ST-RoIAlign tubes, or [B, N, 1, S, S, C] their
                    central slice: only the slice T'//2 is used (the query; S = 7 in the
                    paper), so `roi_time_slices` = "centre" and the detector pools only it.
    Returns `HeadOutputs`:
      logits:     float32 [B, N, num_classes], 0 for padded RoIs.
      box_deltas: float32 [B, N, 4] (0 for padded RoIs) or None when regress_boxes=False.
      attention:  float32 [B, N, num_layers, num_heads, T', H', W']: the softmax attention of
                  each RoI in each unit; sums to 1 over (T', H', W') for real RoIs, 0 for padded
                  ones. None when return_attention=False.
      actor_logits: float32 [B, N] (0 for padded RoIs) or None when actor_logit=False.
    """

    # The query is the central slice's RoI feature (§3.2); K and V come from the trunk map.
    roi_time_slices = "centre"

    def __init__(
        self,
        num_classes: int,
        num_heads: int = 2,
        num_layers: int = 3,
        hidden_size: int = 128,
        dropout: float = 0.3,
        query_mode: str = "highres",
        location_embedding: bool = True,
        location_embedding_size: int = 64,
        highres_reduced_channels: int = 128,
        ffn_hidden: int = 512,
        regress_boxes: bool = True,
        return_attention: bool = True,
        actor_logit: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if query_mode not in QUERY_MODES:
            raise ValueError(
                f"ActionTransformerHead: query_mode must be one of {QUERY_MODES}, "
                f"got {query_mode!r}"
            )
        for arg, value in (
            ("num_classes", num_classes),
            ("num_heads", num_heads),
            ("num_layers", num_layers),
            ("hidden_size", hidden_size),
            ("location_embedding_size", location_embedding_size),
            ("highres_reduced_channels", highres_reduced_channels),
            ("ffn_hidden", ffn_hidden),
        ):
            if int(value) != value or value < 1:
                raise ValueError(
                    f"ActionTransformerHead: {arg} must be a positive integer, got {value!r}"
                )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ActionTransformerHead: dropout must be in [0, 1), got {dropout!r}")
        self.num_classes = num_classes
        self.num_heads = num_heads
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.dropout = dropout
        self.query_mode = query_mode
        self.location_embedding = location_embedding
        self.location_embedding_size = location_embedding_size
        self.highres_reduced_channels = highres_reduced_channels
        self.ffn_hidden = ffn_hidden
        self.regress_boxes = regress_boxes
        self.return_attention = return_attention
        self.actor_logit = actor_logit

        self._location = (
            LocationEmbedding(location_embedding_size, name="location_embedding")
            if location_embedding
            else None
        )
        # A 1x1 conv on the [.., S, S, C] query map is a Dense on its channel axis.
        self._reduce = (
            keras.layers.Dense(highres_reduced_channels, activation="relu", name="qpr_conv1x1")
            if query_mode == "highres"
            else None
        )
        # Flat list (layer-major) so Keras tracks every unit's weights.
        self._units = [
            TxUnit(hidden_size, ffn_hidden, dropout, name=f"tx_l{layer}_h{head}")
            for layer in range(num_layers)
            for head in range(num_heads)
        ]
        self._classifier = keras.layers.Dense(num_classes, name="cls_logits")
        self._box_regressor = keras.layers.Dense(4, name="box_deltas") if regress_boxes else None
        self._actor = keras.layers.Dense(1, name="actor_logit") if actor_logit else None

    def build(self, input_shape):
        """Creates every weight from the shapes of `HeadInputs` (C and S must be static), so
        `count_params()` works after one call and no variable is created inside a trace."""
        channels, size = input_shape.features[-1], input_shape.roi_features[3]
        if channels is None or size is None:
            raise ValueError(
                f"ActionTransformerHead {self.name!r}: the channels C of features "
                f"and the RoI size S must be static, got {input_shape.features} and "
                f"{input_shape.roi_features}"
            )
        if self._location is not None:
            self._location.build(input_shape.features)
            channels += 2 * self.location_embedding_size
        query_width = channels
        if self._reduce is not None:
            self._reduce.build((None, None, size, size, channels))
            query_width = size * size * self.highres_reduced_channels
        for index, unit in enumerate(self._units):
            if index and index % self.num_heads == 0:
                query_width = self.num_heads * self.hidden_size
            unit.build((None, None, query_width), (None, None, channels))
        final = (None, None, self.num_heads * self.hidden_size)
        self._classifier.build(final)
        if self._box_regressor is not None:
            self._box_regressor.build(final)
        if self._actor is not None:
            self._actor.build(final)

    def _check(self, features, roi_features, rois, roi_mask):
        """Static shape checks with one-line errors instead of deep TF tracebacks."""
        name = f"ActionTransformerHead {self.name!r}"
        if features.shape.rank != 5:
            raise ValueError(f"{name}: features must be [B, T', H', W', C], got {features.shape}")
        if roi_features.shape.rank != 6:
            raise ValueError(
                f"{name}: roi_features must be [B, N, T', S, S, C], got {roi_features.shape}"
            )
        if rois.shape.rank != 3 or roi_mask.shape.rank != 2:
            raise ValueError(
                f"{name}: rois must be [B, N, 4] and roi_mask [B, N], got "
                f"{rois.shape} and {roi_mask.shape}"
            )
        if roi_features.shape[-1] != features.shape[-1]:
            raise ValueError(
                f"{name}: roi_features has {roi_features.shape[-1]} channels but "
                f"features has {features.shape[-1]}"
            )
        if None in (roi_features.shape[3], roi_features.shape[4], features.shape[-1]):
            raise ValueError(
                f"{name}: the RoI size S and channels C must be static, got "
                f"roi_features {roi_features.shape}"
            )
        t_feat, t_roi = features.shape[1], roi_features.shape[2]
        if t_feat is not None and t_roi is not None and t_roi not in (1, t_feat):
            raise ValueError(
                f"{name}: roi_features has T'={t_roi} slices but features has T'={t_feat} "
                f"(give every slice or only the central one)"
            )

    def _query_and_memory(self, features, roi_features, rois):
        """Embedded query map [B, N, S, S, C+2E] and flattened memory [B, T'H'W', C+2E]."""
        shape = tf.shape(features)
        batch, t, h, w = shape[0], shape[1], shape[2], shape[3]
        # The query is RoIPooled from the temporally central slice (§3.2 "from the center clip").
        centre = tf.shape(roi_features)[2] // 2
        query_map = tf.gather(roi_features, centre, axis=2)  # [B, N, S, S, C]
        memory = features
        if self._location is not None:
            spatial, temporal = self._location(features)  # [H', W', E], [T', E]
            spatial = tf.cast(spatial, features.dtype)
            temporal = tf.cast(temporal, features.dtype)
            size = self.location_embedding_size
            embedding = tf.concat(
                [
                    tf.broadcast_to(spatial[None], [t, h, w, size]),
                    tf.broadcast_to(temporal[:, None, None], [t, h, w, size]),
                ],
                axis=-1,
            )
            memory = tf.concat(
                [features, tf.broadcast_to(embedding[None], [batch, t, h, w, 2 * size])], axis=-1
            )
            s = roi_features.shape[3]
            roi_spatial = roi_align_map(spatial, rois, s)  # [B, N, S, S, E]
            roi_temporal = tf.broadcast_to(tf.gather(temporal, t // 2), tf.shape(roi_spatial))
            query_map = tf.concat([query_map, roi_spatial, roi_temporal], axis=-1)
        memory = tf.reshape(memory, [batch, t * h * w, memory.shape[-1]])
        return query_map, memory

    def _preprocess_query(self, query_map):
        """QPr: [B, N, S, S, C'] -> [B, N, S*S*reduced] (HighRes) or [B, N, C'] (LowRes)."""
        if self._reduce is None:
            return tf.reduce_mean(query_map, axis=[2, 3])
        reduced = self._reduce(query_map)
        shape = tf.shape(reduced)
        flat = reduced.shape[2] * reduced.shape[3] * reduced.shape[4]
        return tf.reshape(reduced, [shape[0], shape[1], flat])

    def _keys_and_values(self, memory):
        """Every unit's (K, V) [B, M, D] of memory [B, M, C'], as ONE [B M, C'] x [C', 2 U D]
        matmul of the units' own kernels: each unit projects the same trunk map (§3.2), and one
        wide product runs nearer the matmul rate than 2U products D wide (forward+backward of
        the paper-size projections, M = 3136, C' = 960, 6 units, on this project's 2-core CPU:
        8% faster in float32, 19% in bfloat16; 2026-12-06)."""
        projections = [p for unit in self._units for p in (unit.key_proj, unit.value_proj)]
        kernel = tf.concat([tf.cast(p.kernel, memory.dtype) for p in projections], axis=1)
        bias = tf.concat([tf.cast(p.bias, memory.dtype) for p in projections], axis=0)
        shape = tf.shape(memory)
        flat = tf.reshape(memory, [shape[0] * shape[1], memory.shape[-1]])
        projected = tf.reshape(tf.matmul(flat, kernel) + bias, [shape[0], shape[1], -1])
        parts = tf.split(projected, len(projections), axis=-1)
        return list(zip(parts[0::2], parts[1::2]))

    def call(self, inputs: HeadInputs, training=None) -> HeadOutputs:
        features = tf.cast(inputs.features, self.compute_dtype)
        roi_features = tf.cast(inputs.roi_features, self.compute_dtype)
        rois = tf.cast(inputs.rois, tf.float32)
        roi_mask = tf.convert_to_tensor(inputs.roi_mask)
        self._check(features, roi_features, rois, roi_mask)

        query_map, memory = self._query_and_memory(features, roi_features, rois)
        query = self._preprocess_query(query_map)
        keys_values = self._keys_and_values(memory)
        attention = []
        for layer in range(self.num_layers):
            first = layer * self.num_heads
            outputs = [
                unit(query, memory, training=training, keys_values=keys_values[first + i])
                for i, unit in enumerate(self._units[first : first + self.num_heads])
            ]
            # "concatenating the output from the multiple heads at a given layer, and using the
            # concatenated feature as the next query" (§3.2).
            query = tf.concat([out for out, _ in outputs], axis=-1)  # [B, N, heads * D]
            attention.append(tf.stack([att for _, att in outputs], axis=2))  # [B, N, heads, M]

        mask = tf.cast(roi_mask, tf.float32)[:, :, None]
        logits = tf.cast(self._classifier(query), tf.float32) * mask
        box_deltas = None
        if self._box_regressor is not None:
            box_deltas = tf.cast(self._box_regressor(query), tf.float32) * mask
        actor = None
        if self._actor is not None:
            actor = tf.cast(self._actor(query), tf.float32)[..., 0] * mask[..., 0]
        attention_maps = None
        if self.return_attention:
            shape = tf.shape(features)
            stacked = tf.stack(attention, axis=2) * mask[..., None, None]  # [B, N, L, heads, M]
            attention_maps = tf.reshape(
                stacked, tf.concat([tf.shape(stacked)[:4], shape[1:4]], axis=0)
            )
        return HeadOutputs(
            logits=logits, box_deltas=box_deltas, attention=attention_maps, actor_logits=actor
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            num_heads=self.num_heads,
            num_layers=self.num_layers,
            hidden_size=self.hidden_size,
            dropout=self.dropout,
            query_mode=self.query_mode,
            location_embedding=self.location_embedding,
            location_embedding_size=self.location_embedding_size,
            highres_reduced_channels=self.highres_reduced_channels,
            ffn_hidden=self.ffn_hidden,
            regress_boxes=self.regress_boxes,
            return_attention=self.return_attention,
            actor_logit=self.actor_logit,
        )
        return config


@dataclasses.dataclass(frozen=True)
class ActionTransformerConfig(HeadConfig):
    """Options of `ActionTransformerHead` (action_transformer.txt §3.4, §4.4)."""

    flag_names = {
        "tx_heads": "num_heads",
        "tx_layers": "num_layers",
        "tx_hidden": "hidden_size",
        "tx_query": "query_mode",
    }
    num_heads: int = 2  # §4.4: 2 heads
    num_layers: int = 3  # §4.4: 3 layers
    hidden_size: int = 128  # §3.4: D = 128
    query_mode: str = "highres"  # §4.4, Table 3: HighRes query preprocessing is best
    dropout: float = 0.3  # §3.4: dropout 0.3 in every unit
    # Paper silent (module docstring): location embedding width, HighRes 1x1 reduction (= D),
    # Transformer feed-forward width 4 D.
    location_embedding_size: int = 64
    highres_reduced_channels: int = 128
    ffn_hidden: int = 512
