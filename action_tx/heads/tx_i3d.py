"""`tx_i3d`: the I3D head regresses the box, the Action Transformer head classifies.

action_transformer.txt §4.4 and Table 3: "An additional boost can be obtained (to 24.9) by using
the I3D head for regression and the Action Transformer head for classification - reflecting
their strengths identified in the previous sections" (Table 2: the I3D head localizes better,
Table 1: the Tx head classifies better). Both heads read the same RoIs and trunk map.

Design decisions (the paper is silent on these; each says why):
- The two sub-heads are independent, as the sentence above describes two heads each doing one
  job: the I3D sub-head has no classifier (`I3DHead(classify=False)`) and the Tx sub-head no
  box regressor (`ActionTransformerHead(regress_boxes=False)`), so no weight is created that
  would never receive a gradient. The action loss trains the Tx sub-head, the box loss the I3D
  sub-head's Mixed_5a-5c tail and its box layer.
- The actor (person vs background) logit of §3 comes with the classification, so from the
  Tx sub-head (`actor_logit`); the I3D sub-head has none.
- Dropout: the Tx sub-head's inside each Tx unit (`dropout`, paper §3.4: 0.3) and the I3D
  sub-head's on its pooled feature before the box layer (`i3d_dropout`, 0.3 like `i3d`).
"""

import dataclasses

import keras
import tensorflow as tf

from action_tx.heads.action_transformer import ActionTransformerConfig, ActionTransformerHead
from action_tx.heads.base import ActionHead, HeadInputs, HeadOutputs
from action_tx.heads.i3d_head import I3DHead, _tail_kwargs


@keras.saving.register_keras_serializable(package="action_tx")
class TxI3DHead(ActionHead):
    """Action Transformer logits and attention, I3D-head box deltas.

    Args:
      num_classes: action classes C.
      width_multiplier: the I3D tail's width; must equal the trunk's (the model builder passes
        it, as for `i3d`).
      freeze_bn: BatchNorm of the I3D tail in inference mode (paper §3.5).
      i3d_dropout: dropout on the I3D sub-head's pooled feature, before the box layer.
      num_heads, num_layers, hidden_size, dropout, query_mode, location_embedding,
      location_embedding_size, highres_reduced_channels, ffn_hidden, return_attention:
        those of `ActionTransformerHead` (paper: 2 heads x 3 layers, D = 128, dropout 0.3,
        HighRes query).
      actor_logit: the Tx sub-head's person logit (§3: C action classes plus background).
    Call (`inputs: HeadInputs`): features [B, T', H', W', C], rois [B, N, 4] normalized yxyx,
      roi_mask bool [B, N], roi_features [B, N, T', S, S, C] (both sub-heads read them).
    Returns `HeadOutputs`:
      logits:     float32 [B, N, num_classes] of the Tx sub-head, 0 for padded RoIs.
      box_deltas: float32 [B, N, 4] of the I3D sub-head, 0 for padded RoIs.
      attention:  float32 [B, N, num_layers, num_heads, T', H', W'] of the Tx sub-head, or
                  None when return_attention=False.
      actor_logits: float32 [B, N] of the Tx sub-head, or None when actor_logit=False.
    """

    def __init__(
        self,
        num_classes: int,
        width_multiplier: float = 1.0,
        freeze_bn: bool = False,
        i3d_dropout: float = 0.3,
        num_heads: int = 2,
        num_layers: int = 3,
        hidden_size: int = 128,
        dropout: float = 0.3,
        query_mode: str = "highres",
        location_embedding: bool = True,
        location_embedding_size: int = 64,
        highres_reduced_channels: int = 128,
        ffn_hidden: int = 512,
        return_attention: bool = True,
        actor_logit: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0.0 <= i3d_dropout < 1.0:
            raise ValueError(f"TxI3DHead: i3d_dropout must be in [0, 1), got {i3d_dropout!r}")
        self.num_classes = num_classes
        self.width_multiplier = width_multiplier
        self.freeze_bn = freeze_bn
        self.i3d_dropout = i3d_dropout
        self.num_heads = num_heads
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.dropout = dropout
        self.query_mode = query_mode
        self.location_embedding = location_embedding
        self.location_embedding_size = location_embedding_size
        self.highres_reduced_channels = highres_reduced_channels
        self.ffn_hidden = ffn_hidden
        self.return_attention = return_attention
        self.actor_logit = actor_logit
        self.tx_head = ActionTransformerHead(
            num_classes,
            num_heads=num_heads,
            num_layers=num_layers,
            hidden_size=hidden_size,
            dropout=dropout,
            query_mode=query_mode,
            location_embedding=location_embedding,
            location_embedding_size=location_embedding_size,
            highres_reduced_channels=highres_reduced_channels,
            ffn_hidden=ffn_hidden,
            regress_boxes=False,
            return_attention=return_attention,
            actor_logit=actor_logit,
            name="tx_head",
            dtype=self.dtype_policy,
        )
        self.i3d_head = I3DHead(
            num_classes,
            width_multiplier=width_multiplier,
            freeze_bn=freeze_bn,
            dropout=i3d_dropout,
            regress_boxes=True,
            classify=False,
            actor_logit=False,
            name="i3d_head",
            dtype=self.dtype_policy,
        )

    @property
    def tail(self):
        """The I3D sub-head's Mixed_5a-5c `InceptionI3D`, where tools/train.py's
        --init_checkpoint loads Kinetics weights (it looks for `detector.head.tail`, as for
        `i3d`; paper §3.5: the I3D layers are pre-trained on Kinetics)."""
        return self.i3d_head.tail

    def tail_features(self, roi_features, training=None):
        """The I3D sub-head's pooled Mixed_5c feature of each RoI ([B, N, C5])."""
        return self.i3d_head.tail_features(roi_features, training=training)

    def build(self, input_shape):
        # The Tx sub-head creates its weights from the shapes; the I3D sub-head builds its
        # tail lazily on the first call (as `i3d` does).
        self.tx_head.build(input_shape)
        self.built = True

    def call(self, inputs: HeadInputs, training=None) -> HeadOutputs:
        tx = self.tx_head(inputs, training=training)
        i3d = self.i3d_head(inputs, training=training)
        return HeadOutputs(
            logits=tx.logits,
            box_deltas=tf.cast(i3d.box_deltas, tf.float32),
            attention=tx.attention,
            actor_logits=tx.actor_logits,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            width_multiplier=self.width_multiplier,
            freeze_bn=self.freeze_bn,
            i3d_dropout=self.i3d_dropout,
            num_heads=self.num_heads,
            num_layers=self.num_layers,
            hidden_size=self.hidden_size,
            dropout=self.dropout,
            query_mode=self.query_mode,
            location_embedding=self.location_embedding,
            location_embedding_size=self.location_embedding_size,
            highres_reduced_channels=self.highres_reduced_channels,
            ffn_hidden=self.ffn_hidden,
            return_attention=self.return_attention,
            actor_logit=self.actor_logit,
        )
        return config


@dataclasses.dataclass(frozen=True)
class TxI3DHeadConfig(ActionTransformerConfig):
    """Options of `TxI3DHead`: the Tx classifier's (`ActionTransformerConfig`'s fields and flags)
    and the I3D box regressor's dropout; the I3D tail takes the trunk's width and BatchNorm."""

    runs_i3d_tail = True
    i3d_dropout: float = 0.3  # paper silent: the I3D head's

    def head_kwargs(self, trunk=None) -> dict:
        return dict(super().head_kwargs(), **_tail_kwargs(trunk))
