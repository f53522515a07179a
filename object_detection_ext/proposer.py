"""Proposer: where the detector's person boxes come from (`--proposals=rpn|external|gt`)."""

from typing import Dict, Mapping, Optional, Sequence, Tuple

import keras
import tensorflow as tf

from object_detection_ext import rpn
from object_detection_ext.rpn_head import RPNHead

MODES = ("rpn", "external", "gt")


def _get(batch: Mapping[str, tf.Tensor], key: str, mode: str) -> tf.Tensor:
    if batch is None or key not in batch:
        raise KeyError(
            f"proposals mode {mode!r} needs batch[{key!r}] (batch-dict contract in "
            f"docs/DESIGN.md); got keys {sorted(batch) if batch is not None else None}"
        )
    return batch[key]


def select_proposals(
    mode: str,
    batch: Optional[Mapping[str, tf.Tensor]] = None,
    rpn_proposals: Optional[Tuple[tf.Tensor, tf.Tensor, tf.Tensor]] = None,
) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Boxes, scores and mask of the chosen proposal source.

    Args:
      mode: 'rpn' (returns `rpn_proposals`), 'external' (batch `proposals`, `proposal_scores`,
        `proposal_mask`: the person detection CSV), or 'gt' (batch `boxes`, score 1, `box_mask`).
      batch: the batch dict (docs/DESIGN.md), needed for 'external' and 'gt'.
      rpn_proposals: (boxes [B, R, 4], scores [B, R], mask [B, R]) for 'rpn'.

    Returns:
      boxes float32 [B, N, 4] normalized yxyx, scores float32 [B, N] (0 at padding), mask bool
      [B, N].
    """
    if mode == "rpn":
        if rpn_proposals is None:
            raise ValueError(
                "select_proposals: mode 'rpn' needs rpn_proposals=(boxes, scores, mask)"
            )
        boxes, scores, mask = rpn_proposals
    elif mode == "external":
        boxes = _get(batch, "proposals", mode)
        scores = _get(batch, "proposal_scores", mode)
        mask = _get(batch, "proposal_mask", mode)
    elif mode == "gt":
        boxes = _get(batch, "boxes", mode)
        mask = _get(batch, "box_mask", mode)
        scores = tf.ones(tf.shape(mask), tf.float32)
    else:
        raise ValueError(f"select_proposals: mode must be one of {MODES}, got {mode!r}")
    mask = tf.cast(mask, tf.bool)
    return (
        tf.cast(boxes, tf.float32),
        tf.cast(scores, tf.float32) * tf.cast(mask, tf.float32),
        mask,
    )


@keras.saving.register_keras_serializable(package="object_detection_ext")
class Proposer(keras.layers.Layer):
    """Person proposals from the RPN on the temporally central trunk slice, or from the batch.

    call(features [B, T', H', W', C], batch dict or None) -> dict of
      proposals float32 [B, N, 4] normalized yxyx, proposal_scores float32 [B, N],
      proposal_mask bool [B, N]; in 'rpn' mode also rpn_objectness [B, H'*W'*A] (logits),
      rpn_deltas [B, H'*W'*A, 4] and anchors [H'*W'*A, 4] for `rpn.rpn_targets`/`rpn.rpn_losses`.
    The central slice is index T' // 2 (the keyframe sits at the clip centre). In 'rpn' mode H'
    and W' must be static (anchors are built once per shape by Model Garden's generator).
    Proposals carry no gradient (approximate joint training).

    Args:
      mode: 'rpn' | 'external' | 'gt'.
      stride, sizes, aspect_ratios: anchors (`rpn.generate_anchors`).
      filters: RPN head width.
      pre_nms_top_k, nms_iou, post_nms_top_k, min_size: `rpn.generate_proposals` (R = 300).
    """

    def __init__(
        self,
        mode: str = "rpn",
        stride: int = 16,
        sizes: Sequence[float] = rpn.DEFAULT_SIZES,
        aspect_ratios: Sequence[float] = rpn.DEFAULT_ASPECT_RATIOS,
        filters: int = 512,
        pre_nms_top_k: int = 6000,
        nms_iou: float = 0.7,
        post_nms_top_k: int = 300,
        min_size: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"Proposer: mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.stride = stride
        self.sizes = tuple(sizes)
        self.aspect_ratios = tuple(aspect_ratios)
        self.filters = filters
        self.pre_nms_top_k = pre_nms_top_k
        self.nms_iou = nms_iou
        self.post_nms_top_k = post_nms_top_k
        self.min_size = min_size
        self.head = None
        if mode == "rpn":
            self.head = RPNHead(
                rpn.num_anchors_per_location(self.sizes, self.aspect_ratios),
                filters=filters,
                name="rpn_head",
            )

    def build(self, features_shape, batch_shape=None):
        if self.head is not None:
            self.head.build((features_shape[0],) + tuple(features_shape[2:]))

    def call(self, features, batch=None) -> Dict[str, tf.Tensor]:
        if self.mode != "rpn":
            boxes, scores, mask = select_proposals(self.mode, batch)
            return {"proposals": boxes, "proposal_scores": scores, "proposal_mask": mask}
        height, width = features.shape[2], features.shape[3]
        if height is None or width is None:
            raise ValueError(
                f"Proposer(mode='rpn'): feature height/width must be static, got shape "
                f"{features.shape}"
            )
        central = features[
            :,
            features.shape[1] // 2 if features.shape[1] is not None else tf.shape(features)[1] // 2,
        ]
        logits, deltas = self.head(central)
        anchors = rpn.generate_anchors(
            (height, width), stride=self.stride, sizes=self.sizes, aspect_ratios=self.aspect_ratios
        )
        boxes, scores, mask = rpn.generate_proposals(
            logits,
            deltas,
            anchors,
            pre_nms_top_k=self.pre_nms_top_k,
            nms_iou=self.nms_iou,
            post_nms_top_k=self.post_nms_top_k,
            min_size=self.min_size,
        )
        return {
            "proposals": boxes,
            "proposal_scores": scores,
            "proposal_mask": mask,
            "rpn_objectness": logits,
            "rpn_deltas": deltas,
            "anchors": anchors,
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            mode=self.mode,
            stride=self.stride,
            sizes=list(self.sizes),
            aspect_ratios=list(self.aspect_ratios),
            filters=self.filters,
            pre_nms_top_k=self.pre_nms_top_k,
            nms_iou=self.nms_iou,
            post_nms_top_k=self.post_nms_top_k,
            min_size=self.min_size,
        )
        return config
