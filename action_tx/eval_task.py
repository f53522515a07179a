"""Scoring a task's model on its evaluation split: the library side of `tools/eval.py`'s model
mode, used as well by the heads benchmark (`action_tx.bench.heads`).

    evaluator = TaskEvaluator(make_task(config), out_dir="runs/tx/eval")
    path = evaluator.restore_newest(checkpointing.find_checkpoints("runs/tx"))
    result = evaluator.score(path)          # ava_eval.AvaEvalResult; files in out_dir

The model is built once (in `config.eval.precision`) on the split's batches; each `score`
restores a checkpoint into it and writes `<ckpt>_detections.csv`, `<ckpt>_results.json` and
TensorBoard scalars and images (`eval_lib.evaluate_checkpoint`).
"""

import os
from typing import Callable, Optional, Sequence

import tensorflow as tf

from action_tx import checkpointing, eval_lib, precision


class TaskEvaluator:
    """The model of `task` (an `action_tx.tasks.Task`) built for its evaluation split.

    Args:
      task: its `config.eval` gives the batch size, precision, pictures and progress bar, and
        `config.eval.groundtruth` the split's AVA ground truth.
      out_dir: where each checkpoint's files go.
      summaries: also write TensorBoard events into `out_dir`.
    Raises what `task.eval_dataset` raises for missing or unreadable input.
    """

    def __init__(self, task, out_dir: str, summaries: bool = True):
        config = task.config
        self.task = task
        self.out_dir = out_dir
        # Frames: the TensorBoard pictures are drawn on the stored keyframes (keyframe_jpeg).
        self.dataset = task.eval_dataset(
            config.eval.batch_size, keyframe_jpeg=config.eval.num_images > 0
        )
        self.total = task.eval_keyframes()
        with precision.policy(config.eval.precision):
            self.model = task.build_model()
            eval_lib.build_detector_on(self.model, self.dataset)
        os.makedirs(out_dir, exist_ok=True)
        self.writer = tf.summary.create_file_writer(out_dir) if summaries else None

    def restore(self, path: str) -> None:
        eval_lib.restore(self.model, path)

    def restore_newest(
        self, paths: Sequence[str], warn: Optional[Callable[[str], None]] = None
    ) -> Optional[str]:
        """The newest of `paths` that restores into the model (`checkpointing.restore_newest`:
        `warn` hears of each damaged one); None when `paths` is empty."""
        return checkpointing.restore_newest(paths, self.restore, warn or (lambda m: None))

    def score(
        self,
        path: str,
        *,
        excluded: Optional[str] = None,
        evidence: Optional[str] = None,
        empty_memory: bool = False,
        **eval_kwargs,
    ):
        """Restores checkpoint `path`, detects over the split and scores it -> AvaEvalResult.
        excluded, evidence: optional CSVs of `ava_eval.evaluate`; **eval_kwargs: its other
        options (iou_threshold, max_detections_per_key, breakdowns)."""
        e = self.task.config.eval
        return eval_lib.evaluate_checkpoint(
            self.model,
            path,
            self.dataset,
            self.task.label_map,
            e.groundtruth,
            excluded=excluded,
            evidence=evidence,
            out_dir=self.out_dir,
            summary_writer=self.writer,
            num_images=e.num_images,
            progress=e.progress,
            total=self.total,
            empty_memory=empty_memory,
            **eval_kwargs,
        )
