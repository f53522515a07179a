"""train_lib / checkpointing on a toy model (fast): schedule values, resume, damaged-checkpoint
fallback, config guard, non-finite loss; and MirroredStrategy over 2 logical CPUs == one device
on the real detector (subprocess: logical devices must be set before TF starts)."""

import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from action_tx import checkpointing, train_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Toy(keras.Model):
    """clip [B, 2] -> dropout -> dense(1); loss = mean((y - target)^2) * scale."""

    def __init__(self, units=1, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.units, self.scale = units, scale
        self.drop = keras.layers.Dropout(0.5)
        self.dense = keras.layers.Dense(units, use_bias=False)

    def call(self, batch, training=None):
        return {
            "y": self.dense(self.drop(batch["clip"], training=training)),
            "target": batch["labels"],
        }

    def compute_losses(self, out):
        loss = tf.reduce_mean(tf.square(out["y"] - out["target"])) * self.scale
        return {"total_loss": loss}


def toy_data(n=8, batch=2):
    x = np.arange(2 * n, dtype=np.float32).reshape(n, 2) / n
    y = x @ np.array([[1.0], [-2.0]], np.float32)
    return lambda: (
        tf.data.Dataset.from_tensor_slices({"clip": x, "labels": y})
        .shuffle(n, seed=3)
        .repeat()
        .batch(batch, drop_remainder=True)
    )


def toy_train(model_dir, steps, scale=1.0, units=1, lr=0.1, **kw):
    return train_lib.train(
        model_fn=lambda: Toy(units, scale),
        dataset_fn=toy_data(),
        model_dir=str(model_dir),
        train_steps=steps,
        global_batch_size=2,
        learning_rate=lr,
        warmup_learning_rate=lr / 10,
        warmup_steps=2,
        decay_steps=100,
        checkpoint_every=1,
        log_every=1,
        progress=False,
        deterministic=True,
        **kw,
    )


def test_schedule_warmup_then_cosine():
    s = train_lib.learning_rate_schedule(
        learning_rate=0.1, warmup_learning_rate=0.01, warmup_steps=1000, decay_steps=5000
    )
    # linear 0.01 -> 0.1 over 1000 steps; then 0.1 * (1 + cos(pi * t / 4000)) / 2
    for step, want in [(0, 0.01), (500, 0.055), (1000, 0.1), (3000, 0.05), (5000, 0.0)]:
        np.testing.assert_allclose(float(s(step)), want, rtol=1e-5, atol=1e-7)


def test_seed_generators_are_checkpointed(tmp_path):
    model = Toy()
    model({"clip": tf.zeros([1, 2]), "labels": tf.zeros([1, 1])})
    states = checkpointing.seed_generator_states(model)
    assert list(states) == ["0"] and states["0"] is model.drop.seed_generator.state
    opt = keras.optimizers.SGD(0.1)
    ck = checkpointing.make_checkpoint(
        model=model, optimizer=opt, step=tf.Variable(0, dtype=tf.int64)
    )
    path = ck.save(str(tmp_path / "c"))
    names = [n for n, _ in tf.train.list_variables(path)]
    assert any(n.startswith("seed_generators/") for n in names)


def test_resume_equals_uninterrupted_and_fallback_on_truncated(tmp_path, capsys):
    ref = toy_train(tmp_path / "ref", 6)
    toy_train(tmp_path / "run", 4)
    # Damage the newest checkpoint: the resumed run must report it and use ckpt-3.
    data = str(tmp_path / "run" / "ckpt-4.data-00000-of-00001")
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    resumed = toy_train(tmp_path / "run", 6)
    out = capsys.readouterr().out
    assert "cannot restore" in out and "ckpt-4" in out and "resumed from" in out
    assert "at step 3" in out
    assert len(resumed["history"]) == 3
    for a, b in zip(
        ref["model"].weights + ref["optimizer"].variables,
        resumed["model"].weights + resumed["optimizer"].variables,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [h["total_loss"] for h in ref["history"][3:]] == [
        h["total_loss"] for h in resumed["history"]
    ]


def test_ctrl_c_saves_the_finished_step_and_resumes_exactly(tmp_path):
    def run(model_dir, steps, eval_fn=None):
        return train_lib.train(
            model_fn=lambda: Toy(),
            dataset_fn=toy_data(),
            model_dir=str(model_dir),
            train_steps=steps,
            global_batch_size=2,
            learning_rate=0.1,
            warmup_learning_rate=0.01,
            warmup_steps=2,
            decay_steps=100,
            checkpoint_every=4,
            log_every=1,
            progress=False,
            deterministic=True,
            eval_fn=eval_fn,
            eval_every=1 if eval_fn else 0,
        )

    def ctrl_c_at_step_2(model, step):
        if step == 2:
            signal.raise_signal(signal.SIGINT)  # the handler only flags it: the step completes
        return {}

    ref = run(tmp_path / "ref", 6)
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a background job
    with pytest.raises(KeyboardInterrupt, match="SIGINT at step 2: checkpoint .*ckpt-2 holds it"):
        run(tmp_path / "run", 6, ctrl_c_at_step_2)
    assert signal.getsignal(signal.SIGINT) is before  # the trainer's handler is removed
    assert checkpointing.find_checkpoints(str(tmp_path / "run"))[-1].endswith("ckpt-2")
    resumed = run(tmp_path / "run", 6)
    assert len(resumed["history"]) == 4
    for a, b in zip(ref["model"].weights, resumed["model"].weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_other_model_refused(tmp_path):
    toy_train(tmp_path / "m", 1, model_config={"head": "i3d"})
    with pytest.raises(checkpointing.CheckpointError, match="head: 'i3d' in config.json, now 'tx'"):
        toy_train(tmp_path / "m", 2, model_config={"head": "tx"})
    with pytest.raises(checkpointing.CheckpointError, match="different model configuration"):
        toy_train(tmp_path / "m", 2, units=3)  # same flags, other shapes


def test_a_config_beside_no_checkpoint_is_replaced_not_a_reason_to_refuse(tmp_path):
    """A start that failed before its first save (e.g. a wrong bank path) leaves config.json
    alone: the corrected retry replaces it. Once a checkpoint or a state file is there, the
    same retry is refused."""
    model_dir = str(tmp_path / "m")
    checkpointing.check_model_config(model_dir, {"head": "acar", "bank": "data0"})
    checkpointing.check_model_config(model_dir, {"head": "acar", "bank": "data100"})
    with open(os.path.join(model_dir, "config.json")) as f:
        assert json.load(f) == {"head": "acar", "bank": "data100"}
    for saved in ("ckpt-3.index", "checkpoint"):
        path = os.path.join(model_dir, saved)
        open(path, "w").close()
        with pytest.raises(checkpointing.CheckpointError, match="bank: 'data100' in config.json"):
            checkpointing.check_model_config(model_dir, {"head": "acar", "bank": "data0"})
        os.remove(path)


def test_non_finite_loss_stops_and_keeps_last_good(tmp_path):
    with pytest.raises(train_lib.TrainingError, match=r"non-finite loss at step \d+ .*ckpt-\d+"):
        toy_train(tmp_path / "m", 60, lr=1e4)  # diverges: weights grow ~1e3x a step
    latest = tf.train.latest_checkpoint(str(tmp_path / "m"))
    reader = tf.train.load_checkpoint(latest)
    for name, _ in tf.train.list_variables(latest):
        if name.startswith("model/") and "VARIABLE_VALUE" in name:
            assert np.all(np.isfinite(reader.get_tensor(name)))


MIRRORED_SCRIPT = r"""
import json, sys
import action_tx, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from action_tx import train_lib
from action_tx.model_builder import build_detector

B, T, S, C = 4, 4, 32, 3
rng = np.random.default_rng(0)
data = {"clip": rng.uniform(-1, 1, (8, T, S, S, 3)).astype(np.float32),
        # two boxes per clip: every replica normalizes its loss by the same count
        "boxes": np.tile(
            np.array([[0.1, 0.1, 0.6, 0.5], [0.3, 0.4, 0.9, 0.9]], np.float32), (8, 1, 1)
        ),
        "box_mask": np.ones((8, 2), bool),
        "labels": rng.integers(0, 2, (8, 2, C)).astype(np.float32)}
def ds():
    return tf.data.Dataset.from_tensor_slices(data).repeat().batch(B, drop_remainder=True)
def model():
    # frozen BN (paper §3.5): batch statistics would differ per replica
    return build_detector(num_classes=C, head="linear", proposals="gt", freeze_bn=True, seed=1)
out = {}
for name, strategy in [("one", train_lib.make_strategy("one_device")),
                       ("two", train_lib.make_strategy("mirrored", ["/cpu:0", "/cpu:1"]))]:
    r = train_lib.train(model_fn=model, dataset_fn=ds, model_dir=sys.argv[1] + "/" + name,
                        train_steps=5, global_batch_size=B, strategy=strategy,
                        optimizer="sgd", learning_rate=0.05, warmup_steps=0, clip_norm=1.0,
                        progress=False, deterministic=True, log_every=5, checkpoint_every=5,
                        precision=sys.argv[2])
    out[name] = {"replicas": strategy.num_replicas_in_sync,
                 "loss": [h["total_loss"] for h in r["history"]],
                 "weights": [float(np.sum(np.abs(np.asarray(w))))
                             for w in r["model"].trainable_weights]}
print("RESULT " + json.dumps(out))
"""


@pytest.mark.parametrize("precision", ["float32", "mixed_float16"])
def test_mirrored_two_cpus_equals_one_device(tmp_path, precision):
    # mixed_float16: the LossScaleOptimizer's cross-replica finite check and skip under
    # MirroredStrategy; float16 sums differ in rounding between 1 and 2 replicas.
    proc = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(tmp_path), precision],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT ") :])
    assert out["one"]["replicas"] == 1 and out["two"]["replicas"] == 2
    assert len(out["one"]["loss"]) == 5
    rtol = 1e-4 if precision == "float32" else 1e-2
    np.testing.assert_allclose(out["two"]["loss"], out["one"]["loss"], rtol=rtol)
    np.testing.assert_allclose(out["two"]["weights"], out["one"]["weights"], rtol=rtol)
    assert out["one"]["loss"][-1] < out["one"]["loss"][0]  # it does learn


def test_step_schedule_acar_ucf24():
    """ACAR-Net §5 on UCF101-24: linear warm-up over the first quarter of 5.4k steps to 0.002,
    divided by 10 at 4.9k and at 5.1k."""
    schedule = train_lib.learning_rate_schedule(
        learning_rate=0.002, warmup_learning_rate=0.0, warmup_steps=1350, lr_steps=[4900, 5100]
    )
    steps = [0, 675, 1350, 4899, 4900, 5099, 5100, 5399]
    got = [float(schedule(s)) for s in steps]
    np.testing.assert_allclose(
        got, [0.0, 0.001, 0.002, 0.002, 0.0002, 0.0002, 0.00002, 0.00002], rtol=1e-5
    )
    again = train_lib.WarmupStepDecay(**schedule.get_config())
    assert float(again(5000)) == pytest.approx(0.0002)
    with pytest.raises(train_lib.TrainingError, match="must ascend"):
        train_lib.learning_rate_schedule(warmup_steps=100, lr_steps=[50])
