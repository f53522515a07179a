"""FeatureMemory: windows at video edges, never-written entries, write/read values (float16),
loss tags and steps, checkpoint round trip and trainer resume, SavedModel export, and one table
under MirroredStrategy over 2 logical CPUs holding both replicas' writes (subprocess: logical
devices must be set before TF starts)."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from action_tx import checkpointing, train_lib
from action_tx.heads.aia_memory import FeatureMemory

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Two videos of 4 keyframes each, 1 s apart: keyframes 0-3 are video 0 (t = 900..903),
# keyframes 4-7 are video 1 (t = 900..903).
KF = np.arange(8, dtype=np.int32)
VIDEO = np.array([0, 0, 0, 0, 1, 1, 1, 1], np.int32)
TIME = np.array([900, 901, 902, 903, 900, 901, 902, 903], np.int32)


def person_features(rows, n=3, dim=2):
    """[len(rows), n, dim]: entry r, person j = (10 r + j, -(10 r + j))."""
    v = 10.0 * np.asarray(rows, np.float32)[:, None] + np.arange(n, dtype=np.float32)[None]
    return np.stack([v, -v], axis=-1)


def filled(storage_dtype="float32", rows=KF):
    memory = FeatureMemory(num_keyframes=8, max_persons=3, dim=2, storage_dtype=storage_dtype)
    rows = np.asarray(rows)
    mask = np.zeros([len(rows), 3], bool)
    mask[:, :2] = True  # 2 persons per keyframe
    memory.write(
        rows,
        VIDEO[rows],
        TIME[rows],
        person_features(rows),
        mask,
        loss_tag=rows * 0.5,
        step=tf.constant(7, tf.int64),
    )
    return memory


def read(memory, rows, window, times=None):
    rows = np.asarray(rows, np.int32)
    return {
        k: v.numpy()
        for k, v in memory.read(
            rows, VIDEO[rows], TIME[rows] if times is None else times, window
        ).items()
    }


def test_get_config_round_trip():
    memory = FeatureMemory(10, 4, 6, storage_dtype="float16", name="mem")
    config = memory.get_config()
    assert {k: config[k] for k in ("num_keyframes", "max_persons", "dim", "storage_dtype")} == dict(
        num_keyframes=10, max_persons=4, dim=6, storage_dtype="float16"
    )
    again = FeatureMemory.from_config(config)
    assert again.get_config() == config
    assert all(not v.trainable for v in again.variables) and len(again.variables) == 6
    with pytest.raises(ValueError, match="storage_dtype"):
        FeatureMemory(10, 4, 6, storage_dtype="int8")


def test_window_at_video_edges_masks_outside():
    got = read(filled(), [0, 3, 4, 7], window=2)
    np.testing.assert_array_equal(got["offset"], [-2, -1, 0, 1, 2])
    np.testing.assert_array_equal(
        got["valid"],
        [
            [0, 0, 1, 1, 1],  # keyframe 0: -2, -1 lie before the table
            [1, 1, 1, 0, 0],  # keyframe 3: +1, +2 are video 1
            [0, 0, 1, 1, 1],  # keyframe 4: -1, -2 are video 0
            [1, 1, 1, 0, 0],
        ],
    )  # keyframe 7: +1, +2 lie after the table
    assert got["features"].shape == (4, 5, 3, 2)
    # keyframe 3, offset -2 -> entry 1: persons (10, -10), (11, -11); person 3 is padding.
    np.testing.assert_array_equal(got["features"][1, 0], [[10, -10], [11, -11], [0, 0]])
    np.testing.assert_array_equal(got["mask"][1, 0], [True, True, False])
    # Outside entries are all-false and zero, even though entry 5 holds data (video 1).
    assert not got["mask"][1, 3:].any() and not got["features"][1, 3:].any()
    np.testing.assert_array_equal(got["loss_tag"][1], [0.5, 1.0, 1.5, 0, 0])
    np.testing.assert_array_equal(got["write_step"][1], [7, 7, 7, -1, -1])


def test_never_written_and_time_gap_masked():
    memory = filled(rows=[1, 3])  # entries 0, 2 never written
    got = read(memory, [1], window=2)
    np.testing.assert_array_equal(got["valid"], [[0, 0, 1, 0, 1]])
    np.testing.assert_array_equal(got["write_step"], [[-1, -1, 7, -1, 7]])
    # The same index read for a keyframe whose time is far away: |dt| > window -> masked.
    got = read(memory, [1], window=1, times=np.array([950], np.int32))
    assert not got["valid"].any() and not got["mask"].any()
    # Padded query (keyframe_index -1) gets nothing.
    got = {k: v.numpy() for k, v in memory.read([-1], [0], [900], 1).items()}
    assert not got["valid"].any()


def test_slots_are_time_offsets_across_a_gap():
    """Video 0 lacks t = 902 (an excluded timestamp): its rows hold t = 900, 901, 903, 904. Each
    keyframe lands in the slot of its own time offset; the gap's slot stays empty."""
    memory = FeatureMemory(num_keyframes=5, max_persons=1, dim=1)
    times = np.array([900, 901, 903, 904, 900], np.int32)
    memory.write(
        np.arange(5),
        [0, 0, 0, 0, 1],
        times,
        np.arange(5, dtype=np.float32)[:, None, None],
        np.ones([5, 1], bool),
        loss_tag=np.arange(5) + 0.5,
    )
    got = {
        k: v.numpy()
        for k, v in tf.function(
            lambda: memory.read(
                tf.constant([0, 3]), tf.constant([0, 0]), tf.constant([900, 904]), 3
            )
        )().items()
    }
    np.testing.assert_array_equal(got["offset"], [-3, -2, -1, 0, 1, 2, 3])
    # t = 900: rows 1, 2, 3 are at +1, +3, +4 s; +4 is outside the window, +2 is the gap.
    np.testing.assert_array_equal(got["valid"][0], [0, 0, 0, 1, 1, 0, 1])
    np.testing.assert_array_equal(got["features"][0, :, 0, 0], [0, 0, 0, 0, 1, 0, 2])
    # t = 904: rows 0..2 are at -4, -3, -1 s; row 4 is video 1.
    np.testing.assert_array_equal(got["valid"][1], [1, 0, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(got["features"][1, :, 0, 0], [1, 0, 2, 3, 0, 0, 0])
    np.testing.assert_array_equal(got["loss_tag"][1], [1.5, 0, 2.5, 3.5, 0, 0, 0])


@pytest.mark.parametrize("storage_dtype,atol", [("float32", 0.0), ("float16", 1e-3)])
def test_write_then_read_values(storage_dtype, atol):
    memory = FeatureMemory(num_keyframes=8, max_persons=3, dim=2, storage_dtype=storage_dtype)
    assert memory.features.dtype == storage_dtype
    feats = np.array(
        [[[0.1234, 1], [2, 3], [4, 5], [6, 7]], [[8, 9], [10, 11], [12, 13], [14.5, 15]]],
        np.float32,
    )
    # Real persons: row 0 -> 1, 3 (moved to the front); row 1 -> all 4 (cut to max_persons 3).
    mask = np.array([[False, True, False, True], [True, True, True, True]])

    @tf.function
    def write_in_graph():
        memory.write(
            tf.constant([2, -1]),
            [0, 0],
            [902, 0],
            feats,
            mask,
            loss_tag=[0.75, 9.0],
            step=tf.constant(12, tf.int64),
        )
        memory.write(tf.constant([-1, 5]), [0, 1], [0, 901], feats, mask, loss_tag=0.25, step=13)

    write_in_graph()
    got = {
        k: v.numpy()
        for k, v in tf.function(
            lambda: memory.read(
                tf.constant([2, 5]), tf.constant([0, 1]), tf.constant([902, 901]), 0
            )
        )().items()
    }
    assert got["features"].dtype == np.float32
    np.testing.assert_allclose(got["features"][0, 0], [[2, 3], [6, 7], [0, 0]], atol=atol)
    np.testing.assert_allclose(got["features"][1, 0], [[8, 9], [10, 11], [12, 13]], atol=atol)
    np.testing.assert_array_equal(got["mask"][:, 0], [[1, 1, 0], [1, 1, 1]])
    np.testing.assert_array_equal(got["loss_tag"][:, 0], [0.75, 0.25])
    np.testing.assert_array_equal(got["write_step"][:, 0], [12, 13])
    np.testing.assert_array_equal(memory.video.numpy(), [-1, -1, 0, -1, -1, 1, -1, -1])
    np.testing.assert_array_equal(memory.timestamp.numpy()[[2, 5]], [902, 901])
    # float16 storage: the round trip of 0.1234 is the nearest float16, within 1e-3.
    assert abs(float(memory.read([2], [0], [902], 0)["features"][0, 0, 0, 0]) - 2) <= atol


def test_keyframe_index_beyond_the_table_is_a_clear_error():
    memory = filled()
    with pytest.raises(tf.errors.InvalidArgumentError, match="keyframe_index >= num_keyframes 8"):
        memory.write([8], [0], [900], np.zeros([1, 1, 2], np.float32), [[True]])
    with pytest.raises(tf.errors.InvalidArgumentError, match="keyframe_index >= num_keyframes 8"):
        tf.function(lambda: memory.read(tf.constant([9]), tf.constant([0]), tf.constant([0]), 1))()
    np.testing.assert_array_equal(memory.video.numpy(), VIDEO)  # nothing written


def test_overwrite_replaces_entry():
    memory = filled()
    memory.write(
        [3], [0], [903], np.full([1, 1, 2], 5.0, np.float32), [[True]], loss_tag=[2.0], step=9
    )
    got = read(memory, [3], window=0)
    np.testing.assert_array_equal(got["features"][0, 0], [[5, 5], [0, 0], [0, 0]])
    np.testing.assert_array_equal(got["mask"][0, 0], [True, False, False])
    assert got["loss_tag"][0, 0] == 2.0 and got["write_step"][0, 0] == 9


class Head(keras.layers.Layer):
    """A head holding a memory: dense(clip) -> per-keyframe person features, written in training."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(2, use_bias=False)
        self.memory = FeatureMemory(num_keyframes=8, max_persons=1, dim=2)

    def call(self, clip, keyframe_index, training=None):
        y = self.dense(clip)
        if training:
            self.memory.write(
                keyframe_index,
                tf.zeros_like(keyframe_index),
                keyframe_index + 900,
                y[:, None],
                tf.ones_like(y[:, :1], tf.bool),
            )
        return y


class Toy(keras.Model):
    """batch {clip [B, 2], labels [B, 2], keyframe_index [B]}; loss = mean((y - labels)^2)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.head = Head()

    def call(self, batch, training=None):
        return {
            "y": self.head(batch["clip"], batch["keyframe_index"], training=training),
            "target": batch["labels"],
        }

    def compute_losses(self, out):
        return {"total_loss": tf.reduce_mean(tf.square(out["y"] - out["target"]))}


def toy_batch(rows):
    rows = np.asarray(rows, np.int32)
    clip = np.stack([rows, rows + 1], -1).astype(np.float32) / 8
    return {"clip": clip, "labels": clip[:, ::-1].copy(), "keyframe_index": rows}


def test_checkpoint_round_trip_into_fresh_model(tmp_path):
    model = Toy()
    model(toy_batch([1, 4]), training=True)
    memory = model.head.memory
    ids = {id(v) for v in checkpointing.checkpointable(model).head.table.values()}
    assert all(id(v) in ids for v in memory.variables)  # held by the head's group
    path = tf.train.Checkpoint(model=checkpointing.checkpointable(model)).save(str(tmp_path / "c"))
    fresh = Toy()
    fresh(toy_batch([0]), training=False)
    assert (fresh.head.memory.video.numpy() == -1).all()
    tf.train.Checkpoint(model=checkpointing.checkpointable(fresh)).restore(
        path
    ).assert_existing_objects_matched()
    for a, b in zip(memory.variables, fresh.head.memory.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(fresh.head.memory.video.numpy(), [-1, 0, -1, -1, 0, -1, -1, -1])


def toy_dataset():
    data = toy_batch(np.arange(8))
    return tf.data.Dataset.from_tensor_slices(data).repeat().batch(2, drop_remainder=True)


def toy_train(model_dir, steps, learning_rate=0.1, **kw):
    return train_lib.train(
        model_fn=Toy,
        dataset_fn=toy_dataset,
        model_dir=str(model_dir),
        train_steps=steps,
        global_batch_size=2,
        learning_rate=learning_rate,
        warmup_steps=0,
        decay_steps=100,
        checkpoint_every=1,
        log_every=1,
        progress=False,
        **kw,
    )


def test_contents_survive_trainer_resume(tmp_path):
    toy_train(tmp_path, 2)  # writes keyframes 0-3
    resumed = toy_train(tmp_path, 3)["model"]  # fresh model; step 3 writes 4, 5
    np.testing.assert_array_equal(resumed.head.memory.video.numpy(), [0, 0, 0, 0, 0, 0, -1, -1])
    np.testing.assert_array_equal(resumed.head.memory.timestamp.numpy()[:6], np.arange(900, 906))


def test_reads_in_a_saved_model(tmp_path):
    memory = filled(storage_dtype="float16")
    module = tf.Module()
    module.memory = memory
    module.read = tf.function(
        lambda k, v, t: memory.read(k, v, t, 1)["features"],
        input_signature=[tf.TensorSpec([None], tf.int32)] * 3,
    )
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures=module.read)
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    got = loaded.read(tf.constant([0]), tf.constant([0]), tf.constant([900])).numpy()
    np.testing.assert_array_equal(got[0, 2], [[10, -10], [11, -11], [0, 0]])
    assert not got[0, 0].any()


MIRRORED_SCRIPT = r"""
import json, sys
import action_tx
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, "tests/heads")
from test_aia_memory import toy_train
from action_tx import train_lib
strategy = train_lib.make_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
# learning rate 0: the weights after the step are those that computed the written features
model = toy_train(sys.argv[1], 1, learning_rate=0.0, strategy=strategy)["model"]
mem = model.head.memory
print(json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "dense_copies": len(getattr(model.head.dense.kernel.value, "values", [None])),
    "memory_distributed": [isinstance(v.value, tf.distribute.DistributedValues)
                           for v in mem.variables],
    "memory_devices": sorted({v.value.device for v in mem.variables}),
    "variables": len(model.variables),
    "video": mem.video.numpy().tolist(),
    "features": mem.features.numpy()[:2, 0].tolist(),
    "expected": model.head.dense(tf.constant([[0, 1], [1, 2]], tf.float32) / 8).numpy().tolist(),
}))
"""


def test_mirrored_one_table_with_both_replicas_writes(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["replicas"] == 2 and got["dense_copies"] == 2  # the strategy mirrors weights
    assert got["memory_distributed"] == [False] * 6  # ... but not the memory
    assert got["memory_devices"] == ["/job:localhost/replica:0/task:0/device:CPU:0"]
    assert got["variables"] == 1 + 6
    # Replica 0 wrote keyframe 0, replica 1 keyframe 1, in one step, into the one table.
    assert got["video"] == [0, 0, -1, -1, -1, -1, -1, -1]
    np.testing.assert_allclose(got["features"], got["expected"], rtol=1e-6)
    assert np.abs(np.array(got["features"])).sum() > 0
