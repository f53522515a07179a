"""tools/train.py: bad input gives one `error:` line and exit status 2; a run SIGKILLed at
three steps and restarted each time ends bitwise equal to an uninterrupted run."""

import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from train_helpers import ENV, REPO, TINY, TRAIN, assert_clean_error, make_tiny_data, run


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_data(tmp_path_factory.mktemp("ava"))


def test_missing_flagfile(tmp_path):
    assert_clean_error(run(f"--flagfile={tmp_path}/nope.flags"), "--flagfile", "nope.flags")


def test_unknown_head_lists_heads(tiny_data, tmp_path):
    proc = run(
        f"--label_map={tiny_data['label_map']}",
        f"--train_tfrecords={tiny_data['train']}",
        f"--model_dir={tmp_path}/m",
        "--head=nonesuch",
    )
    assert_clean_error(proc, "nonesuch", "i3d", "linear", "tx")


def test_no_files_and_empty_files(tiny_data, tmp_path):
    common = [f"--label_map={tiny_data['label_map']}", f"--model_dir={tmp_path}/m"]
    assert_clean_error(
        run(*common, f"--train_tfrecords={tmp_path}/none-*.tfrecord"),
        "none-*.tfrecord",
        "no files match",
    )
    (tmp_path / "empty.tfrecord").write_bytes(b"")
    assert_clean_error(
        run(*common, f"--train_tfrecords={tmp_path}/empty.tfrecord"), "empty.tfrecord", "no records"
    )
    (tmp_path / "junk.tfrecord").write_text("not a record\n")
    assert_clean_error(
        run(*common, f"--train_tfrecords={tmp_path}/junk.tfrecord"),
        "junk.tfrecord",
        "corrupted record",
    )


def _train_killed_after(args, step):
    """Runs train.py, SIGKILLs it as soon as it reports the checkpoint of `step`."""
    proc = subprocess.Popen(
        [sys.executable, TRAIN, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=ENV,
        cwd=REPO,
    )
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(f"checkpoint: step {step} "):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    return "".join(seen)


def _variables(model_dir):
    path = tf.train.latest_checkpoint(model_dir)
    reader = tf.train.load_checkpoint(path)
    # The iterator's serialized state and the save counter are bookkeeping, not results.
    return path, {
        n: reader.get_tensor(n)
        for n, _ in tf.train.list_variables(path)
        if "ITERATOR_STATE" not in n and "save_counter" not in n
    }


def test_sigkill_three_times_resumes_bitwise(tiny_data, tmp_path):
    args = [
        f"--label_map={tiny_data['label_map']}",
        f"--train_tfrecords={tiny_data['train']}",
        "--train_steps=10",
        *TINY,
    ]
    ref = run(*args, f"--model_dir={tmp_path}/ref")
    assert ref.returncode == 0, ref.stderr[-3000:]
    killed = str(tmp_path / "killed")
    logs = [_train_killed_after([*args, f"--model_dir={killed}"], s) for s in (3, 6, 8)]
    assert "resumed from" in logs[1] and "resumed from" in logs[2]
    final = run(*args, f"--model_dir={killed}")
    assert final.returncode == 0, final.stderr[-3000:]
    assert "resumed from" in final.stdout
    ref_path, want = _variables(f"{tmp_path}/ref")
    got_path, got = _variables(killed)
    assert ref_path.endswith("ckpt-10") and got_path.endswith("ckpt-10")
    assert set(want) == set(got)
    assert any(k.startswith("optimizer/") for k in want)
    assert any(k.startswith("seed_generators/") for k in want)
    assert int(got["step/.ATTRIBUTES/VARIABLE_VALUE"]) == 10
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
