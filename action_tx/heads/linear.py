"""`linear`: the baseline every head is compared with (STAGE, Table 5 "FC"): a linear classifier
on the RoI tube averaged over time and space. It sees only the person's own box."""

import keras
import tensorflow as tf

from action_tx.heads.base import ActionHead, HeadInputs, HeadOutputs


@keras.saving.register_keras_serializable(package="action_tx")
class LinearHead(ActionHead):
    """Average-pooled RoI feature -> dropout -> linear logits. No box refinement.

    Args:
      num_classes: number of action classes C.
      dropout: dropout rate on the pooled feature.
      actor_logit: also a linear person logit [B, N] (`HeadOutputs.actor_logits`): STAGE's FC
        baseline, like STAGE, has an 81st background output (stage_graph_attention.txt §4).
    """

    def __init__(self, num_classes: int, dropout: float = 0.0, actor_logit: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.dropout = dropout
        self.actor_logit = actor_logit
        self._dropout = keras.layers.Dropout(dropout)
        self._classifier = keras.layers.Dense(num_classes, name="cls_logits")
        self._actor = keras.layers.Dense(1, name="actor_logit") if actor_logit else None

    def call(self, inputs: HeadInputs, training=None) -> HeadOutputs:
        # roi_features [B, N, T', S, S, C] -> [B, N, C]
        pooled = self._dropout(
            tf.reduce_mean(inputs.roi_features, axis=[2, 3, 4]), training=training
        )
        actor = (
            tf.squeeze(self._actor(pooled), -1) * tf.cast(inputs.roi_mask, pooled.dtype)
            if self._actor is not None
            else None
        )
        return HeadOutputs(logits=self._classifier(pooled), actor_logits=actor)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes, dropout=self.dropout, actor_logit=self.actor_logit
        )
        return config
