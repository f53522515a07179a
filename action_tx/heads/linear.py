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
    """

    def __init__(self, num_classes: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.dropout = dropout
        self._dropout = keras.layers.Dropout(dropout)
        self._classifier = keras.layers.Dense(num_classes, name="cls_logits")

    def call(self, inputs: HeadInputs, training=None) -> HeadOutputs:
        # roi_features [B, N, T', S, S, C] -> [B, N, C]
        pooled = tf.reduce_mean(inputs.roi_features, axis=[2, 3, 4])
        logits = self._classifier(self._dropout(pooled, training=training))
        return HeadOutputs(logits=logits)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, dropout=self.dropout)
        return config
