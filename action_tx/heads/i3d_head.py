"""`i3d`: the I3D head of action_transformer.txt §3.3 (Figure 3).

The ST-RoIPool tube of each RoI ([T', 7, 7, C], §3.4) goes through the I3D layers the trunk
dropped (MaxPool3d_5a_2x2, Mixed_5b, Mixed_5c), is averaged over time and space, and linear
layers give the action logits and a class-agnostic box refinement. It sees only the person's
tube: the context-free reference the relational heads are compared with.
"""

import keras
import tensorflow as tf

from action_tx.heads.base import ActionHead, HeadInputs, HeadOutputs
from action_tx.trunks.i3d import InceptionI3D


@keras.saving.register_keras_serializable(package="action_tx")
class I3DHead(ActionHead):
    """Mixed_5a-5c on RoI tubes -> pool -> dropout -> linear logits and box deltas.

    Args:
      num_classes: action classes C.
      width_multiplier: must equal the trunk's, so the tail takes its Mixed_4f channels
        (and Kinetics weights of Mixed_5b/5c load into it at 1.0).
      freeze_bn: BatchNorm of the tail in inference mode (paper §3.5 fixes BN statistics).
      dropout: on the pooled feature. The paper is silent; we use the Tx head's 0.3 (§3.4) so
        the two heads differ only in how they build the feature.
      regress_boxes: also predict class-agnostic box deltas (paper: "linear layers for
        classification and bounding box regression").
      classify: build the action classifier. False only inside a composite head that takes
        its logits elsewhere (`tx_i3d`); then `logits` is None, so the head alone does not
        meet the contract of `HeadOutputs` and must not be used as a detector's head.
      actor_logit: also a linear person logit [B, N] beside the action logits (needs
        `classify`): the paper's classifier covers "C action classes plus background" (§3),
        the second-stage rescoring of Faster R-CNN.
    """

    def __init__(
        self,
        num_classes: int,
        width_multiplier: float = 1.0,
        freeze_bn: bool = False,
        dropout: float = 0.3,
        regress_boxes: bool = True,
        classify: bool = True,
        actor_logit: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.width_multiplier = width_multiplier
        self.freeze_bn = freeze_bn
        self.dropout = dropout
        self.regress_boxes = regress_boxes
        self.classify = classify
        self.actor_logit = actor_logit
        self.tail = InceptionI3D(
            first_endpoint="MaxPool3d_5a_2x2",
            final_endpoint="Mixed_5c",
            width_multiplier=width_multiplier,
            freeze_bn=freeze_bn,
            name="i3d_tail",
        )
        self._dropout = keras.layers.Dropout(dropout)
        self._classifier = keras.layers.Dense(num_classes, name="cls_logits") if classify else None
        self._actor = (
            keras.layers.Dense(1, name="actor_logit") if classify and actor_logit else None
        )
        self._box = (
            keras.layers.Dense(
                4,
                kernel_initializer=keras.initializers.RandomNormal(stddev=0.001),
                name="box_deltas",
            )
            if regress_boxes
            else None
        )

    def build(self, inputs_shape=None):
        # Sub-layers are built lazily on the first call (the tube shape comes with it).
        self.built = True

    def tail_features(self, tubes, training=None):
        """The head's feature: tubes [B, N, T', S, S, C] (ST-RoIPool of Mixed_4f) -> the
        Mixed_5a-5c tail averaged over time and space [B, N, C5] (before dropout)."""
        shape = tf.shape(tubes)
        flat = tf.reshape(tubes, tf.concat([[shape[0] * shape[1]], shape[2:]], 0))
        flat.set_shape([None] + tubes.shape[2:].as_list())
        x = self.tail(flat, training=training)  # [B*N, T'/2, 4, 4, C5]
        pooled = tf.reduce_mean(x, axis=[1, 2, 3])
        return tf.reshape(pooled, tf.stack([shape[0], shape[1], pooled.shape[-1]]))

    def call(self, inputs: HeadInputs, training=None) -> HeadOutputs:
        pooled = self.tail_features(inputs.roi_features, training=training)
        pooled = self._dropout(pooled, training=training)
        mask = tf.cast(inputs.roi_mask, pooled.dtype)[..., None]
        logits = self._classifier(pooled) * mask if self._classifier is not None else None
        deltas = self._box(pooled) * mask if self._box is not None else None
        actor = tf.squeeze(self._actor(pooled) * mask, -1) if self._actor is not None else None
        return HeadOutputs(logits=logits, box_deltas=deltas, actor_logits=actor)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            width_multiplier=self.width_multiplier,
            freeze_bn=self.freeze_bn,
            dropout=self.dropout,
            regress_boxes=self.regress_boxes,
            classify=self.classify,
            actor_logit=self.actor_logit,
        )
        return config
