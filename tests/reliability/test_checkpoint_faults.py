"""Checkpoint faults on the tiny preset (issue 26, items 1, 10, 11): a lost or garbled state file,
a damaged newest checkpoint, a write failure during a save, a finished run rerun, and a
model_dir with no trained model, for tools/train.py, tools/eval.py and
tools/export_saved_model.py. Every test copies one 3-step run (ckpt-1..3) and damages it.
"""

import hashlib
import os
import pathlib
import resource
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tools"))
from train_helpers import (
    ENV,
    REPO,
    TINY,
    TRAIN,
    assert_clean_error,  # noqa: E402
    make_tiny_data,
    run,
)

EVAL = os.path.join(REPO, "tools", "eval.py")
EXPORT = os.path.join(REPO, "tools", "export_saved_model.py")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Tiny synthetic data and a 3-step run of the tiny model on it (ckpt-1, -2, -3)."""
    root = tmp_path_factory.mktemp("faults")
    data = make_tiny_data(root)
    args = [
        f"--label_map={data['label_map']}",
        f"--train_tfrecords={data['train']}",
        *TINY,
        "--train_steps=3",
    ]
    proc = run(*args, f"--model_dir={root / 'run'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(data, args=args, run=root / "run")


def copy_run(trained, tmp_path) -> pathlib.Path:
    return pathlib.Path(shutil.copytree(trained["run"], tmp_path / "m"))


def digests(model_dir, steps) -> dict:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for s in steps
        for p in sorted(model_dir.glob(f"ckpt-{s}.*"))
    }


def truncate(model_dir, step):
    data = model_dir / f"ckpt-{step}.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])


def warnings_in(text):
    return [line for line in text.splitlines() if line.startswith("warning: ")]


def test_lost_state_file_resumes_from_the_index_files(trained, tmp_path):
    model_dir = copy_run(trained, tmp_path)
    (model_dir / "checkpoint").unlink()
    before = digests(model_dir, (1, 2, 3))
    proc = run(*trained["args"], f"--model_dir={model_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    [warning] = warnings_in(proc.stdout)
    assert f"{model_dir}/checkpoint is missing" in warning
    assert "found 3 checkpoint(s) from their ckpt-*.index files (ckpt-1, ckpt-2, ckpt-3)" in warning
    assert f"resumed from {model_dir}/ckpt-3 at step 3\n" in proc.stdout
    assert digests(model_dir, (1, 2, 3)) == before  # nothing overwritten, nothing deleted
    assert tf.train.latest_checkpoint(str(model_dir)) == f"{model_dir}/ckpt-3"  # rewritten


def test_garbled_state_file_and_damaged_newest_fall_back(trained, tmp_path):
    model_dir = copy_run(trained, tmp_path)
    (model_dir / "checkpoint").write_bytes(b"\x00\xff\xfe garbage {{")
    truncate(model_dir, 3)
    before = digests(model_dir, (1, 2))
    proc = run(*trained["args"], "--train_steps=4", f"--model_dir={model_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = warnings_in(proc.stdout)
    assert f"{model_dir}/checkpoint is unreadable" in warnings[0]
    assert any(f"cannot restore {model_dir}/ckpt-3 (" in w for w in warnings)
    assert f"resumed from {model_dir}/ckpt-2 at step 2\n" in proc.stdout
    assert [l for l in proc.stdout.splitlines() if l.startswith("checkpoint: ")] == [
        f"checkpoint: step {s} saved to {model_dir}/ckpt-{s}" for s in (3, 4)
    ]
    assert digests(model_dir, (1, 2)) == before
    state = tf.train.get_checkpoint_state(str(model_dir))
    assert [pathlib.Path(p).name for p in state.all_model_checkpoint_paths] == [
        "ckpt-1",
        "ckpt-2",
        "ckpt-3",
        "ckpt-4",
    ]
    assert (
        tf.train.load_checkpoint(f"{model_dir}/ckpt-4").get_tensor(
            "step/.ATTRIBUTES/VARIABLE_VALUE"
        )
        == 4
    )


def test_never_starts_from_scratch_over_checkpoints(trained, tmp_path):
    model_dir = copy_run(trained, tmp_path)
    (model_dir / "checkpoint").unlink()
    for step in (1, 2, 3):
        truncate(model_dir, step)
    before = digests(model_dir, (1, 2, 3))
    proc = run(*trained["args"], f"--model_dir={model_dir}")
    assert_clean_error(
        proc,
        "no checkpoint can be restored",
        "refusing to start from scratch",
        f"{model_dir}/ckpt-1",
    )
    assert digests(model_dir, (1, 2, 3)) == before


def test_finished_run_rerun_says_it_is_complete(trained, tmp_path):
    model_dir = copy_run(trained, tmp_path)
    proc = run(*trained["args"], f"--model_dir={model_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1] == (
        f"the run is already complete at step 3 (--train_steps=3); checkpoint: {model_dir}/ckpt-3"
    )
    assert "nan" not in proc.stdout and "checkpoint: step" not in proc.stdout
    assert not (model_dir / "train.lock").exists()  # the lock is given back on normal exit


def _limit_file_size():
    # Files may not grow past 4 MB (a checkpoint's data file is ~12 MB): writes then fail with
    # EFBIG, as they fail with ENOSPC on a full disk. (Python ignores SIGXFSZ.)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4_000_000, 4_000_000))


def test_failed_checkpoint_write_is_one_line_and_keeps_the_previous(trained, tmp_path):
    model_dir = copy_run(trained, tmp_path)
    before = digests(model_dir, (1, 2, 3))
    proc = subprocess.run(
        [sys.executable, TRAIN, *trained["args"], "--train_steps=5", f"--model_dir={model_dir}"],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
        cwd=REPO,
        preexec_fn=_limit_file_size,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    [line] = [l for l in proc.stderr.splitlines() if l.strip()]
    assert line.startswith(f"error: cannot write the checkpoint of step 4 in {model_dir} (")
    assert "File too large" in line
    assert f"the newest complete checkpoint is {model_dir}/ckpt-3" in line
    assert tf.train.latest_checkpoint(str(model_dir)) == f"{model_dir}/ckpt-3"
    assert digests(model_dir, (1, 2, 3)) == before
    reader = tf.train.load_checkpoint(f"{model_dir}/ckpt-3")  # still whole: every tensor reads
    names = [
        n for n, _ in tf.train.list_variables(f"{model_dir}/ckpt-3") if "ITERATOR_STATE" not in n
    ]  # (a variant numpy cannot hold)
    assert len(names) > 10 and all(reader.get_tensor(n) is not None for n in names)
    assert not list(model_dir.glob("ckpt-4*")) and not (model_dir / "train.lock").exists()


def test_eval_falls_back_over_a_damaged_newest_checkpoint(trained, tmp_path):
    model_dir = copy_run(trained, tmp_path)
    truncate(model_dir, 3)
    ann = trained["root"] / "ava" / "annotations"
    proc = subprocess.run(
        [
            sys.executable,
            EVAL,
            f"--model_dir={model_dir}",
            f"--eval_tfrecords={trained['train']}",
            f"--groundtruth={ann / 'ava_train.csv'}",
            f"--label_map={trained['label_map']}",
            f"--output_dir={tmp_path / 'eval'}",
            "--noprogress",
            "--num_images=0",
            "--eval_batch_size=8",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    [warning] = warnings_in(proc.stderr)
    assert f"cannot restore {model_dir}/ckpt-3 (" in warning and "before it" in warning
    assert "ckpt-2: frame-mAP@0.5IOU = " in proc.stdout
    assert sorted(p.name for p in (tmp_path / "eval").glob("*.json")) == ["ckpt-2_results.json"]


def export(*args):
    return subprocess.run(
        [sys.executable, EXPORT, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
        cwd=REPO,
    )


def test_export_falls_back_or_names_the_damaged_checkpoint(trained, tmp_path):
    model_dir = copy_run(trained, tmp_path)
    truncate(model_dir, 3)
    damaged = export(
        f"--model_dir={model_dir}",
        f"--checkpoint_path={model_dir}/ckpt-3",
        f"--output_dir={tmp_path / 'x'}",
    )
    assert damaged.returncode == 2 and "Traceback" not in damaged.stderr
    [line] = [l for l in damaged.stderr.splitlines() if "export_saved_model.py:" in l]
    assert line.startswith("export_saved_model.py: error: ") and f"{model_dir}/ckpt-3" in line
    proc = export(f"--model_dir={model_dir}", f"--output_dir={tmp_path / 'saved'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    [warning] = [l for l in proc.stderr.splitlines() if "export_saved_model.py: warning" in l]
    assert f"cannot restore {model_dir}/ckpt-3 (" in warning
    assert f"restored {model_dir}/ckpt-2" in proc.stderr
    assert (tmp_path / "saved" / "saved_model.pb").exists()


def test_a_dir_with_no_trained_model_is_named_so(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = export(f"--model_dir={tmp_path / 'empty'}", f"--output_dir={tmp_path / 'x'}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"export_saved_model.py: error: --model_dir: {tmp_path / 'empty'} holds no trained "
        "model (no model_flags.json, no ckpt-N checkpoint): train one there with "
        "tools/train.py"
    ]
    proc = subprocess.run(
        [
            sys.executable,
            EVAL,
            f"--model_dir={tmp_path / 'empty'}",
            f"--eval_tfrecords={tmp_path}/none-*",
            f"--groundtruth={tmp_path}/gt.csv",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
        cwd=REPO,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "holds no trained model" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
