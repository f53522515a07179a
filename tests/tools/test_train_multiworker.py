"""tools/train.py --strategy=multi_worker: two worker processes on 127.0.0.1 train, the chief
writes the checkpoints, a SIGKILLed worker makes
the other exit non-zero within 60 s (one error line, no hang), and a missing or bad TF_CONFIG
is one error line with exit status 2.

Each TensorFlow process costs ~15-20 s to start and trace its first step on an idle CPU (much
more on a loaded one), so the clusters are few, tiny and run for a few steps only.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from train_helpers import ENV, REPO, TINY, TRAIN, assert_clean_error, make_tiny_data, run

# A small, nearly deterministic set-up: ground-truth boxes as RoIs (no RoI / anchor sampling),
# no dropout, frozen BatchNorm, SGD with clipping.
EXACT = [
    "--proposals=gt",
    "--head_dropout=0",
    "--freeze_bn",
    "--optimizer=sgd",
    "--learning_rate=0.05",
    "--warmup_steps=0",
    "--clip_norm=2",
]
START_TIMEOUT = 400  # s until the first step is done, generous for a loaded 2-core machine


@pytest.fixture(scope="module")
def one_person_data(tmp_path_factory):
    return make_tiny_data(tmp_path_factory.mktemp("ava1"), people=1)


def free_addresses(n):
    """n distinct free ports on 127.0.0.1 (bound together, so the OS gives distinct ones)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]
    finally:
        for s in socks:
            s.close()


def start(args, log_prefix, tf_config=None):
    """Popen of train.py; stdout/stderr go to files (no pipe can fill up and block it)."""
    env = dict(ENV)
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    with open(f"{log_prefix}.out", "w") as out, open(f"{log_prefix}.err", "w") as err:
        return subprocess.Popen(
            [sys.executable, TRAIN, *args], stdout=out, stderr=err, env=env, cwd=REPO
        )


def start_workers(args, log_dir, n=2):
    addresses = free_addresses(n)
    return [
        start(
            [*args, "--strategy=multi_worker"],
            f"{log_dir}/w{i}",
            {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}},
        )
        for i in range(n)
    ]


def read(path):
    with open(path) as f:
        return f.read()


def kill_all(procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=30)


def wait_all(procs, log_prefixes, timeout):
    deadline = time.monotonic() + timeout
    for p, prefix in zip(procs, log_prefixes):
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"{prefix} still running after {timeout} s:\n{read(prefix + '.err')[-2000:]}"
            )


def model_variables(model_dir):
    path = tf.train.latest_checkpoint(model_dir)
    reader = tf.train.load_checkpoint(path)
    return path, {
        n: reader.get_tensor(n) for n, _ in tf.train.list_variables(path) if n.startswith("model/")
    }


def test_two_workers_train_and_the_chief_checkpoints(one_person_data, tmp_path):
    # Equality with a one-process run of the same global batch is not asserted here: it held
    # in one run (losses identical, weights within 1.5e-8) and failed at step 3 in two others
    # (loss 2.5e-4 relative off), a cause not found yet (see the trainer's open issue notes).
    args = [
        f"--label_map={one_person_data['label_map']}",
        f"--train_tfrecords={one_person_data['train']}",
        "--train_steps=3",
        *TINY,
        *EXACT,
    ]
    mw = str(tmp_path / "mw")
    logs = [str(tmp_path / "w0"), str(tmp_path / "w1")]
    procs = []
    try:
        procs = start_workers([*args, f"--model_dir={mw}"], tmp_path)
        wait_all(procs, logs, timeout=2 * START_TIMEOUT)
    finally:
        kill_all(procs)
    for p, prefix in zip(procs, logs):
        assert p.returncode == 0, f"{prefix}: {read(prefix + '.err')[-3000:]}"
    chief, other = read(logs[0] + ".out"), read(logs[1] + ".out")
    assert [l for l in chief.splitlines() if l.startswith("checkpoint: ")] == [
        f"checkpoint: step {s} saved to {mw}/ckpt-{s}" for s in (1, 2, 3)
    ]
    assert not [l for l in other.splitlines() if l.startswith("checkpoint: ")]
    assert "trained to step 3; checkpoint: None;" in other
    # Only the chief writes: worker 1's scratch saves are gone, model_flags.json is there.
    assert sorted(os.listdir(mw)) == [
        "checkpoint",
        "ckpt-1.data-00000-of-00001",
        "ckpt-1.index",
        "ckpt-2.data-00000-of-00001",
        "ckpt-2.index",
        "ckpt-3.data-00000-of-00001",
        "ckpt-3.index",
        "model_flags.json",
        "train",
    ]
    path, variables = model_variables(mw)
    assert path.endswith("ckpt-3") and len(variables) > 10


