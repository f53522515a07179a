"""The suites' stage log: each stage is a library call in this process, printed before it runs
(`=== stage`, then `$ call`), timed (`--- stage: S s`) and recorded; plus the machine's
description.

Between stages Keras' global state is cleared and the seeds are set again
(`fresh_state`), so that a stage sees what a new process would: no layer names, tensors or
dtype policy left by the one before.
"""

import json
import os
import sys
import time
import traceback
from typing import Any, Callable, List, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class StageError(RuntimeError):
    """A stage's library call raised (the message names the stage and the error)."""


def fresh_state(seed: int = 0) -> None:
    """Clears Keras' global state (layer name counters, graph, free memory) and seeds Python,
    NumPy and TensorFlow: what a new process starts from."""
    import keras

    keras.utils.clear_session(free_memory=True)
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(seed)


def call_text(name: str, *args, **kwargs) -> str:
    """`name(arg, key=value, ...)`: how a stage's call is printed and recorded."""
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


class StageLog:
    """Runs and records stages. `commands` is a list of dicts {stage, command (the call's
    text), seconds, status}; skipped stages are recorded with status "skipped (reason)", so a
    resumed suite still lists what made each result."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.commands: List[dict] = []

    def skip(self, stage: str, call: str, reason: str = "exists") -> None:
        print(f"\n=== {stage}: skipped ({reason})\n$ {call}", flush=True)
        self.commands.append(
            dict(stage=stage, command=call, seconds=None, status=f"skipped ({reason})")
        )

    def run(self, stage: str, call: str, fn: Callable[..., Any], *args, **kwargs) -> Tuple:
        """Runs `fn(*args, **kwargs)` on a fresh Keras state -> (wall seconds, its value).
        Raises StageError (after printing the traceback) when it raises."""
        print(f"\n=== {stage}\n$ {call}", flush=True)
        fresh_state(self.seed)
        start = time.perf_counter()
        error = None
        try:
            value = fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001  (any failure fails this stage only)
            traceback.print_exc()
            error = f"{type(e).__name__}: {e}"
        seconds = round(time.perf_counter() - start, 1)
        status = "ok" if error is None else f"failed: {' '.join(error.split())[:200]}"
        self.commands.append(dict(stage=stage, command=call, seconds=seconds, status=status))
        print(
            f"--- {stage}: {seconds:.1f} s" + ("" if error is None else f" ({status})"), flush=True
        )
        if error is not None:
            raise StageError(f"{stage}: {error}")
        return seconds, value


EARLIER = "earlier invocation"  # status of a stage an earlier invocation of the pass ran


def merge_commands(earlier: Sequence[dict], now: Sequence[dict]) -> List[dict]:
    """This invocation's `StageLog.commands` with the records of an earlier invocation of the
    same pass: a stage skipped now (its output was there) takes the earlier record of the same
    stage and command that ran ok, with status `EARLIER`, so a resumed pass still shows what
    each stage cost. -> a new list, in this invocation's order."""
    ran = {
        (c["stage"], c["command"]): c
        for c in earlier
        if c.get("seconds") is not None and c.get("status") in ("ok", EARLIER)
    }
    out = []
    for c in now:
        old = ran.get((c["stage"], c["command"]))
        skipped = str(c.get("status", "")).startswith("skipped")
        out.append(dict(old, status=EARLIER) if skipped and old else dict(c))
    return out


def same_pass(heads_json: str, preset: str, quick: bool, seed_plan: dict) -> dict:
    """An existing DIR/heads.json of the heads suite when it is the same pass (same preset,
    --quick and seed plan `heads_seeds.SeedPlan.pass_key()`: its instrument splits may differ)
    and this invocation resumes it, else {}."""
    try:
        with open(heads_json) as f:
            old = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        print(f"warning: {heads_json} is unreadable ({e}); earlier invocations not counted")
        return {}
    # The old plan on the key's fields: what pass_key leaves out (instrument splits) is ignored.
    old_plan = {k: v for k, v in (old.get("seed_plan") or {}).items() if k in seed_plan}
    same = (old.get("preset"), old.get("quick"), old_plan) == (preset, quick, seed_plan)
    return old if same else {}


def earlier_invocations(old: dict) -> list:
    """The invocations recorded in a heads.json of the same pass (`same_pass`; {}: none).
    Each is {"started": ISO time or None, "seconds": wall s up to its last heads.json write};
    a heads.json written before invocations were kept counts as one invocation of its
    "seconds". Time a killed invocation spent after its last write is not counted."""
    if "invocations" in old:
        return list(old["invocations"])
    return [] if old.get("seconds") is None else [dict(started=None, seconds=old["seconds"])]


def machine_info() -> dict:
    """CPU model, logical cores and load average (1, 5, 15 min) of this machine."""
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import platform

    return {
        "cpu": model or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
    }
