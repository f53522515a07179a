"""FeatureActionModel: a head on frozen trunk features (`action_tx.data.features` batches).

    feature batch --(HeadInputs: context map, pooled actor / object vectors)--> head -> logits
                                                                  -> post-processing (eval)

Same `call(batch, training)` outputs and `compute_losses` as `ActionDetector`, so
`action_tx.train_lib` and `action_tx.eval_lib` drive it unchanged.
"""

from typing import Dict, Optional, Sequence

import keras
import tensorflow as tf

from action_tx import losses
from action_tx.heads.base import HeadInputs
from object_detection_ext.postprocess import postprocess


@keras.saving.register_keras_serializable(package="action_tx")
class FeatureActionModel(keras.Model):
    """A head of `action_tx.heads.HEADS` trained on stored features (issue 7).

    Args:
      head: layer HeadInputs -> HeadOutputs; it gets features [B, 1, M, M, C],
        roi_features [B, N, 1, 1, 1, C], object_features [B, O, 1, 1, 1, C].
      num_classes: action classes.
      pose_indices, focal_gamma, focal_alpha: the action loss (`losses.action_classification_loss`).
      nms_iou, max_detections, score_threshold: post-processing of the stored boxes.
      class_specific_nms: NMS per action class on person x action score (HGRNN §3.3).
      nms: False runs no NMS over the stored boxes: for ground-truth boxes (`eval_actors='gt'`,
        the classification bound), where overlapping people must keep their own rows.
    The heads' actor logits (`HeadOutputs.actor_logits`) are not used here: the stored
    detections carry the final person score of the detector that wrote them.
    """

    def __init__(
        self,
        head,
        num_classes: int,
        pose_indices: Optional[Sequence[int]] = None,
        focal_gamma: float = 0.0,
        focal_alpha: Optional[float] = None,
        nms_iou: float = 0.6,
        max_detections: int = 100,
        score_threshold: float = 0.0,
        class_specific_nms: bool = False,
        nms: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.head = head
        self.num_classes = num_classes
        self.pose_indices = list(pose_indices) if pose_indices else None
        self.focal_gamma = focal_gamma
        self.focal_alpha = focal_alpha
        self.nms_iou = nms_iou
        self.max_detections = max_detections
        self.score_threshold = score_threshold
        self.class_specific_nms = class_specific_nms
        self.nms = nms

    def build(self, input_shape=None):
        """Nothing to create here: every sub-layer builds on the first (eager) call. Without
        this, Keras first traces call() symbolically to build them, a pass in which the AIA
        memory tables (created in the head's build) are not yet variables to write to."""
        self.built = True

    def call(self, batch: Dict[str, tf.Tensor], training=None) -> Dict[str, tf.Tensor]:
        """Forward pass on a feature batch (keys of `build_feature_dataset`).

        Returns:
          dict with rois [B, N, 4], roi_mask [B, N] (= batch roi_mask & target_mask: context
          keyframes get no loss and no detections), roi_scores [B, N], logits [B, N, K],
          attention (if the head returns it); in training also roi_labels [B, N, K] and
          roi_is_positive [B, N]; outside training the detections of `postprocess`
          (detection_boxes, detection_scores, action_scores, num_detections, ...).
        """
        rois = tf.cast(batch["rois"], tf.float32)
        roi_mask = tf.cast(batch["roi_mask"], tf.bool)
        roi_scores = tf.cast(batch["roi_scores"], tf.float32)
        keyframe_mask = tf.cast(batch["keyframe_mask"], tf.bool)
        target = keyframe_mask & tf.cast(batch.get("target_mask", keyframe_mask), tf.bool)
        labels = tf.cast(batch["labels"], tf.float32) if training else None
        objects = batch.get("objects")
        head_out = self.head(
            HeadInputs(
                features=batch["features"],
                rois=rois,
                roi_mask=roi_mask,
                roi_features=batch["roi_features"],
                roi_scores=roi_scores,
                objects=objects,
                object_mask=(
                    tf.cast(batch["object_mask"], tf.bool) if objects is not None else None
                ),
                object_features=batch.get("object_features"),
                video_index=batch.get("video_index"),
                timestamp=batch.get("timestamp"),
                keyframe_index=batch.get("keyframe_index"),
                keyframe_mask=keyframe_mask,
                roi_labels=labels,
            ),
            training=training,
        )
        out_mask = roi_mask & target[:, None]
        out = dict(rois=rois, roi_mask=out_mask, roi_scores=roi_scores, logits=head_out.logits)
        if head_out.attention is not None:
            out["attention"] = head_out.attention
        if training:
            out.update(roi_labels=labels, roi_is_positive=out_mask)
        else:
            # The stored boxes are the trunk checkpoint's final (already refined) detections or
            # gt boxes; a head's box deltas are not trained in feature mode, so they are unused.
            out.update(
                postprocess(
                    rois,
                    out_mask,
                    roi_scores,
                    losses.action_probabilities(head_out.logits, self.pose_indices),
                    None,
                    nms_iou=self.nms_iou,
                    max_detections=self.max_detections,
                    score_threshold=self.score_threshold,
                    class_specific_nms=self.class_specific_nms,
                    nms=self.nms,
                )
            )
        return out

    def compute_losses(self, outputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """Loss terms of a training forward pass: action_loss and total_loss (equal)."""
        loss = losses.action_classification_loss(
            outputs["roi_labels"],
            tf.cast(outputs["logits"], tf.float32),
            tf.cast(outputs["roi_mask"], tf.float32),
            pose_indices=self.pose_indices,
            focal_gamma=self.focal_gamma,
            focal_alpha=self.focal_alpha,
        )
        return {"action_loss": loss, "total_loss": loss}

    def get_config(self):
        config = super().get_config()
        config.update(
            head=keras.saving.serialize_keras_object(self.head),
            num_classes=self.num_classes,
            pose_indices=self.pose_indices,
            focal_gamma=self.focal_gamma,
            focal_alpha=self.focal_alpha,
            nms_iou=self.nms_iou,
            max_detections=self.max_detections,
            score_threshold=self.score_threshold,
            class_specific_nms=self.class_specific_nms,
            nms=self.nms,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["head"] = keras.saving.deserialize_keras_object(config["head"])
        return cls(**config)
