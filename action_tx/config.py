"""The experiment configuration: what the library takes, written once in `MODEL_DIR/config.json`.

    from action_tx.config import DataConfig, ExperimentConfig, ModelConfig
    from action_tx.heads.action_transformer import ActionTransformerConfig
    config = ExperimentConfig(
        model=ModelConfig(head="tx", head_options=ActionTransformerConfig(num_layers=2)),
        data=DataConfig(label_map="action_list.pbtxt", train_tfrecords="tf/train-*"))
    detector = build_detector(config)          # action_tx.model_builder

Four frozen sections: `ModelConfig` (trunk, proposals, head and the head's own options, a
`HeadConfig` of `action_tx.heads.HEADS`), `DataConfig` (files and clip geometry, both input
modes), `TrainConfig` and `EvalConfig`. Each checks its own fields; `ExperimentConfig` checks
the rules that join them and raises `ConfigError` with every problem in one message.
`tools/model_flags.py` maps the command-line flags onto this (one function).

The sections, the values their fields take and `ConfigError` are in `action_tx.config_sections`
(re-exported here); this module joins them and reads and writes `config.json`.
"""

import dataclasses
import json
import os
from typing import Any, Callable, Dict, Optional

from action_tx.config_sections import (  # noqa: F401  (this module's API, re-exported)
    INPUTS,
    PERSON_SCORES,
    PRECISIONS,
    PROPOSALS,
    STRATEGIES,
    TRUNK_ENDPOINTS,
    ConfigError,
    DataConfig,
    EvalConfig,
    ModelConfig,
    TrainConfig,
    check_problems,
)

CONFIG_FILE = "config.json"
LEGACY_CONFIG_FILE = "model_flags.json"  # model_dirs written before config.json (flat flags)
VERSION = 1


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """model + data + train + eval, with the rules that join them."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)

    def __post_init__(self):
        m, d, t = self.model, self.data, self.train
        problems = list(m.head_options.problems())
        if m.proposals == "external" and d.max_proposals < 1:
            problems.append(
                "proposals=external reads the person detections stored from the "
                "detection CSVs: max_proposals must be >= 1"
            )
        if m.uses_objects and d.max_objects < 1:
            problems.append(f"head {m.head!r} pools object boxes: max_objects must be >= 1")
        if m.pose_softmax and not d.label_map:
            problems.append("pose_softmax needs the label map (its pose classes)")
        if d.input == "features":
            if t.init_checkpoint:
                problems.append("init_checkpoint is for end-to-end training, not input=features")
            if t.strategy != "one_device":
                problems.append(
                    "input=features trains with strategy=one_device (a batch is one video)"
                )
        check_problems(problems, "config")

    # Rules of one use: each names the settings a command needs.
    def check_train(self) -> None:
        """Raises ConfigError unless this config can train."""
        d, problems = self.data, []
        if not self.train.model_dir:
            problems.append("model_dir is required")
        if not d.label_map:
            problems.append("label_map is required")
        if d.input == "features" and not d.feature_dir:
            problems.append("input=features needs feature_dir")
        if d.input == "frames" and not d.train_tfrecords:
            problems.append("train_tfrecords is required (a glob of TFRecord shards)")
        if self.train.eval_every:
            split = "eval_feature_dir" if d.input == "features" else "eval_tfrecords"
            missing = [
                n
                for n, v in ((split, getattr(d, split)), ("groundtruth", self.eval.groundtruth))
                if not v
            ]
            if missing:
                problems.append(f"eval_every needs {' and '.join(missing)}")
        check_problems(problems, "config")

    def check_eval(self) -> None:
        """Raises ConfigError unless this config can score a model."""
        d = self.data
        data_field = "eval_feature_dir" if d.input == "features" else "eval_tfrecords"
        missing = [
            n
            for n, v in (
                (data_field, getattr(d, data_field)),
                ("groundtruth", self.eval.groundtruth),
                ("label_map", d.label_map),
            )
            if not v
        ]
        check_problems([f"scoring a model needs {', '.join(missing)}"] if missing else [], "config")

    # --- config.json ---
    def to_json(self) -> Dict[str, Any]:
        """{"version", "model", "data", "train", "eval"}: plain JSON values."""
        model = {f.name: getattr(self.model, f.name) for f in dataclasses.fields(self.model)}
        model["head_options"] = self.model.head_options.to_json()
        model["anchor_sizes"] = list(self.model.anchor_sizes)
        return {
            "version": VERSION,
            "model": model,
            "data": dataclasses.asdict(self.data),
            "train": dataclasses.asdict(self.train),
            "eval": dataclasses.asdict(self.eval),
        }

    @classmethod
    def from_json(cls, values: Dict[str, Any], where: str = "config") -> "ExperimentConfig":
        """The config of a `to_json` object; ConfigError (naming `where`) when it is not one."""
        if not isinstance(values, dict) or "model" not in values:
            raise ConfigError(f"{where}: not an experiment config (no 'model' section)")
        if values.get("version", VERSION) > VERSION:
            raise ConfigError(
                f"{where}: config version {values['version']} is newer than this code's {VERSION}"
            )
        sections = {}
        for name, section in (
            ("model", ModelConfig),
            ("data", DataConfig),
            ("train", TrainConfig),
            ("eval", EvalConfig),
        ):
            raw = dict(values.get(name) or {})
            known = {f.name for f in dataclasses.fields(section)}
            unknown = sorted(set(raw) - known)
            if unknown:
                raise ConfigError(f"{where}: unknown {name} field(s) {', '.join(unknown)}")
            sections[name] = section(**raw)
        return cls(**sections)

    def model_view(self) -> Dict[str, Any]:
        """What a model_dir's checkpoints depend on: the model and data sections without the
        run's paths (compared when a run resumes)."""
        view = self.to_json()
        data = {k: v for k, v in view["data"].items() if k not in DataConfig.RUN_FIELDS}
        return {"model": view["model"], "data": data}


