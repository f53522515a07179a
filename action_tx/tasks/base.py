"""What every task offers: the model, the datasets and the scoring of one input mode.

    task = make_task(config)                    # an ExperimentConfig
    model = task.build_model()
    dataset = task.train_dataset()              # GLOBAL batches, repeated
    result = task.score(model)                  # AVA frame-mAP on the evaluation split

`FramesTask` (frames.py) trains the detector end to end on TFRecords of clips; `FeaturesTask`
(features.py) trains a head on frozen trunk features. The trainer (`train_lib.train_task`) and
the tools drive either through this interface and never ask which one they have.
"""

import dataclasses
import os
from typing import Optional, Sequence, Tuple

from action_tx.config import ConfigError, DataConfig, ExperimentConfig, ModelConfig


class Task:
    """One input mode of an `ExperimentConfig`. Subclasses implement the data methods.

    Args:
      config: the experiment.
      label_map: an `action_tx.data.ava.LabelMap`; default: read `config.data.label_map`.
    """

    # Whether `build_model()` runs on raw clips (end to end; it can be exported as a
    # SavedModel and extract features), or on stored features.
    runs_on_frames = False

    def __init__(self, config: ExperimentConfig, label_map=None):
        self.config = config
        self._label_map = label_map

    @property
    def label_map(self):
        if self._label_map is None:
            from action_tx.data import ava

            if not self.config.data.label_map:
                raise ConfigError("config: label_map is required")
            self._label_map = ava.read_label_map(self.config.data.label_map)
        return self._label_map

    @property
    def global_batch_size(self) -> int:
        """Examples in one training batch (over all replicas)."""
        return self.config.train.batch_size

    @property
    def data_description(self) -> str:
        """Names the training input in error messages."""
        raise NotImplementedError

    def build_model(self):
        """The Keras model of this mode (`call(batch, training)`, `compute_losses`)."""
        raise NotImplementedError

    def train_dataset(self):
        """The training `tf.data.Dataset` of global batches, repeated."""
        raise NotImplementedError

    def eval_dataset(
        self,
        batch_size: Optional[int] = None,
        split: str = "eval",
        source: Optional[str] = None,
        keyframe_jpeg: bool = False,
        keyframes: Optional[Sequence[Tuple[int, int]]] = None,
    ):
        """Inference batches of a split ("eval" or "train") in a fixed order; `source`
        overrides the split's files (frames: a glob or list of TFRecords). `keyframe_jpeg`:
        batches also carry the stored keyframe, for pictures (frames only). `keyframes`:
        ascending ranges (start, count), only the keyframes [start, start + count) of that
        order, whole videos (`features.plan_shards`: shards of a sharded extraction)."""
        raise NotImplementedError

    def eval_keyframes(self) -> Optional[int]:
        """Keyframes of the evaluation split (for the progress bar), None when unknown."""
        raise NotImplementedError

    def check_train_data(self) -> None:
        """Raises ConfigError when the training (and, with eval_every, evaluation) input is
        missing or unreadable: cheap checks before any model is built."""
        raise NotImplementedError

    def score(self, model, batch_size: Optional[int] = None, progress: bool = False):
        """AVA frame-mAP (`ava_eval.AvaEvalResult`) of `model` as it is on the evaluation
        split against `config.eval.groundtruth`."""
        from action_tx import eval_lib
        from object_detection_ext import ava_eval

        dataset = self.eval_dataset(batch_size or self.config.train.batch_size)
        rows, _ = eval_lib.predict_dataset(
            model, dataset, self.label_map.ids, num_images=0, progress=progress
        )
        return ava_eval.evaluate(self.config.eval.groundtruth, rows, self.label_map)


def resolve_keyframe_counts(model: ModelConfig, data: DataConfig) -> ModelConfig:
    """`model` with its head sized for the data (`HeadConfig.with_keyframes`: e.g. AIA's memory
    tables) when the head needs it and was not given a size: the most keyframes of any split
    `data` names, from the converter's and extract_features' manifests. Unchanged when no
    manifest gives a count (ExperimentConfig then reports it)."""
    if not model.head_options.keyframes_needed:
        return model
    from action_tx import eval_lib
    from action_tx.data import features

    counts = [0]
    for pattern in (data.train_tfrecords, data.eval_tfrecords):
        if pattern:
            counts.append(eval_lib.count_keyframes(pattern) or 0)
    for folder in (data.feature_dir, data.eval_feature_dir):
        if folder and os.path.isfile(os.path.join(folder, features.MANIFEST)):
            counts.append(features.count_target_keyframes(folder))
    if max(counts) == 0:
        return model
    return dataclasses.replace(model, head_options=model.head_options.with_keyframes(max(counts)))