def test_killed_worker_makes_the_other_fail_fast(one_person_data, tmp_path):
    args = [
        f"--label_map={one_person_data['label_map']}",
        f"--train_tfrecords={one_person_data['train']}",
        "--train_steps=1000",
        *TINY,
        *EXACT,
        "--collective_timeout=30",
        f"--model_dir={tmp_path / 'mw'}",
    ]
    chief_out = str(tmp_path / "w0.out")
    procs = []
    try:
        procs = start_workers(args, tmp_path)
        # The chief's checkpoint line of step 1 means both workers finished step 1.
        deadline = time.monotonic() + START_TIMEOUT
        while "checkpoint: step 1 " not in read(chief_out):
            assert all(p.poll() is None for p in procs), read(str(tmp_path / "w0.err"))[-3000:]
            assert time.monotonic() < deadline, "no step within the start timeout"
            time.sleep(0.5)
        procs[1].send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        try:
            procs[0].wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("worker 0 still running 60 s after worker 1 was killed (a hang)")
        took = time.monotonic() - killed_at
    finally:
        kill_all(procs)
    assert procs[1].returncode == -signal.SIGKILL
    err = read(str(tmp_path / "w0.err"))
    assert procs[0].returncode == 1, err[-3000:]
    assert "Traceback" not in err
    last = [l for l in err.splitlines() if l.strip()][-1]
    assert last.startswith("error: another worker died or stopped answering ("), err[-3000:]
    assert f"newest checkpoint: {tmp_path / 'mw'}/ckpt-" in last
    assert "restart every worker" in last
    assert took < 60


def test_tf_config_missing_or_outside_the_cluster(tmp_path):
    # (each run costs ~10 s of imports; a malformed TF_CONFIG takes the same path)
    (tmp_path / "labels.txt").write_text("1: stand\n")
    args = [
        f"--label_map={tmp_path}/labels.txt",
        f"--train_tfrecords={tmp_path}/*.tfrecord",
        f"--model_dir={tmp_path}/m",
        "--strategy=multi_worker",
    ]
    env = {k: v for k, v in ENV.items() if k != "TF_CONFIG"}
    assert_clean_error(run(*args, env=env), "--strategy=multi_worker needs the TF_CONFIG")
    outside = dict(
        env,
        TF_CONFIG=json.dumps(
            {"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}
        ),
    )
    assert_clean_error(run(*args, env=outside), "task worker:3 is not in the cluster")


def test_aia_memory_tables_identical_across_workers(tmp_path):
    """Issue 27 item 6: every worker's AIA memory holds the writes of every replica (an
    all-gather before the scatter) and the loss tags are the global batch's, so after 3 steps
    both workers' tables are identical and equal a one-process run's with the same global
    batch (tests/tools/aia_memory_worker.py)."""
    worker = os.path.join(REPO, "tests", "tools", "aia_memory_worker.py")
    addresses = free_addresses(2)
    procs = []
    try:
        for i in range(2):
            env = dict(
                ENV,
                TF_CONFIG=json.dumps(
                    {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}}
                ),
            )
            with open(tmp_path / f"w{i}.err", "w") as err:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, worker, str(tmp_path / f"w{i}.npz")],
                        stderr=err,
                        env=env,
                        cwd=REPO,
                    )
                )
        one = subprocess.run(
            [sys.executable, worker, str(tmp_path / "one.npz")],
            capture_output=True,
            text=True,
            env={k: v for k, v in ENV.items() if k != "TF_CONFIG"},
            cwd=REPO,
            timeout=START_TIMEOUT,
        )
        wait_all(procs, [str(tmp_path / "w0"), str(tmp_path / "w1")], timeout=START_TIMEOUT)
    finally:
        kill_all(procs)
    assert one.returncode == 0, one.stderr[-3000:]
    for i, p in enumerate(procs):
        assert p.returncode == 0, read(str(tmp_path / f"w{i}.err"))[-3000:]
    tables = [np.load(tmp_path / f"{name}.npz") for name in ("w0", "w1", "one")]
    assert (tables[2]["video"] == 0).all()  # the one-process run wrote every row
    for name in ("features", "mask", "video", "timestamp"):
        np.testing.assert_array_equal(tables[0][name], tables[1][name], err_msg=name)
        np.testing.assert_array_equal(tables[0][name], tables[2][name], err_msg=name)
    for name in ("loss_tag", "current_loss"):
        np.testing.assert_allclose(tables[0][name], tables[1][name], rtol=0, atol=0)
        np.testing.assert_allclose(tables[0][name], tables[2][name], rtol=1e-6, err_msg=name)
