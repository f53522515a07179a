"""tools/train.py: bad input gives one `error:` line and exit status 2; a run SIGKILLed at
three steps and restarted each time ends bitwise equal to an uninterrupted run."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = os.path.join(REPO, "tools", "train.py")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
TINY = ["--image_size=64", "--num_frames=8", "--frame_stride=2", "--anchor_sizes=16,32,48",
        "--rpn_filters=32", "--post_nms_top_k=20", "--num_roi_samples=16", "--max_boxes=4",
        "--max_proposals=4", "--max_objects=2", "--head=linear", "--head_dropout=0.3",
        "--batch_size=2", "--optimizer=adamw", "--learning_rate=0.001",
        "--warmup_learning_rate=0.0001", "--warmup_steps=2", "--deterministic",
        "--checkpoint_every=1", "--log_every=1", "--noprogress"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from action_tx.data import convert, synthetic
    root = tmp_path_factory.mktemp("ava")
    synthetic.generate(str(root / "ava"), preset="tiny", check=False, videos=3, seconds=8)
    convert.convert_split(str(root / "ava"), "train", str(root / "tf" / "train.tfrecord@2"),
                          num_frames=16, progress=False, num_workers=1)
    return {"label_map": str(root / "ava" / "annotations" / "action_list.pbtxt"),
            "train": str(root / "tf" / "train.tfrecord-*"), "root": root}


def run(*args, timeout=300):
    return subprocess.run([sys.executable, TRAIN, *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV, cwd=REPO)


def assert_clean_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [l for l in proc.stderr.splitlines() if l.strip() and "cuInit" not in l]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_missing_flagfile(tmp_path):
    assert_clean_error(run(f"--flagfile={tmp_path}/nope.flags"), "--flagfile", "nope.flags")


def test_unknown_head_lists_heads(tiny_data, tmp_path):
    proc = run(f"--label_map={tiny_data['label_map']}", f"--train_tfrecords={tiny_data['train']}",
               f"--model_dir={tmp_path}/m", "--head=nonesuch")
    assert_clean_error(proc, "nonesuch", "i3d", "linear", "tx")


def test_no_files_and_empty_files(tiny_data, tmp_path):
    common = [f"--label_map={tiny_data['label_map']}", f"--model_dir={tmp_path}/m"]
    assert_clean_error(run(*common, f"--train_tfrecords={tmp_path}/none-*.tfrecord"),
                       "none-*.tfrecord", "no files match")
    (tmp_path / "empty.tfrecord").write_bytes(b"")
    assert_clean_error(run(*common, f"--train_tfrecords={tmp_path}/empty.tfrecord"),
                       "empty.tfrecord", "no records")
    (tmp_path / "junk.tfrecord").write_text("not a record\n")
    assert_clean_error(run(*common, f"--train_tfrecords={tmp_path}/junk.tfrecord"),
                       "junk.tfrecord", "corrupted record")


def _train_killed_after(args, step):
    """Runs train.py, SIGKILLs it as soon as it reports the checkpoint of `step`."""
    proc = subprocess.Popen([sys.executable, TRAIN, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=ENV, cwd=REPO)
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
    return path, {n: reader.get_tensor(n) for n, _ in tf.train.list_variables(path)
                  if "ITERATOR_STATE" not in n and "save_counter" not in n}


def test_sigkill_three_times_resumes_bitwise(tiny_data, tmp_path):
    args = [f"--label_map={tiny_data['label_map']}", f"--train_tfrecords={tiny_data['train']}",
            "--train_steps=10", *TINY]
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
