"""End-to-end task: the ActionDetector on TFRecords of clips (`action_tx.data.pipeline`)."""

from typing import Optional

from action_tx.config import ConfigError
from action_tx.tasks.base import Task


class FramesTask(Task):
    """`data.input == "frames"`: trunk, proposals and head trained together on clips."""

    runs_on_frames = True

    @property
    def global_batch_size(self) -> int:
        """With consecutive_keyframes, a batch also holds `context_keyframes` on each side."""
        d = self.config.data
        return self.config.train.batch_size + (
            2 * d.context_keyframes if d.consecutive_keyframes else 0
        )

    @property
    def data_description(self) -> str:
        return f"train_tfrecords={self.config.data.train_tfrecords}"

    def build_model(self):
        from action_tx.model_builder import build_detector

        return build_detector(self.config.model, label_map=self.label_map)

    def dataset_kwargs(self, training: bool) -> dict:
        """Keyword arguments of `action_tx.data.pipeline.build_dataset` (without the files and
        the batch size)."""
        d = self.config.data
        return dict(
            num_classes=self.label_map.num_classes,
            num_frames=d.num_frames,
            frame_stride=d.frame_stride,
            image_size=d.image_size,
            training=training,
            seed=self.config.model.seed,
            max_boxes=d.max_boxes,
            max_proposals=d.max_proposals,
            max_objects=d.max_objects,
            box_jitter=d.box_jitter,
            consecutive=d.consecutive_keyframes,
            context=d.context_keyframes if d.consecutive_keyframes else 0,
        )

    def train_dataset(self):
        from action_tx.data.pipeline import build_dataset

        return build_dataset(
            self.config.data.train_tfrecords,
            batch_size=self.config.train.batch_size,
            **self.dataset_kwargs(training=True),
        )

    def eval_dataset(
        self,
        batch_size: Optional[int] = None,
        split: str = "eval",
        source=None,
        keyframe_jpeg: bool = False,
        keyframes=None,
    ):
        from action_tx.data.pipeline import build_dataset

        d = self.config.data
        source = source or (d.train_tfrecords if split == "train" else d.eval_tfrecords)
        if not source:
            raise ConfigError(f"config: no {split}_tfrecords for the {split} split")
        return build_dataset(
            source,
            batch_size=batch_size or self.config.eval.batch_size,
            keyframe_jpeg=keyframe_jpeg,
            keyframes=keyframes,
            **self.dataset_kwargs(training=False),
        )

    def eval_keyframes(self) -> Optional[int]:
        from action_tx import eval_lib

        return eval_lib.count_keyframes(self.config.data.eval_tfrecords)

    def check_train_data(self) -> None:
        """An empty input would make the repeated pipeline spin: fail on it here."""
        import tensorflow as tf
        from action_tx.data import tfrecords
        from action_tx.distribute import op_error_text

        pattern = self.config.data.train_tfrecords
        try:
            files = tfrecords.match_files(pattern)
        except FileNotFoundError:
            raise ConfigError(f"train_tfrecords={pattern}: no files match") from None
        except tfrecords.NotTFRecordError as e:
            raise ConfigError(f"train_tfrecords: {e}") from None
        try:
            for _ in tf.data.TFRecordDataset(files).take(1):
                return
        except tf.errors.OpError as e:
            raise ConfigError(
                f"train_tfrecords={pattern}: cannot read: {op_error_text(e)}"
            ) from None
        raise ConfigError(
            f"train_tfrecords={pattern}: the {len(files)} matching file(s) hold no records"
        )
