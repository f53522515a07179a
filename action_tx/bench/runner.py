"""Small helpers of the suites that drive the project's tools: run a tool in a subprocess
(printing and recording its command, like tools/demo.py's run_tool), and describe the machine.
No TensorFlow here: the parent process of a suite stays light while its tools train.
"""
import os
import shlex
import subprocess
import sys
import time
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

    def __init__(self, python: str = sys.executable, env: Optional[dict] = None):
        self.python = python
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.commands: List[dict] = []

    def command(self, tool: str, *args: str) -> List[str]:
        return [self.python, tool_path(tool), *args]

    def skip(self, stage: str, tool: str, *args: str, reason: str = "exists") -> None:
        line = shlex.join(self.command(tool, *args))
        print(f"\n=== {stage}: skipped ({reason})\n$ {line}", flush=True)
        self.commands.append(dict(stage=stage, command=line, seconds=None,
                                  status=f"skipped ({reason})"))

    def run(self, stage: str, tool: str, *args: str) -> float:
        """Runs the tool; returns its wall seconds; raises ToolError on failure."""
        command = self.command(tool, *args)
        line = shlex.join(command)
        print(f"\n=== {stage}\n$ {line}", flush=True)
        start = time.perf_counter()
        code = subprocess.call(command, env=self.env)
        seconds = round(time.perf_counter() - start, 1)
        self.commands.append(dict(stage=stage, command=line, seconds=seconds,
                                  status="ok" if code == 0 else f"exit {code}"))
        print(f"--- {stage}: {seconds:.1f} s" + (f" (exit status {code})" if code else ""),
              flush=True)
        if code:
            raise ToolError(f"{stage}: exit status {code}: {line}")
        return seconds


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
    return {"cpu": model or platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
            "python": sys.version.split()[0]}
