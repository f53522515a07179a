"""ActionDetector: the Faster R-CNN-style action detector of action_transformer.txt Figure 2.

    clip -> trunk -> features --(central slice)--> proposer -> RoIs
                         \\                                    |
                          +-----> ST-RoIAlign(features, RoIs) -+-> head -> logits, box deltas
                                                                          -> post-processing

The pieces are composed, not configured: `ActionDetector(trunk=..., proposer=..., head=...)`.
"""

from typing import Dict, Optional, Sequence

import keras
import tensorflow as tf

from action_tx import losses
from action_tx.heads.base import HeadInputs
from object_detection_ext import rpn
from object_detection_ext.postprocess import combine_person_scores, postprocess
from object_detection_ext.sampling import sample_rois
from object_detection_ext.st_roi_align import STRoIAlign


@keras.saving.register_keras_serializable(package="action_tx")
class ActionDetector(keras.Model):
    """Trunk + proposer + RoI extractor + head, with training targets, losses and detections.

    Args:
      trunk: layer clip [B, T, H, W, 3] -> features [B, T', H', W', C] (InceptionI3D to Mixed_4f).
      proposer: `object_detection_ext.proposer.Proposer` ('rpn', 'external' or 'gt' boxes).
      head: a head of `action_tx.heads.HEADS` (HeadInputs -> HeadOutputs).
      num_classes: action classes C (contiguous indices of the label map).
      roi_extractor: layer (features, rois, roi_mask) -> tubes [B, N, T', 7, 7, C];
        default ST-RoIPool 14x14 -> max pool 7x7 (paper §3.4).
      use_objects: also pool object tubes (batch `objects`); None (default): the head's
        `uses_objects` (`action_tx.heads.base.ActionHead`).
      pose_indices: contiguous class indices under one softmax (ACAR §4.1 `--pose_softmax`).
      focal_gamma, focal_alpha: focal loss on the sigmoid classes (HGRNN §3.3: gamma = 2).
      num_roi_samples, positive_fraction: second-stage RoI sample per clip in training.
      rpn_weight, box_weight: loss weights of the RPN terms and the box regression term.
      nms_iou, max_detections, score_threshold: post-processing.
      class_specific_nms: NMS per action class on person score x action probability (HGRNN
        §3.3) instead of class-agnostic NMS on the person score (`postprocess`).
      seed: seed of the RoI / anchor samplers (a Keras SeedGenerator, so its state is
        checkpointed with the model and a resumed run draws the same samples).
      person_score: how a detection's person score is made when the head has an actor logit
        (the background class of action_transformer.txt §3; `HeadOutputs.actor_logits`):
        'actor' (its probability a alone, Faster R-CNN's second-stage rescoring), 'product'
        (a x the proposal score p: RPN objectness or external detector score), 'geometric'
        (sqrt(a p)) or 'proposal' (p alone, as for heads without one). Default 'geometric',
        chosen by measurement (issue 27, two demo-size runs of 900 steps): it kept the
        localization AP@0.5 and frame-mAP of 'proposal' and raised AP@0.75 a little, where
        'actor' lost AP@0.5 (0.79 vs 0.83). External boxes are rescored like RPN proposals,
        with their detector score as p. Ground-truth boxes (proposals 'gt') keep their given
        score 1: they are persons by definition, so they are never rescored.
      actor_weight: weight of the actor loss (sigmoid cross-entropy of the actor logit on the
        sampled RoIs: 1 for IoU >= 0.5 with a person, else 0). No actor loss with proposals
        'gt': every RoI is a person there, nothing to tell apart.
      background_rois: train the second stage on background samples too (Faster R-CNN: RoIs
        with IoU < 0.5, all-zero action targets). False trains on labelled actor boxes only:
        the ground truth plus the proposals matched to it (IoU >= 0.5), as ACAR-Net's release
        does (its `models/necks/basic.py` builds the RoIs from the labelled boxes alone).
    """

    def __init__(
        self,
        trunk,
        proposer,
        head,
        num_classes: int,
        roi_extractor=None,
        use_objects: Optional[bool] = None,
        pose_indices: Optional[Sequence[int]] = None,
        focal_gamma: float = 0.0,
        focal_alpha: Optional[float] = None,
        num_roi_samples: int = 64,
        positive_fraction: float = 0.25,
        rpn_weight: float = 1.0,
        box_weight: float = 1.0,
        nms_iou: float = 0.6,
        max_detections: int = 100,
        score_threshold: float = 0.0,
        seed: int = 0,
        class_specific_nms: bool = False,
        person_score: str = "geometric",
        actor_weight: float = 1.0,
        background_rois: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.trunk = trunk
        self.proposer = proposer
        self.head = head
        self.num_classes = num_classes
        self.roi_extractor = (
            roi_extractor
            if roi_extractor is not None
            else STRoIAlign(crop_size=14, output_size=7, pool="max", name="st_roi_pool")
        )
        self.use_objects = bool(head.uses_objects if use_objects is None else use_objects)
        self.pose_indices = list(pose_indices) if pose_indices else None
        self.focal_gamma = focal_gamma
        self.focal_alpha = focal_alpha
        self.num_roi_samples = num_roi_samples
        self.positive_fraction = positive_fraction
        self.rpn_weight = rpn_weight
        self.box_weight = box_weight
        self.nms_iou = nms_iou
        self.max_detections = max_detections
        self.score_threshold = score_threshold
        self.seed = seed
        self.class_specific_nms = class_specific_nms
        combine_person_scores(tf.zeros([1, 1]), None, person_score)  # validates the rule
        self.person_score = person_score
        self.actor_weight = actor_weight
        self.background_rois = background_rois
        self.seed_generator = keras.random.SeedGenerator(seed, name="sampler_seed")

    def build(self, input_shape=None):
        """Nothing to create here: every sub-layer builds on the first (eager) call. Without
        this, Keras first traces call() symbolically to build them, a pass in which the AIA
        memory tables (created in the head's build) are not yet variables to write to."""
        self.built = True

    def _next_seed(self) -> tf.Tensor:
        return tf.cast(self.seed_generator.next(), tf.int32)

    def call(self, batch: Dict[str, tf.Tensor], training=None) -> Dict[str, tf.Tensor]:
        """Forward pass.

        Args:
          batch: the batch dict of docs/DESIGN.md; `clip` is required; `boxes`, `box_mask`,
            `labels` are needed in training; `proposals*` for external proposals, `objects*`
            when `use_objects`; `keyframe_mask` and `target_mask` [B] with runs of
            consecutive keyframes (their roi_mask is false where target_mask is).
          training: True samples RoIs against the ground truth and returns the targets.

        Returns:
          dict with rois [B, N, 4], roi_mask [B, N], roi_scores [B, N], logits [B, N, C],
          box_deltas [B, N, 4] (or absent), attention (head specific, if any), actor_logits
          [B, N] (heads with a background class); in training also roi_labels [B, N, C],
          roi_box_targets [B, N, 4], roi_is_positive [B, N], roi_actor_targets [B, N] (float
          1/0: IoU >= 0.5 with a person; with an actor logit and sampled RoIs) and the RPN
          outputs and targets; outside training also person_scores [B, N] (the rule of
          `person_score`) and the detections of `postprocess` (detection_boxes,
          detection_scores, action_scores, num_detections).
        """
        return self._forward(batch, training)[0]

    def _forward(self, batch, training):
        """`call`'s pass -> (its outputs, the trunk features [B, T', H', W', C])."""
        features = self.trunk(batch["clip"], training=training)
        proposals = self.proposer(features, batch)
        out = dict(proposals)
        rois, roi_mask = proposals["proposals"], proposals["proposal_mask"]
        roi_scores = proposals["proposal_scores"]
        if training:
            if self.proposer.mode == "gt":
                # Classification given GT boxes (paper §4.2): every RoI is a positive.
                out.update(
                    roi_labels=tf.cast(batch["labels"], tf.float32),
                    roi_is_positive=roi_mask,
                    roi_box_targets=tf.zeros_like(rois),
                )
            else:
                sample = sample_rois(
                    rois,
                    roi_mask,
                    batch["boxes"],
                    batch["box_mask"],
                    batch["labels"],
                    seed=self._next_seed(),
                    num_samples=self.num_roi_samples,
                    positive_fraction=(self.positive_fraction if self.background_rois else 1.0),
                )
                rois, roi_mask = sample["rois"], sample["roi_mask"]
                if not self.background_rois:
                    roi_mask = roi_mask & sample["is_positive"]
                # A sampled RoI's score is how well it covers its person (IoU with the matched
                # ground truth, 1 for an added GT box), so a head keeping one box per person
                # (AIA's memory) keeps the best; background 0.
                roi_scores = tf.where(sample["is_positive"], sample["max_iou"], 0.0)
                out.update(
                    roi_labels=sample["labels"],
                    roi_is_positive=sample["is_positive"],
                    roi_box_targets=sample["box_targets"],
                )
                if self.background_rois:
                    # Actor targets (Faster R-CNN second stage): a sampled RoI is a person
                    # when its IoU with a ground-truth person is >= 0.5. Without background
                    # samples there is nothing to tell apart, so no actor loss.
                    out["roi_actor_targets"] = tf.cast(sample["is_positive"], tf.float32)
            if "rpn_objectness" in proposals:
                targets = rpn.rpn_targets(
                    proposals["anchors"], batch["boxes"], batch["box_mask"], seed=self._next_seed()
                )
                out.update(rpn_labels=targets["labels"], rpn_box_targets=targets["box_targets"])
        roi_features = self.pool_rois(features, rois, roi_mask)
        objects = object_mask = object_features = None
        if self.use_objects:
            objects, object_mask = batch["objects"], tf.cast(batch["object_mask"], tf.bool)
            object_features = self.pool_rois(features, objects, object_mask)
        keyframe_mask = batch.get("keyframe_mask")
        head_out = self.head(
            HeadInputs(
                features=features,
                rois=rois,
                roi_mask=roi_mask,
                roi_features=roi_features,
                roi_scores=roi_scores,
                objects=objects,
                object_mask=object_mask,
                object_features=object_features,
                video_index=batch.get("video_index"),
                timestamp=batch.get("timestamp"),
                keyframe_index=batch.get("keyframe_index"),
                keyframe_mask=(
                    tf.cast(keyframe_mask, tf.bool) if keyframe_mask is not None else None
                ),
                roi_labels=out.get("roi_labels"),
            ),
            training=training,
        )
        if "target_mask" in batch:
            # Runs of consecutive keyframes (`build_dataset(consecutive=True)`): context and
            # padding keyframes fed the head's temporal part only; no loss, no detections.
            target = tf.cast(batch["target_mask"], tf.bool) & tf.cast(keyframe_mask, tf.bool)
            roi_mask = roi_mask & target[:, None]
            if training:
                out["roi_is_positive"] = out["roi_is_positive"] & target[:, None]
                if "rpn_labels" in out:
                    out["rpn_labels"] = tf.where(target[:, None], out["rpn_labels"], -1)
        out.update(rois=rois, roi_mask=roi_mask, roi_scores=roi_scores, logits=head_out.logits)
        if head_out.box_deltas is not None:
            out["box_deltas"] = head_out.box_deltas
        if head_out.attention is not None:
            out["attention"] = head_out.attention
        if head_out.actor_logits is not None:
            out["actor_logits"] = head_out.actor_logits
        if not training:
            out["person_scores"] = self.person_scores(roi_scores, head_out.actor_logits)
            out.update(
                postprocess(
                    rois,
                    roi_mask,
                    out["person_scores"],
                    losses.action_probabilities(head_out.logits, self.pose_indices),
                    head_out.box_deltas,
                    nms_iou=self.nms_iou,
                    max_detections=self.max_detections,
                    score_threshold=self.score_threshold,
                    class_specific_nms=self.class_specific_nms,
                    # Given boxes (ground truth, or external detections that their detector has
                    # already suppressed) keep one row each, also where people overlap: NMS runs
                    # over the RPN's proposals only (issue 27: the GT-box bound stays unbiased).
                    nms=self.proposer.mode == "rpn",
                )
            )
        return out, features

    def pool_rois(self, features, boxes, mask):
        """The head's RoI tubes: features [B, T', H', W', C], boxes [B, N, 4], mask [B, N] ->
        [B, N, T', S, S, C], or [B, N, 1, S, S, C] of the slice T'//2 for a head that reads
        only that one (`ActionHead.roi_time_slices`)."""
        if self.head.roi_time_slices == "centre":
            centre = tf.shape(features)[1] // 2
            features = features[:, centre : centre + 1]
        return self.roi_extractor(features, boxes, mask)

    def detect_with_features(
        self,
        batch: Dict[str, tf.Tensor],
        feature_layer: str = "trunk",
        boxes: Optional[Dict[str, tuple]] = None,
    ) -> Dict[str, tf.Tensor]:
        """Inference (`call(batch, training=False)`, the same one pass) that also returns
        features of one layer, pooled per box and over the clip (the frozen features of
        `action_tx.feature_extraction`).

        Args:
          batch: as for `call`.
          feature_layer: 'trunk': the trunk's output (Mixed_4f, or Mixed_5c with
            `build_detector(trunk_endpoint="Mixed_5c")`), each box's ST-RoIAlign tube averaged
            over time and space. 'Mixed_5c': the I3D head's fine-tuned Mixed_5a-5c tail
            (`i3d`, `tx_i3d` heads) on the box's tube, averaged as that head does
            (`head.tail_features`), and the same tail over the whole trunk map for
            `feature_map` (STAGE §4 and HGRNN §3.1 read I3D features after Mixed_5c).
          boxes: name -> (boxes [B, n, 4] normalized yxyx, mask [B, n]) of further boxes to
            pool (e.g. the ground truth and the objects).

        Returns:
          `call`'s outputs (detections included) plus `feature_map` [B, T'', H'', W'', C] of
          the layer, `detection_features` [B, K, C] of `detection_boxes`, and
          `<name>_features` [B, n, C] for each entry of `boxes` (rows of masked boxes are
          whatever the pooling gives; the masks say which are real).
        """
        out, features = self._forward(batch, training=False)
        if feature_layer == "trunk":
            feature_map = features
            pool = lambda b, m: tf.reduce_mean(  # noqa: E731
                self.roi_extractor(features, b, m), axis=[2, 3, 4]
            )
        elif feature_layer == "Mixed_5c":
            if self.head.tail is None:
                raise ValueError(
                    f"feature_layer='Mixed_5c' needs a head with an I3D Mixed_5 "
                    f"tail (i3d, tx_i3d), not {type(self.head).__name__}"
                )
            feature_map = self.head.tail(features, training=False)
            pool = lambda b, m: self.head.tail_features(  # noqa: E731
                self.roi_extractor(features, b, m), training=False
            )
        else:
            raise ValueError(f"feature_layer must be 'trunk' or 'Mixed_5c', got {feature_layer!r}")
        k = tf.shape(out["detection_scores"])[1]
        det_mask = tf.range(k)[None] < out["num_detections"][:, None]
        out.update(
            feature_map=feature_map, detection_features=pool(out["detection_boxes"], det_mask)
        )
        for name, (b, m) in (boxes or {}).items():
            out[f"{name}_features"] = pool(b, tf.cast(m, tf.bool))
        return out

    def person_scores(
        self, proposal_scores: tf.Tensor, actor_logits: Optional[tf.Tensor]
    ) -> tf.Tensor:
        """Person score [B, N] of each RoI: `person_score`'s rule on the proposal scores [B, N]
        and the head's actor logits [B, N] (None: the proposal scores). Ground-truth boxes
        keep their score."""
        if actor_logits is None or self.proposer.mode == "gt":
            return tf.cast(proposal_scores, tf.float32)
        return combine_person_scores(
            proposal_scores, tf.sigmoid(tf.cast(actor_logits, tf.float32)), self.person_score
        )

    def compute_losses(self, outputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """Loss terms of a training forward pass (`call(batch, training=True)`).

        Returns:
          dict of scalar float32: action_loss, actor_loss, box_loss, rpn_objectness_loss,
          rpn_box_loss (the terms that apply) and total_loss, their weighted sum.
        """
        logits = tf.cast(outputs["logits"], tf.float32)
        terms = {
            "action_loss": losses.action_classification_loss(
                outputs["roi_labels"],
                logits,
                tf.cast(outputs["roi_mask"], tf.float32),
                pose_indices=self.pose_indices,
                focal_gamma=self.focal_gamma,
                focal_alpha=self.focal_alpha,
            )
        }
        total = terms["action_loss"]
        if "actor_logits" in outputs and "roi_actor_targets" in outputs:
            terms["actor_loss"] = losses.actor_loss(
                outputs["roi_actor_targets"],
                tf.cast(outputs["actor_logits"], tf.float32),
                tf.cast(outputs["roi_mask"], tf.float32),
            )
            total += self.actor_weight * terms["actor_loss"]
        if "box_deltas" in outputs and self.proposer.mode != "gt":
            terms["box_loss"] = losses.box_regression_loss(
                outputs["roi_box_targets"],
                tf.cast(outputs["box_deltas"], tf.float32),
                outputs["roi_is_positive"],
            )
            total += self.box_weight * terms["box_loss"]
        if "rpn_labels" in outputs:
            obj, box = rpn.rpn_losses(
                outputs["rpn_objectness"],
                outputs["rpn_deltas"],
                outputs["rpn_labels"],
                outputs["rpn_box_targets"],
            )
            terms.update(rpn_objectness_loss=obj, rpn_box_loss=box)
            total += self.rpn_weight * (obj + box)
        terms["total_loss"] = total
        return terms

    def get_config(self):
        config = super().get_config()
        ser = keras.saving.serialize_keras_object
        config.update(
            trunk=ser(self.trunk),
            proposer=ser(self.proposer),
            head=ser(self.head),
            num_classes=self.num_classes,
            roi_extractor=ser(self.roi_extractor),
            use_objects=self.use_objects,
            pose_indices=self.pose_indices,
            focal_gamma=self.focal_gamma,
            focal_alpha=self.focal_alpha,
            num_roi_samples=self.num_roi_samples,
            positive_fraction=self.positive_fraction,
            rpn_weight=self.rpn_weight,
            box_weight=self.box_weight,
            nms_iou=self.nms_iou,
            max_detections=self.max_detections,
            score_threshold=self.score_threshold,
            seed=self.seed,
            class_specific_nms=self.class_specific_nms,
            person_score=self.person_score,
            actor_weight=self.actor_weight,
            background_rois=self.background_rois,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("trunk", "proposer", "head", "roi_extractor"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
