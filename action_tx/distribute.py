"""Distribution for training: strategies, the chief, TF_CONFIG, and the errors of a run.

strategy = make_strategy("mirrored")        # or "one_device", "multi_worker" (TF_CONFIG)
"""

import json
import os
import re
from typing import Optional

import tensorflow as tf

from action_tx.data import pipeline

STRATEGIES = ("one_device", "mirrored", "multi_worker")


class TrainingError(RuntimeError):
    """Training cannot start or cannot go on (empty input, bad settings, non-finite loss)."""


class WorkerLostError(TrainingError):
    """Multi-worker training stopped: another worker died or stopped answering."""


# What a collective raises when a peer is gone. Measured on 2 CPU workers (TF 2.20): a killed
# peer resets the connection (UNAVAILABLE, ~5 s); a frozen one (SIGSTOP) stops its coordination
# service heartbeats and the survivors are aborted (UNAVAILABLE, ~12 s); a live but stuck peer
# trips the collective timeout (DEADLINE_EXCEEDED); aborted ops can also surface as
# ABORTED / CANCELLED.
PEER_ERRORS = (
    tf.errors.UnavailableError,
    tf.errors.DeadlineExceededError,
    tf.errors.AbortedError,
    tf.errors.CancelledError,
)


def check_tf_config() -> Optional[str]:
    """-> what is wrong with the TF_CONFIG variable for 'multi_worker', or None."""
    text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        return (
            "--strategy=multi_worker needs the TF_CONFIG environment variable (JSON: "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", '
            '"index": i}}); it is not set'
        )
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        workers = list(cluster.get("chief", [])) + list(cluster.get("worker", []))
        kind, index = task["type"], int(task["index"])
        members = cluster.get(kind)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return f"TF_CONFIG is not valid (needs 'cluster' and 'task' with 'type', 'index'): {e}"
    if not workers or not members or not 0 <= index < len(members):
        return f"TF_CONFIG: task {kind}:{index} is not in the cluster {json.dumps(cluster)}"
    return None


def make_strategy(
    name: str = "one_device", devices=None, collective_timeout_s: Optional[float] = None
) -> tf.distribute.Strategy:
    """'one_device' (first GPU else CPU), 'mirrored' (all local GPUs, or `devices`), or
    'multi_worker' (MultiWorkerMirroredStrategy; cluster from the TF_CONFIG variable).

    'multi_worker' must be made before TensorFlow runs any op in this process (collectives
    are configured at program start).
    collective_timeout_s: multi_worker only; a collective that waits longer (a dead worker)
    fails instead of hanging forever.
    Raises TrainingError for an unknown name, a missing or bad TF_CONFIG, or a late
    'multi_worker'.
    """
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        problem = check_tf_config()
        if problem:
            raise TrainingError(problem)
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=collective_timeout_s
        )
        try:
            return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        except RuntimeError as e:
            if "program startup" not in str(e):
                raise
            raise TrainingError(
                "the multi_worker strategy must be made before TensorFlow "
                "runs any op in the process"
            ) from None
    raise TrainingError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True outside a cluster, for the 'chief' task, or for worker 0 of a chief-less cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task = resolver.task_type
    return task in ("chief", None) or (
        task == "worker"
        and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )


def op_error_text(error: "tf.errors.OpError") -> str:
    """The readable part of a TF op error ("corrupted record at 0 ..."), one line."""
    record = pipeline.record_error_text(error)  # an undecodable record, named by the pipeline
    if record:
        return record
    text = re.sub(
        r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:[^\]]*\].*$",
        "",
        error.message.strip().splitlines()[-1] if error.message.strip() else "",
    )
    return text.strip() or type(error).__name__


def peer_error_text(error: "tf.errors.OpError") -> str:
    """The line of a failed collective's message that says why (one line)."""
    lines = [line.strip() for line in error.message.splitlines()]
    for i, line in enumerate(lines):
        if (
            re.search(
                r"aborted by|timed out|timeout|deadline|connection|unavailable|heartbeat",
                line,
                re.IGNORECASE,
            )
            and "Detected at node" not in line
        ):
            if line.endswith(":") and i + 1 < len(lines):  # "unhealthy tasks:" + the task
                line = f"{line} {lines[i + 1]}"
            return line[:300]
    return op_error_text(error)
