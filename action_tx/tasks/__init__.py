"""Tasks: one per input mode, chosen by `config.data.input` (`make_task`).

task = make_task(config)          # FramesTask (end to end) or FeaturesTask (stored features)
"""

from action_tx.tasks.base import Task, resolve_keyframe_counts
from action_tx.tasks.features import FeaturesTask
from action_tx.tasks.frames import FramesTask

TASKS = {"frames": FramesTask, "features": FeaturesTask}


def make_task(config, label_map=None) -> Task:
    """The task of `config.data.input` (an `ExperimentConfig`)."""
    return TASKS[config.data.input](config, label_map=label_map)


__all__ = ["TASKS", "FeaturesTask", "FramesTask", "Task", "make_task", "resolve_keyframe_counts"]