def save(config: ExperimentConfig, model_dir: str) -> str:
    """Writes `model_dir/config.json`; returns its path."""
    import tensorflow as tf  # gfile: model_dirs may be on any file system TF reads

    path = os.path.join(model_dir, CONFIG_FILE)
    tf.io.gfile.makedirs(model_dir)
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(config.to_json(), f, indent=1)
    return path


def load(model_dir: str) -> Optional[ExperimentConfig]:
    """`model_dir/config.json` as a config; None when absent. ConfigError when unreadable."""
    import tensorflow as tf

    path = os.path.join(model_dir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        return None
    try:
        with tf.io.gfile.GFile(path) as f:
            values = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not a JSON config ({e})") from None
    try:
        return ExperimentConfig.from_json(values, where=path)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{path}: {e}") from None


OVERRIDE_SECTIONS = ("model", "head", "data", "train", "eval")


def with_overrides(
    config: ExperimentConfig,
    overrides: Dict[str, Any],
    resolve: Optional[Callable[[ModelConfig, DataConfig], ModelConfig]] = None,
) -> ExperimentConfig:
    """`config` with some fields replaced, validated as a new config (ConfigError).

    Keys are "SECTION.FIELD": SECTION is model, data, train or eval, or "head" for a field of
    the head's options (`model.head_options`). A `model.head` other than the config's starts
    from that head's defaults, then its "head." keys apply. `resolve(model, data) -> model`
    completes the model for its data before the joint checks (e.g.
    `action_tx.tasks.resolve_keyframe_counts`).
    """
    fields = {name: {} for name in OVERRIDE_SECTIONS}
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if section not in fields or not name:
            raise ConfigError(
                f"override {key!r}: expected SECTION.FIELD with SECTION one of "
                f"{', '.join(OVERRIDE_SECTIONS)}"
            )
        fields[section][name] = value
    model = config.model
    head = fields["model"].get("head", model.head)
    options = dataclasses.asdict(model.head_options) if head == model.head else {}
    fields["model"]["head_options"] = dict(options, **fields["head"])
    sections = {}
    for name in ("model", "data", "train", "eval"):
        known = {f.name for f in dataclasses.fields(getattr(config, name))}
        unknown = sorted(set(fields[name]) - known)
        if unknown:
            raise ConfigError(f"override: unknown {name} field(s) {', '.join(unknown)}")
        sections[name] = dataclasses.replace(getattr(config, name), **fields[name])
    if resolve is not None:
        sections["model"] = resolve(sections["model"], sections["data"])
    return ExperimentConfig(**sections)
