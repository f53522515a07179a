"""The four sections of an experiment config (`action_tx.config.ExperimentConfig`), each a
frozen dataclass that checks its own fields: `ModelConfig` (trunk, proposals, head and the head's
own options, a `HeadConfig` of `action_tx.heads.HEADS`), `DataConfig` (files and clip geometry,
both input modes), `TrainConfig` and `EvalConfig`; the values their fields take, and
`ConfigError`. `action_tx.config` re-exports every name.
"""

import dataclasses
from typing import TYPE_CHECKING, List, Optional, Tuple

if TYPE_CHECKING:  # the heads (TensorFlow) load when a ModelConfig is made, not on import
    from action_tx.heads.head_config import HeadConfig

PROPOSALS = ("rpn", "external", "gt")
INPUTS = ("frames", "features")
STRATEGIES = ("one_device", "mirrored", "multi_worker")
# action_tx.precision.PRECISIONS (kept here: no Keras on import).
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
# Trunk endpoints: the Action Transformer's Mixed_4f cut, or the whole backbone to Mixed_5c
# (ACAR-Net and AIA read the backbone's last stage) at stride 16 in space.
TRUNK_ENDPOINTS = ("Mixed_4f", "Mixed_5c")
# object_detection_ext.postprocess.PERSON_SCORE_RULES (kept here: no TensorFlow on import).
PERSON_SCORES = ("geometric", "actor", "product", "proposal")


class ConfigError(ValueError):
    """A configuration that cannot run; the message names every problem."""


