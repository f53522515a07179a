"""RPNHead: the Faster R-CNN RPN head as a thin Keras 3 layer."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="object_detection_ext")
class RPNHead(keras.layers.Layer):
    """3x3 conv + ReLU, then 1x1 convs for objectness (A logits) and box deltas (4A).

    call(features [B, H', W', C]) -> (objectness_logits [B, H'*W'*A] float32,
    box_deltas [B, H'*W'*A, 4] float32), in the anchor order of `rpn.generate_anchors`
    (row-major cells, then anchor type). Initialisation N(0, 0.01), zero bias, as Faster R-CNN.

    Args:
      num_anchors: A, anchor types per cell (`rpn.num_anchors_per_location`).
      filters: width of the 3x3 conv (Faster R-CNN: 512 on VGG; the Mixed_4f input has 832).
    """

    def __init__(self, num_anchors: int, filters: int = 512, **kwargs):
        super().__init__(**kwargs)
        self.num_anchors = num_anchors
        self.filters = filters
        init = keras.initializers.RandomNormal(stddev=0.01)
        self.conv = keras.layers.Conv2D(
            filters, 3, padding="same", activation="relu", kernel_initializer=init, name="conv"
        )
        self.objectness = keras.layers.Conv2D(
            num_anchors, 1, kernel_initializer=init, name="objectness"
        )
        self.deltas = keras.layers.Conv2D(
            4 * num_anchors, 1, kernel_initializer=init, name="deltas"
        )

    def build(self, input_shape):
        self.conv.build(input_shape)
        mid = tuple(input_shape[:-1]) + (self.filters,)
        self.objectness.build(mid)
        self.deltas.build(mid)

    def call(self, features):
        x = self.conv(features)
        batch = tf.shape(features)[0]
        logits = tf.reshape(self.objectness(x), tf.stack([batch, -1]))
        deltas = tf.reshape(self.deltas(x), tf.stack([batch, -1, 4]))
        return tf.cast(logits, tf.float32), tf.cast(deltas, tf.float32)

    def get_config(self):
        config = super().get_config()
        config.update(num_anchors=self.num_anchors, filters=self.filters)
        return config
