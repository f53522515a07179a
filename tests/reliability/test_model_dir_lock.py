"""One trainer per model_dir (issue 26, item 3): `action_tx.model_dir_lock` and tools/train.py.

A second trainer on a model_dir in use refuses with exit status 2 and one `error:` line naming
the live holder (pid and host); the lock of a process that no longer runs is taken over with
a warning line; the lock is given back on errors (here) and on normal exit
(test_checkpoint_faults.py's finished-run test). Multi-worker runs: the chief alone takes it,
which tests/tools/test_train_multiworker.py's two workers on one model_dir exercise.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

from train_helpers import ENV, REPO, TINY, TRAIN, assert_clean_error, make_tiny_data, run

from action_tx import model_dir_lock  # noqa: E402


def dead_pid() -> int:
    """The pid of a process of this host that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_lock(model_dir: pathlib.Path, **holder):
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / model_dir_lock.LOCK_FILE).write_text(json.dumps(holder))


def test_lock_names_its_holder_refuses_a_second_and_is_released(tmp_path):
    messages = []
    lock = model_dir_lock.acquire(str(tmp_path / "m"), log=messages.append)
    path = tmp_path / "m" / "train.lock"
    holder = json.loads(path.read_text())
    assert (holder["pid"], holder["host"]) == (os.getpid(), socket.gethostname())
    with pytest.raises(model_dir_lock.ModelDirLocked) as error:
        model_dir_lock.acquire(str(tmp_path / "m"), log=messages.append)
    text = str(error.value)
    assert f"process {holder['pid']} on {holder['host']}" in text and str(path) in text
    assert "\n" not in text and messages == []
    lock.release()
    assert not path.exists()
    with model_dir_lock.acquire(str(tmp_path / "m")):  # free again
        assert path.exists()
    assert not path.exists()


def test_released_when_the_run_raises(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with model_dir_lock.acquire(str(tmp_path)):
            raise ZeroDivisionError
    assert not (tmp_path / "train.lock").exists()


def test_stale_lock_of_a_dead_local_process_is_taken_over(tmp_path):
    pid = dead_pid()
    write_lock(tmp_path, pid=pid, host=socket.gethostname(), started="earlier")
    messages = []
    lock = model_dir_lock.acquire(str(tmp_path), log=messages.append)
    assert len(messages) == 1
    assert f"stale lock {tmp_path / 'train.lock'} of process {pid}" in messages[0]
    assert "not running" in messages[0]
    assert json.loads((tmp_path / "train.lock").read_text())["token"] == lock.record["token"]
    lock.release()


def test_lock_of_another_host_is_respected(tmp_path):
    write_lock(tmp_path, pid=dead_pid(), host="elsewhere.example", started="earlier")
    with pytest.raises(
        model_dir_lock.ModelDirLocked,
        match=r"on elsewhere\.example .*if that "
        r"process is gone, delete .*train\.lock",
    ):
        model_dir_lock.acquire(str(tmp_path))
    assert json.loads((tmp_path / "train.lock").read_text())["host"] == "elsewhere.example"


def test_a_reused_pid_does_not_hold_the_lock(tmp_path):
    # Our own (live) pid, but recorded with another start time: the holder is gone.
    write_lock(tmp_path, pid=os.getpid(), host=socket.gethostname(), start_ticks=1)
    messages = []
    model_dir_lock.acquire(str(tmp_path), log=messages.append).release()
    assert len(messages) == 1 and "not running" in messages[0]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_data(tmp_path_factory.mktemp("ava"))


def test_second_trainer_on_a_model_dir_in_use_refuses(tiny_data, tmp_path):
    model_dir, lock = tmp_path / "m", tmp_path / "m" / "train.lock"
    common = [
        f"--label_map={tiny_data['label_map']}",
        f"--train_tfrecords={tiny_data['train']}",
        *TINY,
        f"--model_dir={model_dir}",
    ]
    # A long run (checkpoints rare: it keeps the disk and CPU to itself less).
    first = subprocess.Popen(
        [
            sys.executable,
            TRAIN,
            *common,
            "--train_steps=100000",
            "--checkpoint_every=100000",
            "--log_every=100000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 300
        while not lock.exists():  # the first run has started: it holds the lock
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        # The second one meanwhile, with other optimizer flags, as in the issue.
        second = run(*common, "--train_steps=5", "--optimizer=sgd", "--learning_rate=0.5")
        assert_clean_error(second, f"process {first.pid} on {socket.gethostname()}", str(lock))
        assert "checkpoint:" not in second.stdout and first.poll() is None
        assert json.loads(lock.read_text())["pid"] == first.pid
    finally:
        first.kill()  # SIGKILL: no release; the next trainer takes the stale lock over
        first.wait()
    assert json.loads(lock.read_text())["pid"] == first.pid
    assert not list(model_dir.glob("ckpt-*"))  # nothing of the refused run's was written


def test_stale_lock_taken_over_and_released_on_error(tmp_path):
    # No training data: the run takes the lock, then stops with one error line (no TF work).
    (tmp_path / "labels.txt").write_text("1: stand\n")
    model_dir = tmp_path / "m"
    pid = dead_pid()
    write_lock(model_dir, pid=pid, host=socket.gethostname(), started="earlier")
    start = time.monotonic()
    proc = run(
        f"--label_map={tmp_path}/labels.txt",
        f"--train_tfrecords={tmp_path}/none-*",
        f"--model_dir={model_dir}",
    )
    assert_clean_error(proc, "no files match")
    assert (
        f"warning: taking over the stale lock {model_dir / 'train.lock'} of process {pid} "
        in proc.stdout
    )
    assert not (model_dir / "train.lock").exists()
    assert time.monotonic() - start < 60
