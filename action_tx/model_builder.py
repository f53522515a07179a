"""Builds an `ActionDetector` from plain keyword arguments (tools map flags onto these)."""

from typing import Any, Dict, Optional, Sequence

from action_tx.detector import ActionDetector
from action_tx.heads import HEADS
from action_tx.trunks.i3d import TRUNK_PRESETS, make_trunk
from object_detection_ext import rpn
from object_detection_ext.proposer import Proposer

# Heads that run the I3D tail (Mixed_5a-5c) and so must share the trunk's width and BN mode.
_I3D_TAIL_HEADS = ("i3d", "tx_i3d")
# Heads whose paper trains on labelled actor boxes only, no background samples (ACAR-Net §4.1:
# "ground-truth boxes and predicted human boxes"; its release labels each RoI from the boxes).
_LABELLED_ROI_HEADS = ("acar",)


# Trunk endpoints: the Action Transformer's Mixed_4f cut, or the whole backbone to Mixed_5c
# (ACAR-Net and AIA read the backbone's last stage) at stride 16 in space.
TRUNK_ENDPOINTS = ("Mixed_4f", "Mixed_5c")


def build_detector(
    *,
    num_classes: int,
    trunk: str = "i3d_tiny",
    width_multiplier: Optional[float] = None,
    freeze_bn: bool = False,
    trunk_endpoint: str = "Mixed_4f",
    head: str = "i3d",
    head_options: Optional[Dict[str, Any]] = None,
    proposals: str = "rpn",
    anchor_sizes: Sequence[float] = rpn.DEFAULT_SIZES,
    rpn_filters: int = 512,
    post_nms_top_k: int = 300,
    num_roi_samples: int = 64,
    pose_indices: Optional[Sequence[int]] = None,
    focal_gamma: float = 0.0,
    use_objects: Optional[bool] = None,
    max_detections: int = 100,
    class_specific_nms: bool = False,
    person_score: str = "geometric",
    background_rois: Optional[bool] = None,
    seed: int = 0,
) -> ActionDetector:
    """An ActionDetector: `trunk` preset of `TRUNK_PRESETS`, `head` of `HEADS`.

    Args:
      num_classes: action classes C.
      trunk: 'i3d' (the published Inception-I3D) or 'i3d_tiny' (quarter width, for CPUs).
      width_multiplier: overrides the preset's width.
      freeze_bn: BatchNorm statistics fixed (paper §3.5), in the trunk and any I3D tail.
      trunk_endpoint: 'Mixed_4f' (the Action Transformer's trunk, §3.1: the I3D layers after
        it form the `i3d` head) or 'Mixed_5c': the whole I3D backbone, its last stage read by
        ACAR-Net (§3, §4.1) and AIA (§3.1), with MaxPool3d_5a pooling time only so the
        features stay at stride 16 for the RPN and RoIAlign (ACAR §4.1 doubles res5's
        resolution). Heads that run the I3D tail themselves (`i3d`, `tx_i3d`) need Mixed_4f.
      head: key of `HEADS`; head_options: extra keyword arguments of that head.
      proposals: 'rpn' | 'external' | 'gt'.
      anchor_sizes: RPN anchor sizes in input pixels; rpn_filters: RPN conv width.
      post_nms_top_k: R, proposals kept (300 in the paper).
      num_roi_samples: second-stage RoIs per clip in training.
      pose_indices: contiguous class indices under one softmax (ACAR `--pose_softmax`).
      focal_gamma: focal loss exponent (HGRNN: 2).
      use_objects: pool object tubes; None: when the head reads them (`head.uses_objects`).
      max_detections: detections kept per clip after NMS.
      class_specific_nms: NMS per action class on person x action score (HGRNN §3.3).
      person_score: the person score rule of heads with an actor logit (`ActionDetector`).
      background_rois: train on background RoI samples too (`ActionDetector`); None: the
        head's paper (False for `acar`, whose release trains on labelled actor boxes only).
      seed: sampler seed.
    """
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; available heads: {sorted(HEADS)}")
    if trunk not in TRUNK_PRESETS:
        raise ValueError(f"unknown trunk {trunk!r}; available trunks: {sorted(TRUNK_PRESETS)}")
    if trunk_endpoint not in TRUNK_ENDPOINTS:
        raise ValueError(f"unknown trunk_endpoint {trunk_endpoint!r}; known: {TRUNK_ENDPOINTS}")
    if trunk_endpoint != "Mixed_4f" and head in _I3D_TAIL_HEADS:
        raise ValueError(
            f"head {head!r} runs the I3D Mixed_5 tail on RoI tubes: it needs "
            f"trunk_endpoint='Mixed_4f', not {trunk_endpoint!r}"
        )
    trunk_kwargs = {"freeze_bn": freeze_bn}
    if trunk_endpoint == "Mixed_5c":
        trunk_kwargs.update(final_endpoint="Mixed_5c", pool_5a_spatial_stride=1)
    if width_multiplier is not None:
        trunk_kwargs["width_multiplier"] = width_multiplier
    trunk_layer = make_trunk(trunk, **trunk_kwargs)
    options = dict(head_options or {})
    if head in _I3D_TAIL_HEADS:
        options.setdefault("width_multiplier", trunk_layer.width_multiplier)
        options.setdefault("freeze_bn", freeze_bn)
    head_layer = HEADS[head](num_classes=num_classes, **options)
    proposer = Proposer(
        mode=proposals,
        sizes=tuple(anchor_sizes),
        filters=rpn_filters,
        post_nms_top_k=post_nms_top_k,
    )
    return ActionDetector(
        trunk=trunk_layer,
        proposer=proposer,
        head=head_layer,
        num_classes=num_classes,
        use_objects=use_objects,
        pose_indices=pose_indices,
        focal_gamma=focal_gamma,
        num_roi_samples=num_roi_samples,
        max_detections=max_detections,
        class_specific_nms=class_specific_nms,
        person_score=person_score,
        background_rois=(
            head not in _LABELLED_ROI_HEADS if background_rois is None else background_rois
        ),
        seed=seed,
    )
