"""Builds an `ActionDetector` from a `ModelConfig` (or an `ExperimentConfig`).

detector = build_detector(ExperimentConfig(model=ModelConfig(head="tx"),
                                           data=DataConfig(label_map="labels.pbtxt")))
detector = build_detector(ModelConfig(head="linear", proposals="gt"), num_classes=3)
detector = build_detector(num_classes=3, head="linear", proposals="gt")   # ModelConfig fields
"""

from typing import Optional, Sequence, Union

from action_tx.config import ConfigError, ExperimentConfig, ModelConfig
from action_tx.detector import ActionDetector
from action_tx.heads import HEADS
from action_tx.trunks.i3d import make_trunk
from object_detection_ext.proposer import Proposer


def pose_indices(label_map) -> list:
    """Contiguous indices of the label map's pose classes (AVA ids 1-14)."""
    poses = label_map.categories().get("pose", [])
    return [i for i, c in enumerate(label_map.ids) if c in poses]


def softmax_indices(model: ModelConfig, label_map) -> Optional[list]:
    """The classes of `label_map` under one softmax (the models' `pose_indices`): all of them
    with `single_label_softmax`, AVA's poses with `pose_softmax`, else None (sigmoids only)."""
    if model.single_label_softmax:
        return list(range(label_map.num_classes))
    return pose_indices(label_map) if model.pose_softmax else None


def _classes(
    model: ModelConfig, label_map, num_classes: Optional[int], label_map_path: Optional[str]
):
    """-> (num_classes, pose_indices or None) from a LabelMap, its path, or a class count."""
    if label_map is None and num_classes is None and label_map_path:
        from action_tx.data import ava

        label_map = ava.read_label_map(label_map_path)
    if label_map is not None:
        return label_map.num_classes, softmax_indices(model, label_map)
    if num_classes is None:
        raise ConfigError(
            "build_detector needs the classes: a label map (data.label_map or "
            "label_map=) or num_classes="
        )
    if model.single_label_softmax:
        return int(num_classes), list(range(int(num_classes)))
    if model.pose_softmax:
        raise ConfigError("pose_softmax needs the label map (its pose classes), not num_classes")
    return int(num_classes), None


def build_head(model: ModelConfig, num_classes: int, trunk=None):
    """The head layer `model` names, for `num_classes` (`trunk`: the detector's, or None on
    stored features)."""
    head = HEADS[model.head][0](num_classes=num_classes, **model.head_options.head_kwargs(trunk))
    model.head_options.prepare(head)
    return head


def build_detector(
    config: Union[ExperimentConfig, ModelConfig, None] = None,
    *,
    label_map=None,
    num_classes: Optional[int] = None,
    pose_indices: Optional[Sequence[int]] = None,
    use_objects: Optional[bool] = None,
    **fields,
) -> ActionDetector:
    """The ActionDetector of `config` (an ExperimentConfig, or its ModelConfig), or of
    ModelConfig `fields` given as keywords (`head_options` a dict or the head's config).

    Classes: `label_map` (an `action_tx.data.ava.LabelMap`), else `num_classes`, else the
    ExperimentConfig's `data.label_map` file. `pose_indices` overrides the label map's pose
    classes; `use_objects` whether object tubes are pooled (None: when the head reads them,
    `head.uses_objects`). Raises ConfigError for a config that cannot be built.
    """
    path = None
    if isinstance(config, ExperimentConfig):
        config, path = config.model, config.data.label_map
    elif config is None:
        config = ModelConfig(**fields)
    elif fields:
        raise TypeError(f"build_detector: give a config or fields, not both ({sorted(fields)})")
    classes, poses = _classes(config, label_map, num_classes, path)
    poses = list(pose_indices) if pose_indices is not None else poses
    trunk_kwargs = {"freeze_bn": config.freeze_bn}
    if config.trunk_endpoint == "Mixed_5c":
        # The whole backbone, its MaxPool3d_5a pooling time only: stride 16 in space for the
        # RPN and RoIAlign (ACAR §4.1 doubles res5's resolution).
        trunk_kwargs.update(final_endpoint="Mixed_5c", pool_5a_spatial_stride=1)
    if config.width_multiplier is not None:
        trunk_kwargs["width_multiplier"] = config.width_multiplier
    trunk = make_trunk(config.trunk, **trunk_kwargs)
    head = build_head(config, classes, trunk)  # before the proposer, as the seeds were set
    proposer = Proposer(
        mode=config.proposals,
        sizes=config.anchor_sizes,
        filters=config.rpn_filters,
        post_nms_top_k=config.post_nms_top_k,
    )
    return ActionDetector(
        trunk=trunk,
        proposer=proposer,
        head=head,
        num_classes=classes,
        use_objects=use_objects,
        pose_indices=poses,
        focal_gamma=config.focal_gamma,
        num_roi_samples=config.num_roi_samples,
        max_detections=config.max_detections,
        class_specific_nms=config.class_specific_nms,
        person_score=config.person_score,
        background_rois=config.trains_on_background,
        seed=config.seed,
    )
