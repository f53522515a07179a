"""Feature task: a head on frozen trunk features (`action_tx.data.features`, written by
tools/extract_features.py), as `FeatureActionModel`."""

import os
from typing import Optional

from action_tx.config import ConfigError
from action_tx.tasks.base import Task


class FeaturesTask(Task):
    """`data.input == "features"`: a batch is consecutive keyframes of one video plus
    `context_keyframes` on each side (temporal context only: no loss, no detections)."""

    @property
    def global_batch_size(self) -> int:
        return self.config.train.batch_size + 2 * self.config.data.context_keyframes

    @property
    def data_description(self) -> str:
        return f"feature_dir={self.config.data.feature_dir}"

    def build_model(self):
        from action_tx.feature_model import FeatureActionModel
        from action_tx.model_builder import build_head, softmax_indices

        m, classes = self.config.model, self.label_map.num_classes
        options = {"class_specific_nms": True} if m.class_specific_nms else {}
        if self.config.data.eval_actors == "gt":
            options["nms"] = False  # ground-truth boxes keep one row each (issue 27)
        return FeatureActionModel(
            head=build_head(m, classes),
            num_classes=classes,
            pose_indices=softmax_indices(m, self.label_map),
            focal_gamma=m.focal_gamma,
            max_detections=m.max_detections,
            **options,
        )

    def _dataset(self, directory, training: bool, batch_size: int, keyframes=None):
        from action_tx.data.feature_dataset import build_feature_dataset

        d = self.config.data
        return build_feature_dataset(
            directory,
            num_classes=self.label_map.num_classes,
            batch_size=batch_size,
            training=training,
            seed=self.config.model.seed,
            actors=d.train_actors if training else d.eval_actors,
            context=d.context_keyframes,
            max_objects=d.max_objects,
            keyframes=keyframes,
        )

    def train_dataset(self):
        return self._dataset(self.folder("train"), True, self.config.train.batch_size)

    def eval_dataset(
        self,
        batch_size: Optional[int] = None,
        split: str = "eval",
        source=None,
        keyframe_jpeg: bool = False,
        keyframes=None,
    ):
        del keyframe_jpeg  # stored features have no frames
        return self._dataset(
            source or self.folder(split),
            False,
            batch_size or self.config.eval.batch_size,
            keyframes,
        )

    def folder(self, split: str) -> str:
        """The feature folder of `split` ("train"; any other: the evaluation split's)."""
        name = "feature_dir" if split == "train" else "eval_feature_dir"
        folder = getattr(self.config.data, name)
        if not folder:
            raise ConfigError(f"config: input=features needs {name}")
        return folder

    def eval_keyframes(self) -> Optional[int]:
        from action_tx.data import features

        return features.count_target_keyframes(self.folder("eval"))

    def check_train_data(self) -> None:
        from action_tx.data import features

        for split in ("train",) + (("eval",) if self.config.train.eval_every else ()):
            folder = self.folder(split)
            if not os.path.isfile(os.path.join(folder, features.MANIFEST)):
                name = "feature_dir" if split == "train" else "eval_feature_dir"
                raise ConfigError(
                    f"{name}: no {features.MANIFEST} in {folder} (run tools/extract_features.py)"
                )
