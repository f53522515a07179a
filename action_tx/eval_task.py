"""Scoring a task's model on its evaluation split: the library side of `tools/eval.py`'s model
mode, used as well by the heads benchmark (`action_tx.bench.heads`).

    evaluator = TaskEvaluator(make_task(config), out_dir="runs/tx/eval")
    path = evaluator.restore_newest(checkpointing.find_checkpoints("runs/tx"))
    result = evaluator.score(path)          # ava_eval.AvaEvalResult; files in out_dir
    for path in evaluator.follow("runs/tx", timeout_s=600):    # every checkpoint, as written
        result = evaluator.score(path)

The model is built once (in `config.eval.precision`) on the split's batches; each `score`
restores a checkpoint into it and writes `<ckpt>_detections.csv`, `<ckpt>_results.json` and
TensorBoard scalars and images (`eval_lib.evaluate_checkpoint`).
"""

import os
from typing import Callable, Iterator, Optional, Sequence

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

    def scored(self, model_dir: str) -> list:
        """The checkpoints of `model_dir` scored into `out_dir` already (their
        `<ckpt>_results.json` exists there): what a restarted evaluator skips."""
        return [
            os.path.join(model_dir, n[: -len("_results.json")])
            for n in os.listdir(self.out_dir)
            if n.endswith("_results.json")
        ]

    def follow(
        self,
        model_dir: str,
        timeout_s: float,
        poll_s: float = 10.0,
        warn: Optional[Callable[[str], None]] = None,
    ) -> Iterator[str]:
        """Restores each checkpoint of `model_dir` not yet `scored` and yields its path: those
        present first, oldest first, then new ones as the trainer writes them, until `timeout_s`
        seconds pass without one (`eval_lib.wait_for_checkpoints`). A damaged one (or one
        rotated away meanwhile) is skipped after a `warn` line; one of another model raises
        `checkpointing.CheckpointMismatchError`."""
        warn = warn or (lambda m: None)
        for path in eval_lib.wait_for_checkpoints(
            model_dir, timeout_s, poll_s, done=self.scored(model_dir)
        ):
            try:
                self.restore_newest([path], warn)
            except checkpointing.CheckpointMismatchError:
                raise
            except checkpointing.CheckpointError as e:  # damaged (or rotated away meanwhile)
                warn(f"{' '.join(str(e).split())}; skipping it")
                continue
            yield path