def check_problems(problems: List[str], owner: str) -> None:
    """Raises ConfigError naming `owner` and every problem, if there are any."""
    if problems:
        raise ConfigError(f"{owner}: " + "; ".join(problems))


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The detector: trunk, person boxes, head (`head_options`: the head's config class of
    `HEADS`, its defaults when None; a dict is read as that class's fields), losses and
    post-processing. Defaults are those of the Action Transformer paper where it has one."""

    head: str = "i3d"
    head_options: Optional["HeadConfig"] = None
    trunk: str = "i3d_tiny"  # i3d: the published Inception-I3D; i3d_tiny: 1/4 width
    trunk_endpoint: str = "Mixed_4f"  # Mixed_5c: the backbone's last stage (ACAR, AIA)
    width_multiplier: Optional[float] = None
    freeze_bn: bool = False  # action_transformer.txt §3.5: BN statistics fixed
    proposals: str = "rpn"  # rpn | external (detection CSVs) | gt
    anchor_sizes: Tuple[float, ...] = (32.0, 64.0, 128.0, 256.0)
    rpn_filters: int = 512
    post_nms_top_k: int = 300  # action_transformer.txt §4.4: R = 300
    num_roi_samples: int = 64
    pose_softmax: bool = False  # acar_net.txt §4.1: one softmax over the poses
    single_label_softmax: bool = False  # one softmax over all classes (UCF101-24, JHMDB)
    background_rois: Optional[bool] = None  # None: the head's paper (default_background_rois)
    person_score: str = "geometric"  # detector.ActionDetector's rule (actor logit heads)
    focal_gamma: float = 0.0  # hgrnn_graph_rnn.txt §3.3 uses 2
    max_detections: int = 100
    class_specific_nms: bool = False  # hgrnn_graph_rnn.txt §3.3
    seed: int = 0  # weights, samplers, input shuffling

    def __post_init__(self):
        from action_tx.heads import HEADS

        if self.head not in HEADS:
            raise ConfigError(
                f"unknown head {self.head!r}; available heads: {', '.join(sorted(HEADS))}"
            )
        config_class = HEADS[self.head][1]
        options = self.head_options
        if options is None or isinstance(options, dict):
            try:
                options = config_class.from_json(options)
            except (TypeError, ValueError) as e:
                raise ConfigError(f"head {self.head!r}: {e}") from None
        elif type(options) is not config_class:  # exactly: TxI3DHeadConfig extends Tx's
            raise ConfigError(
                f"head {self.head!r} takes {config_class.__name__} options, got "
                f"{type(options).__name__}"
            )
        object.__setattr__(self, "head_options", options)
        object.__setattr__(self, "anchor_sizes", tuple(float(s) for s in self.anchor_sizes))
        from action_tx.trunks.i3d import TRUNK_PRESETS

        problems = []
        if self.trunk not in TRUNK_PRESETS:
            problems.append(
                f"unknown trunk {self.trunk!r}; available trunks: "
                f"{', '.join(sorted(TRUNK_PRESETS))}"
            )
        if self.proposals not in PROPOSALS:
            problems.append(
                f"proposals must be one of {', '.join(PROPOSALS)}, got {self.proposals!r}"
            )
        for name in ("rpn_filters", "post_nms_top_k", "num_roi_samples", "max_detections"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.anchor_sizes or min(self.anchor_sizes) <= 0:
            problems.append(f"anchor_sizes must be positive, got {list(self.anchor_sizes)}")
        if self.focal_gamma < 0:
            problems.append(f"focal_gamma must be >= 0, got {self.focal_gamma}")
        if self.trunk_endpoint not in TRUNK_ENDPOINTS:
            problems.append(
                f"unknown trunk_endpoint {self.trunk_endpoint!r}; known: "
                f"{', '.join(TRUNK_ENDPOINTS)}"
            )
        elif self.trunk_endpoint != "Mixed_4f" and options.runs_i3d_tail:
            problems.append(
                f"head {self.head!r} runs the I3D Mixed_5 tail on RoI tubes: it "
                f"needs trunk_endpoint='Mixed_4f', not {self.trunk_endpoint!r}"
            )
        if self.person_score not in PERSON_SCORES:
            problems.append(
                f"person_score must be one of {', '.join(PERSON_SCORES)}, got {self.person_score!r}"
            )
        if self.single_label_softmax and self.pose_softmax:
            problems.append("single_label_softmax and pose_softmax exclude each other")
        check_problems(problems, "model config")

    @property
    def trains_on_background(self) -> bool:
        """Whether the second stage trains on background RoI samples too: `background_rois`,
        else the head's paper."""
        if self.background_rois is None:
            return self.head_options.default_background_rois
        return self.background_rois

    @property
    def uses_objects(self) -> bool:
        """Whether the detector pools object tubes (batch `objects`) for its head."""
        return self.head_options.uses_objects


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The data of both input modes: `input="frames"` reads TFRecords of clips end to end,
    `"features"` the frozen trunk features of tools/extract_features.py."""

    label_map: Optional[str] = None
    input: str = "frames"
    train_tfrecords: Optional[str] = None  # glob of the training shards (frames)
    eval_tfrecords: Optional[str] = None  # glob of the evaluation shards (frames)
    num_frames: int = 8  # T
    frame_stride: int = 2  # s
    image_size: int = 112
    max_boxes: int = 16
    max_proposals: int = 32
    max_objects: int = 16
    box_jitter: float = 0.0  # of the papers only AIA jitters (§4.1): its flagfile
    feature_dir: Optional[str] = None  # training split's features (features)
    eval_feature_dir: Optional[str] = None  # evaluation split's features (features)
    train_actors: str = "both"  # features: gt | detected | both
    eval_actors: str = "detected"  # features: detected | gt (classification bound)
    context_keyframes: int = 0  # features / consecutive: extra keyframes each side
    consecutive_keyframes: bool = False  # frames: a batch is consecutive keyframes of a video

    # Paths of a run, not of the model: a resumed run may read moved shards.
    RUN_FIELDS = ("train_tfrecords", "eval_tfrecords")

    def __post_init__(self):
        problems = []
        if self.input not in INPUTS:
            problems.append(f"input must be one of {', '.join(INPUTS)}, got {self.input!r}")
        if self.train_actors not in ("both", "gt", "detected"):
            problems.append(f"train_actors must be both, gt or detected, got {self.train_actors!r}")
        if self.eval_actors not in ("detected", "gt"):
            problems.append(f"eval_actors must be detected or gt, got {self.eval_actors!r}")
        for name in ("num_frames", "frame_stride", "image_size", "max_boxes"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_proposals", "max_objects", "context_keyframes"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.box_jitter < 1.0:
            problems.append(f"box_jitter must be in [0, 1), got {self.box_jitter}")
        check_problems(problems, "data config")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The trainer (`action_tx.train_lib`); defaults: action_transformer.txt §3.5."""

    model_dir: Optional[str] = None
    batch_size: int = 2  # GLOBAL batch, split over the replicas
    train_steps: int = 1000
    optimizer: str = "sgd"
    learning_rate: float = 0.1  # §3.5: 0.1
    warmup_learning_rate: float = 0.01  # §3.5: warmup from 0.01
    warmup_steps: int = 1000  # §3.5: 1000 steps
    decay_steps: Optional[int] = None  # cosine end; None: train_steps
    lr_steps: Optional[Tuple[int, ...]] = None  # step decay (/10 at each) instead of the cosine
    momentum: float = 0.9
    weight_decay: float = 0.0
    clip_norm: Optional[float] = None
    strategy: str = "one_device"
    collective_timeout: float = 300.0
    precision: str = "float32"  # of PRECISIONS (action_tx.precision)
    jit_compile: bool = False
    deterministic: bool = False
    checkpoint_every: int = 1000
    keep_checkpoints: int = 5
    log_every: int = 100
    eval_every: int = 0
    init_checkpoint: Optional[str] = None
    progress: bool = True

    def __post_init__(self):
        if self.lr_steps is not None:
            object.__setattr__(self, "lr_steps", tuple(int(s) for s in self.lr_steps) or None)
        problems = []
        if self.lr_steps and (
            list(self.lr_steps) != sorted(self.lr_steps) or self.lr_steps[0] < self.warmup_steps
        ):
            problems.append(
                f"lr_steps {list(self.lr_steps)} must ascend and start at or after "
                f"the warmup's end ({self.warmup_steps})"
            )
        if self.optimizer not in ("sgd", "adamw"):
            problems.append(f"optimizer must be sgd or adamw, got {self.optimizer!r}")
        if self.precision not in PRECISIONS:
            problems.append(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        if self.strategy not in STRATEGIES:
            problems.append(
                f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}"
            )
        for name in (
            "batch_size",
            "train_steps",
            "checkpoint_every",
            "keep_checkpoints",
            "log_every",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        check_problems(problems, "train config")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Scoring a model: the split's ground truth and the inference batch."""

    groundtruth: Optional[str] = None
    batch_size: int = 2
    num_images: int = 3
    precision: str = "float32"  # the dtype policy inference runs in (any reads any checkpoint)
    progress: bool = True

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"eval config: precision must be one of {', '.join(PRECISIONS)}, "
                f"got {self.precision!r}"
            )
