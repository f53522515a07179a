"""Small helpers of the suites that drive the project's tools: run a tool in a subprocess
(printing and recording its command, like tools/demo.py's run_tool), and describe the machine.

A tool process spends ~7 s (11 s cold) importing TensorFlow, Keras and the project before it
does any work; the heads suite starts ~25 of them with --quick. `ToolRunner(fork=True)`
imports those once (`preload`) and runs each tool in a fork of this process instead: the child
runs the tool's file as `__main__` with the same arguments, exactly as the printed command
does. Forking is safe only while TensorFlow has run no op here (no eager context, so no thread
pools to lose in the child): `preload` checks that and falls back to plain subprocesses.
"""

import os
import runpy
import shlex
import subprocess
import sys
import time
import traceback
from typing import List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(ROOT, "tools")


class ToolError(RuntimeError):
    """A tool exited with a non-zero status (the message holds the command)."""


def tool_path(tool: str) -> str:
    """tools/<tool> relative to the working directory when under it (short printed commands)."""
    path = os.path.join(TOOLS, tool)
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


class ToolRunner:
    """Runs tools/<tool> with this Python and keeps a log of every command.

    `commands` is a list of dicts {stage, command (a shell line), seconds, status}; skipped
    stages are recorded with status "skipped" so a resumed suite still lists what made each
    result.
    """

    def __init__(
        self, python: str = sys.executable, env: Optional[dict] = None, fork: bool = False
    ):
        self.python = python
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.fork = fork
        self.commands: List[dict] = []
        self._preloaded = False

    def command(self, tool: str, *args: str) -> List[str]:
        return [self.python, tool_path(tool), *args]

    def skip(self, stage: str, tool: str, *args: str, reason: str = "exists") -> None:
        line = shlex.join(self.command(tool, *args))
        print(f"\n=== {stage}: skipped ({reason})\n$ {line}", flush=True)
        self.commands.append(
            dict(stage=stage, command=line, seconds=None, status=f"skipped ({reason})")
        )

    def run(self, stage: str, tool: str, *args: str) -> float:
        """Runs the tool; returns its wall seconds; raises ToolError on failure."""
        command = self.command(tool, *args)
        line = shlex.join(command)
        print(f"\n=== {stage}\n$ {line}", flush=True)
        start = time.perf_counter()
        if self.fork and self.preload():
            code = self._call_forked(tool, args)
        else:
            if self.fork:
                print("(TensorFlow has run here: a subprocess instead of a fork)", flush=True)
            code = subprocess.call(command, env=self.env)
        seconds = round(time.perf_counter() - start, 1)
        self.commands.append(
            dict(
                stage=stage,
                command=line,
                seconds=seconds,
                status="ok" if code == 0 else f"exit {code}",
            )
        )
        print(
            f"--- {stage}: {seconds:.1f} s" + (f" (exit status {code})" if code else ""), flush=True
        )
        if code:
            raise ToolError(f"{stage}: exit status {code}: {line}")
        return seconds

    def preload(self) -> bool:
        """Imports TensorFlow, Keras and the project's libraries once (fork mode). Returns
        whether forking is safe: False once TensorFlow has an eager context in this process."""
        if not self._preloaded:
            # Read by TensorFlow at import (the children inherit what this process set up).
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", self.env["TF_CPP_MIN_LOG_LEVEL"])
            import action_tx  # noqa: F401  (sets TensorFlow's environment before its import)
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
            import action_tx.data.features  # noqa: F401
            import action_tx.data.pipeline  # noqa: F401
            import action_tx.eval_lib  # noqa: F401
            import action_tx.feature_model  # noqa: F401
            import action_tx.heads  # noqa: F401
            import action_tx.train_lib  # noqa: F401
            import object_detection_ext.ava_eval  # noqa: F401

            self._preloaded = True
        from tensorflow.python.eager import context

        return context.context()._context_handle is None

    def _call_forked(self, tool: str, args) -> int:
        """Runs tools/<tool> as __main__ in a forked child -> its exit status (like the
        subprocess's: 1 with the message on stderr when the tool exits with a string)."""
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                os.environ.clear()
                os.environ.update(self.env)
                _forget_tools_flags()
                path = os.path.join(TOOLS, tool)
                sys.argv = [path, *args]
                sys.path.insert(0, TOOLS)  # as `python tools/<tool>` does
                runpy.run_path(path, run_name="__main__")
                code = 0
            except SystemExit as e:
                if e.code is None or isinstance(e.code, int):
                    code = e.code or 0
                else:
                    print(e.code, file=sys.stderr)
            except BaseException:  # noqa: B902  (reported like an uncaught exception)
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)


def _under_tools(path: str) -> bool:
    return os.path.dirname(os.path.abspath(path)) == TOOLS


def _forget_tools_flags() -> None:
    """In a forked child: drops the absl flags (and cached modules) of the tools/ programs that
    this process runs (e.g. benchmark.py's --out), so the tool defines and parses its own
    flags as in a fresh interpreter."""
    from absl import flags

    values = flags.FLAGS
    for module, module_flags in list(values.flags_by_module_dict().items()):
        if module == "__main__" or (module.endswith(".py") and _under_tools(module)):
            for flag in list(module_flags):  # deleting edits that list
                if flag.name in values:
                    delattr(values, flag.name)
    values.unparse_flags()
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and _under_tools(path):
            del sys.modules[name]


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
