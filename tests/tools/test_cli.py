"""tools/cli.py: one `error: ...` line and exit 2 for bad input, TensorFlow's C++ log quiet on
a newcomer's console (no `E ... cuInit` lines on a CPU-only machine), back with --verbosity."""

import os
import re
import subprocess
import sys

from train_helpers import REPO, TRAIN

# TensorFlow's C++ log lines: "2026-12-06 01:14:05.524955: E external/.../x.cc:51] ..."
TF_LOG = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] ")


def _train(tmp_path, *extra):
    (tmp_path / "labels.txt").write_text("1: bend/bow\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [
            sys.executable,
            TRAIN,
            f"--label_map={tmp_path / 'labels.txt'}",
            f"--train_tfrecords={tmp_path / 'none-*'}",
            f"--model_dir={tmp_path / 'm'}",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO,
    )


def test_quiet_console_and_verbosity_brings_tf_logs_back(tmp_path):
    proc = _train(tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    # TensorFlow was loaded (the strategy is made before the data check) and said nothing.
    assert lines == [f"error: train_tfrecords={tmp_path / 'none-*'}: no files match"], lines
    loud = _train(tmp_path, "--verbosity=0")
    assert loud.returncode == 2
    assert any(TF_LOG.match(line) for line in loud.stderr.splitlines()), loud.stderr[-2000:]
    assert loud.stderr.strip().splitlines()[-1].startswith("error: ")


def test_unexpected_argument_is_one_error_line(tmp_path):
    proc = _train(tmp_path, "extra")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: unexpected arguments: extra"]


def test_ctrl_c_is_one_line_and_status_130():
    # The trainer raises KeyboardInterrupt naming its checkpoint (tests/test_train_lib.py).
    script = (
        "import cli\n"
        "def main(argv):\n"
        "    raise KeyboardInterrupt('SIGINT at step 2: checkpoint m/ckpt-2 holds it')\n"
        "cli.run(main)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=os.path.join(REPO, "tools"),
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(REPO, "tools"), REPO])),
    )
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "interrupted: SIGINT at step 2: checkpoint m/ckpt-2 holds it"
    )
