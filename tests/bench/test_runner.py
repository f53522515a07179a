"""ToolRunner's fork mode: a tool runs in a fork of a process that imported TensorFlow once,
with its own absl flags, and reports its exit status like a subprocess would."""

import os
import subprocess
import sys

from action_tx.bench import runner

# A stand-in tool: defines --out, which the parent program below also defines (as
# tools/benchmark.py does), writes its flag values, or exits with a message.
_TOOL = """
from absl import app, flags
flags.DEFINE_string("out", None, "where to write")
flags.DEFINE_bool("fail", False, "exit with a message")
FLAGS = flags.FLAGS

def main(argv):
    if FLAGS.fail:
        return "error: asked to fail"
    import model_helper   # from the tool's own folder, as `python tools/x.py` allows
    with open(FLAGS.out, "w") as f:
        f.write(f"{FLAGS.out}|{model_helper.VALUE}|{__name__}")

if __name__ == "__main__":
    app.run(main)
"""

_PARENT = """
import os, sys
from absl import app, flags
flags.DEFINE_string("out", "parent default", "the parent program's own --out")
FLAGS = flags.FLAGS

def main(argv):
    from action_tx.bench import runner
    runner.TOOLS = sys.argv[1]
    tools = runner.ToolRunner(fork=True)
    tools.run("one", "x.py", f"--out={sys.argv[1]}/a.txt")
    tools.run("two", "x.py", f"--out={sys.argv[1]}/b.txt")
    try:
        tools.run("three", "x.py", "--fail")
    except runner.ToolError as e:
        print("TOOLERROR", e)
    print("FORKED", [c["status"] for c in tools.commands], tools.preload())
    print("PARENT_OUT", FLAGS.out)
    import tensorflow as tf
    tf.constant(1.0) + 1.0   # TensorFlow has thread pools now: no more forks
    print("AFTER_OP", tools.preload())
    tools.run("four", "x.py", f"--out={sys.argv[1]}/c.txt")

app.run(main)
"""


def test_fork_mode_runs_tools_with_their_own_flags(tmp_path):
    (tmp_path / "x.py").write_text(_TOOL)
    (tmp_path / "model_helper.py").write_text("VALUE = 7\n")
    (tmp_path / "parent.py").write_text(_PARENT)
    env = dict(os.environ, PYTHONPATH=runner.ROOT)
    done = subprocess.run(
        [sys.executable, str(tmp_path / "parent.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    # Each child parsed its own --out (the parent's --out was dropped in the child only).
    assert (tmp_path / "a.txt").read_text() == f"{tmp_path}/a.txt|7|__main__"
    assert (tmp_path / "b.txt").read_text() == f"{tmp_path}/b.txt|7|__main__"
    assert "PARENT_OUT parent default" in out
    # A tool that exits with a string: status 1 and the message on stderr, as a subprocess.
    assert "error: asked to fail" in out and "TOOLERROR three: exit status 1" in out
    assert "FORKED ['ok', 'ok', 'exit 1'] True" in out
    # Once TensorFlow ran an op here, fork is unsafe: the runner says so and uses a subprocess.
    assert "AFTER_OP False" in out
    assert "a subprocess instead of a fork" in out
    assert (tmp_path / "c.txt").read_text() == f"{tmp_path}/c.txt|7|__main__"
