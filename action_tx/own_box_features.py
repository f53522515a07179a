"""Features of an actor from its own pixels alone: the blind actor view of the heads suite's
instrument check (`action_tx.bench.chance`), written by `feature_extraction` with
pixels='own_box'."""

import tensorflow as tf

from object_detection_ext import box_ops

# What the trunk sees for an actor's features: the whole frame (every layer's receptive field
# reaches the other people), or only the actor's own box (the heads suite's blind run).
PIXELS = ("frame", "own_box")


def own_box_features(detector, clip, boxes, mask, feature_layer: str = "trunk") -> tf.Tensor:
    """Each box's pooled features from a clip in which only that box is visible: every pixel
    outside the box, in every frame, is mid-grey (0 of the trunk's [-1, 1] input) before the
    trunk, so nothing of another person or object reaches the feature, however far the
    trunk's receptive field reaches. One trunk pass per real box.

    Args:
      detector: a built `ActionDetector`. clip: float [B, T, H, W, 3] in [-1, 1].
      boxes: float [B, N, 4] normalized yxyx; mask: bool [B, N] (real boxes).
      feature_layer: as `ActionDetector.detect_with_features` ('trunk' or 'Mixed_5c').
    Returns:
      float32 [B, N, C] (zero rows at padding).
    """
    index = tf.where(mask)  # [M, 2] (keyframe, box)
    own = tf.gather_nd(boxes, index)  # [M, 4]
    inside = box_ops.inside_box_mask(own, tf.shape(clip)[2], tf.shape(clip)[3])  # [M, H, W]
    clips = tf.where(inside[:, None, :, :, None], tf.gather(clip, index[:, 0]), 0.0)
    features = detector.trunk(clips, training=False)
    one = tf.ones_like(own[:, :1], tf.bool)  # [M, 1]: each clip pools its own box
    tubes = detector.roi_extractor(features, own[:, None], one)  # [M, 1, T', S, S, C]
    if feature_layer == "Mixed_5c":
        pooled = detector.head.tail_features(tubes, training=False)  # [M, 1, C]
    else:
        pooled = tf.reduce_mean(tubes, axis=[2, 3, 4])
    pooled = tf.cast(pooled[:, 0], tf.float32)
    shape = tf.concat(
        [tf.shape(mask, out_type=tf.int64), tf.shape(pooled, out_type=tf.int64)[1:]], 0
    )
    return tf.scatter_nd(index, pooled, shape)
