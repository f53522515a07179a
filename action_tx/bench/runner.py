"""The suites' stage log: each stage is a library call in this process, printed before it runs
(`=== stage`, then `$ call`), timed (`--- stage: S s`) and recorded; plus the machine's
description.

Before a stage that builds Keras objects, Keras' global state is cleared and the seeds are set
again (`fresh_state`), so that it sees what a new process would: no layer names, tensors or
dtype policy left by the one before. A stage that builds none (data generation, conversion,
matching: `keras_state=False`) only gets the seeds: the next Keras stage clears anyway. The
garbage collection before a Keras stage scans only the objects made since the one before
(`gc.freeze`), a full one every `StageLog.FULL_COLLECTION_EVERY` Keras stages: late in a pass
a full scan costs ~1.7 s. Each stage's record keeps what went before it (`setup_s`,
`between_s`) and its own time in the garbage collector (`gc_s`).
"""

import gc
import json
import os
import sys
import time
import traceback
from typing import Any, Callable, List, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class StageError(RuntimeError):
    """A stage's library call raised (the message names the stage and the error)."""


def fresh_state(seed: int = 0, keras_state: bool = True, full_collection: bool = True) -> None:
    """Seeds Python, NumPy and TensorFlow and, with `keras_state`, first clears Keras' global
    state (layer name counters, graph, dtype policy) and frees the stages' garbage: what a new
    process starts from.

    Without `full_collection` the garbage collection scans only the objects made since the
    last one: `gc.freeze` keeps each collection's survivors out of later scans. TensorFlow's
    and Keras' modules and the caches of every model kind traced so far grow to millions of
    objects over a pass, and a full scan of them before each stage cost ~1.7 s
    (docs/notes/2026-12-06-heads-suite-time.md). A full collection (the default) scans
    everything again, so what a frozen object kept alive is freed at the latest there."""
    import keras

    if keras_state:
        keras.utils.clear_session(free_memory=False)
        if full_collection:
            gc.unfreeze()
        gc.collect()
        gc.freeze()
        keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(seed)


class _GcClock:
    """Seconds the garbage collector ran while installed (`gc.callbacks`)."""

    def __init__(self):
        self.seconds, self._start = 0.0, None

    def __call__(self, phase, info):
        if phase == "start":
            self._start = time.perf_counter()
        elif self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self._start = None

    def __enter__(self):
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc):
        gc.callbacks.remove(self)


def call_text(name: str, *args, **kwargs) -> str:
    """`name(arg, key=value, ...)`: how a stage's call is printed and recorded."""
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


class StageLog:
    """Runs and records stages. `commands` is a list of dicts {stage, command (the call's
    text), seconds, status}; skipped stages are recorded with status "skipped (reason)", so a
    resumed suite still lists what made each result. A stage that ran also records setup_s
    (its `fresh_state`), between_s (wall seconds since the previous stage ended, or since
    the log was made, setup included: what configs, checks and state clearing cost) and gc_s
    (seconds of its own wall time that the garbage collector ran)."""

    # Keras stages between two full garbage collections (`fresh_state`): a full scan costs
    # ~1.7 s late in a pass, the young-only ones ~0.1 s.
    FULL_COLLECTION_EVERY = 20

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.commands: List[dict] = []
        self._last_end = time.perf_counter()
        self._keras_stages = 0

    def skip(self, stage: str, call: str, reason: str = "exists") -> None:
        print(f"\n=== {stage}: skipped ({reason})\n$ {call}", flush=True)
        self.commands.append(
            dict(stage=stage, command=call, seconds=None, status=f"skipped ({reason})")
        )

    def run(
        self,
        stage: str,
        call: str,
        fn: Callable[..., Any],
        *args,
        keras_state: bool = True,
        **kwargs,
    ) -> Tuple:
        """Runs `fn(*args, **kwargs)` on a fresh state (`fresh_state`; keras_state=False: a
        stage that builds no Keras object, seeds only) -> (wall seconds, its value). Raises
        StageError (after printing the traceback) when it raises."""
        print(f"\n=== {stage}\n$ {call}", flush=True)
        setup = time.perf_counter()
        full = keras_state and self._keras_stages % self.FULL_COLLECTION_EVERY == 0
        self._keras_stages += keras_state
        fresh_state(self.seed, keras_state, full_collection=full)
        start = time.perf_counter()
        error = None
        with _GcClock() as collector:
            try:
                value = fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001  (any failure fails this stage only)
                traceback.print_exc()
                error = f"{type(e).__name__}: {e}"
        end = time.perf_counter()
        seconds = round(end - start, 1)
        status = "ok" if error is None else f"failed: {' '.join(error.split())[:200]}"
        self.commands.append(
            dict(
                stage=stage,
                command=call,
                seconds=seconds,
                status=status,
                setup_s=round(start - setup, 2),
                between_s=round(start - self._last_end, 2),
                gc_s=round(collector.seconds, 3),
            )
        )
        self._last_end = end
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
