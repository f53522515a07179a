"""AIA's long-term memory (the Asynchronous Memory Update's feature bank): an in-graph table of
per-person features of every keyframe of a split. AIA is its only user, so it lives beside
`aia.py`; `AIAHead.memory` gives the head's two tables as `MemoryTables(train, eval)`.

    memory = FeatureMemory(num_keyframes=K, max_persons=P, dim=D, storage_dtype="float16")
    got = memory.read(keyframe_index, video_index, timestamp, window=30)   # in the forward pass
    memory.write(keyframe_index, video_index, timestamp, features, mask,
                 loss_tag=loss, step=step)                                   # in the train step

The table is indexed by the global keyframe index (position of the keyframe in the split's
keyframes sorted by (video_id, timestamp), docs/DESIGN.md). Each entry also stores the video index
and timestamp it was written for. A read of window L returns one slot per second t-L..t+L: the
keyframes of the same video found among the rows keyframe_index-L..keyframe_index+L, each put in
the slot of its own time, so a neighbouring video's keyframes are masked and a gap in the video
(an excluded timestamp) leaves an empty slot instead of shifting the time offsets.

Variables (non-trainable, checkpointed with the model since they are `model.variables`; AIA's
eval table is not: the head lists it in `transient_variables`, the first evaluation pass
refills it):
  features   [K, P, D] storage_dtype   persons of each keyframe, zero padded.
  mask       [K, P]    bool            true for real persons.
  video      [K]       int32           video index of the entry, -1 = never written.
  timestamp  [K]       int32           keyframe time (s) of the entry.
  loss_tag   [K]       float32         loss of the step that wrote it (AIA's AMU), 0 by default.
  write_step [K]       int64           train step that wrote it, -1 = never written.

Distribution: the table is ONE plain variable per worker, on the worker's host CPU, not a
mirrored copy per replica (a mirrored table would cost replicas x its size in memory, and a
replica's writes would never reach the others' copies). Every replica reads it; a write first
all-gathers the rows of every replica in sync (`gather_replicas`), so under
MultiWorkerMirroredStrategy each worker's table receives the writes of all replicas of all
workers and the tables stay identical (and equal to a one-process run's with the same global
batch); local replicas scatter the same rows into their shared table, which is idempotent.
Reads and writes are gathers / scatters of the touched rows: their cost depends on the batch and
the window, not on K.
"""

from typing import Dict, NamedTuple

import keras
import tensorflow as tf
from tensorflow.python.distribute import numpy_dataset  # SingleDevice: see _host_placement

STORAGE_DTYPES = ("float32", "float16")


class MemoryTables(NamedTuple):
    """A head's two memory tables: `train` is read and written in training steps, `eval` in
    inference (train and eval splits share keyframe indices, so they never share a table)."""

    train: "FeatureMemory"
    eval: "FeatureMemory"


def _host_placement():
    """Context placing the variables created inside it once, on the host CPU.

    Under a strategy's scope, the strategy's variable creator honours a `colocate_with` of type
    `numpy_dataset.SingleDevice` by creating one plain variable on that device (this is how
    TF places its own host-side input variables); the public `colocate_vars_with` only accepts
    an existing distributed variable, so the creator kwarg is set directly.
    """
    if not tf.distribute.has_strategy():
        return tf.device("/cpu:0")
    strategy = tf.distribute.get_strategy()
    host = (
        tf.DeviceSpec.from_string(strategy.extended.worker_devices[0])
        .replace(device_type="CPU", device_index=0)
        .to_string()
    )

    def creator(next_creator, **kwargs):
        kwargs["colocate_with"] = numpy_dataset.SingleDevice(host)
        return next_creator(**kwargs)

    return tf.variable_creator_scope(creator)


def _multi_replica_context():
    """The replica context when running in one of several replicas in sync, else None
    (no strategy, one replica, or cross-replica code such as a model's first build call)."""
    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return None
    ctx = tf.distribute.get_replica_context()
    return ctx if ctx is not None and ctx.num_replicas_in_sync > 1 else None


def gather_replicas(*tensors):
    """Each tensor [B, ...] -> [R * B, ...], the rows of all R replicas in replica order
    (`ReplicaContext.all_gather`) when called from one of several replicas in sync; unchanged
    otherwise. bool tensors travel as int32 (collectives carry no bool)."""
    ctx = _multi_replica_context()
    if ctx is None:
        return tensors
    gathered = ctx.all_gather(
        [tf.cast(t, tf.int32) if t.dtype == tf.bool else t for t in tensors], axis=0
    )
    return tuple(
        tf.cast(g, tf.bool) if t.dtype == tf.bool else g for g, t in zip(gathered, tensors)
    )


def sum_replicas(*tensors):
    """All-reduce SUM over the replicas in sync (unchanged outside a multi-replica step)."""
    ctx = _multi_replica_context()
    return (
        tensors if ctx is None else tuple(ctx.all_reduce(tf.distribute.ReduceOp.SUM, list(tensors)))
    )


class FeatureMemory(keras.layers.Layer):
    """Table of per-person features for every keyframe of a split (see the module docstring).

    Args:
      num_keyframes: K, keyframes of the split (keyframe_index in [0, K)).
      max_persons: P, persons stored per keyframe; a write with more real persons keeps the
        first P of them (like a detector's max_detections).
      dim: D, feature size.
      storage_dtype: "float32" or "float16" (half the memory; reads return float32).
    """

    def __init__(
        self,
        num_keyframes: int,
        max_persons: int,
        dim: int,
        storage_dtype: str = "float32",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if storage_dtype not in STORAGE_DTYPES:
            raise ValueError(
                f"FeatureMemory: storage_dtype {storage_dtype!r} is not one of "
                f"{', '.join(STORAGE_DTYPES)}"
            )
        for name, value in (
            ("num_keyframes", num_keyframes),
            ("max_persons", max_persons),
            ("dim", dim),
        ):
            if int(value) < 1:
                raise ValueError(f"FeatureMemory: {name} must be >= 1, got {value}")
        self.num_keyframes = int(num_keyframes)
        self.max_persons = int(max_persons)
        self.dim = int(dim)
        self.storage_dtype = storage_dtype
        k, p = self.num_keyframes, self.max_persons
        with _host_placement():
            self.features = self._table("features", (k, p, self.dim), storage_dtype, "zeros")
            self.mask = self._table("mask", (k, p), "bool", "zeros")
            self.video = self._table("video", (k,), "int32", keras.initializers.Constant(-1))
            self.timestamp = self._table("timestamp", (k,), "int32", "zeros")
            self.loss_tag = self._table("loss_tag", (k,), "float32", "zeros")
            self.write_step = self._table(
                "write_step", (k,), "int64", keras.initializers.Constant(-1)
            )
        self.built = True

    def _table(self, name, shape, dtype, initializer):
        return self.add_weight(
            name=name,
            shape=shape,
            dtype=dtype,
            initializer=initializer,
            trainable=False,
            autocast=False,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            num_keyframes=self.num_keyframes,
            max_persons=self.max_persons,
            dim=self.dim,
            storage_dtype=self.storage_dtype,
        )
        return config

    def _checked(self, keyframe_index, what):
        """int32 keyframe_index, asserted < num_keyframes (a table too small for the split)."""
        keyframe_index = tf.cast(keyframe_index, tf.int32)
        with tf.control_dependencies(
            [
                tf.debugging.assert_less(
                    keyframe_index,
                    self.num_keyframes,
                    message=(
                        f"FeatureMemory {self.name!r}.{what}: keyframe_index >= num_keyframes "
                        f"{self.num_keyframes}; the table must have a row for every keyframe of "
                        "the split"
                    ),
                )
            ]
        ):
            return tf.identity(keyframe_index)

    def call(self, keyframe_index, video_index, timestamp, window: int = 0):
        """Same as `read` (so that calling the layer reads)."""
        return self.read(keyframe_index, video_index, timestamp, window)

    def read(self, keyframe_index, video_index, timestamp, window: int) -> Dict[str, tf.Tensor]:
        """Entries of the same video at times timestamp + k seconds, k in [-window, window].

        Slot k + window holds the keyframe at time t + k, so a slot's offset is a time offset
        (what AIA's temporal position embeddings need). Keyframes of a video are >= 1 s apart
        (AVA: one per second) and sorted by time in the table, so they lie among the rows
        keyframe_index - window .. keyframe_index + window; a missing keyframe (an excluded
        timestamp, a gap in the video) leaves its slot empty instead of shifting its
        neighbours into it.

        keyframe_index, video_index, timestamp: int32 [B]; a query with keyframe_index < 0
          (padding) gets nothing valid. window: Python int >= 0.
        Returns (W = 2 * window + 1; the centre k = 0 is the keyframe's own entry, which a head
        that wants only neighbours masks with `offset != 0`):
          features   float32 [B, W, P, D]  zero where `mask` is false.
          mask       bool    [B, W, P]     real person of a valid entry.
          valid      bool    [B, W]        an entry was written for the same video at t + k.
          loss_tag   float32 [B, W]        0 where not valid.
          write_step int64   [B, W]        -1 where not valid.
          offset     int32   [W]           k, seconds.
        """
        window = int(window)
        if window < 0:
            raise ValueError(f"FeatureMemory.read: window must be >= 0, got {window}")
        keyframe_index = self._checked(keyframe_index, "read")
        video_index = tf.cast(video_index, tf.int32)
        timestamp = tf.cast(timestamp, tf.int32)
        offset = tf.range(-window, window + 1, dtype=tf.int32)
        rows = keyframe_index[:, None] + offset[None, :]  # [B, W]
        inside = (rows >= 0) & (rows < self.num_keyframes) & (keyframe_index[:, None] >= 0)
        rows = tf.clip_by_value(rows, 0, self.num_keyframes - 1)
        video = tf.gather(self.video.value, rows)
        found = inside & (video >= 0) & (video == video_index[:, None])
        dt = tf.gather(self.timestamp.value, rows) - timestamp[:, None]
        # Row j goes to slot dt_j + window: match[b, s, j] = row j of b is at time offset s.
        match = found[:, None, :] & tf.equal(dt[:, None, :], offset[None, :, None])
        valid = tf.reduce_any(match, axis=-1)  # [B, W]
        index = tf.gather(
            rows, tf.argmax(tf.cast(match, tf.int32), axis=-1, output_type=tf.int32), batch_dims=1
        )
        mask = tf.gather(self.mask.value, index) & valid[:, :, None]
        features = tf.cast(tf.gather(self.features.value, index), tf.float32)
        features = features * tf.cast(mask, tf.float32)[..., None]
        return {
            "features": features,
            "mask": mask,
            "valid": valid,
            "loss_tag": tf.where(valid, tf.gather(self.loss_tag.value, index), 0.0),
            "write_step": tf.where(
                valid, tf.gather(self.write_step.value, index), tf.constant(-1, tf.int64)
            ),
            "offset": offset,
        }

    def write(
        self, keyframe_index, video_index, timestamp, features, mask, loss_tag=None, step=None
    ) -> None:
        """Stores the persons of B keyframes (gradients stopped); other entries are untouched.

        keyframe_index, video_index, timestamp: int32 [B]; rows with keyframe_index < 0 are
          skipped (pass -1 for padded keyframes). The B indices must be distinct, also across
          the replicas of a distributed step (each writes the rows of all of them).
        features: float [B, N, D]; mask: bool [B, N] real persons. N may differ from P: real
          persons are moved to the front (in order), then padded / cut to P.
        loss_tag: float [B] or scalar, default 0. step: int scalar, default 0.
        """
        features = tf.stop_gradient(tf.convert_to_tensor(features))
        if features.shape.rank != 3 or (
            features.shape[-1] is not None and features.shape[-1] != self.dim
        ):
            raise ValueError(
                f"FeatureMemory.write: features must be [B, N, {self.dim}], got {features.shape}"
            )
        keyframe_index = self._checked(keyframe_index, "write")
        batch = tf.shape(keyframe_index)[0]
        mask = tf.cast(mask, tf.bool)
        # Real persons first, keeping their order (stable sort on "is padding").
        order = tf.argsort(tf.cast(~mask, tf.int32), axis=1, stable=True)
        features = tf.gather(features, order, batch_dims=1)
        mask = tf.gather(mask, order, batch_dims=1)
        n = tf.shape(mask)[1]
        pad = tf.maximum(self.max_persons - n, 0)
        features = tf.pad(features, [[0, 0], [0, pad], [0, 0]])[:, : self.max_persons]
        mask = tf.pad(mask, [[0, 0], [0, pad]])[:, : self.max_persons]
        features = features * tf.cast(mask, features.dtype)[..., None]
        loss_tag = (
            tf.zeros([batch])
            if loss_tag is None
            else tf.broadcast_to(tf.cast(loss_tag, tf.float32), [batch])
        )
        step = tf.zeros([], tf.int64) if step is None else tf.cast(step, tf.int64)
        # Every replica's rows, so that every worker's table holds the whole global batch.
        keyframe_index, video_index, timestamp, features, mask, loss_tag = gather_replicas(
            keyframe_index,
            tf.cast(video_index, tf.int32),
            tf.cast(timestamp, tf.int32),
            features,
            mask,
            loss_tag,
        )

        keep = tf.where(keyframe_index >= 0)[:, 0]
        rows = tf.gather(keyframe_index, keep)[:, None]
        take = lambda x: tf.gather(x, keep)  # noqa: E731
        self.features.value.scatter_nd_update(rows, tf.cast(take(features), self.features.dtype))
        self.mask.value.scatter_nd_update(rows, take(mask))
        self.video.value.scatter_nd_update(rows, take(tf.cast(video_index, tf.int32)))
        self.timestamp.value.scatter_nd_update(rows, take(tf.cast(timestamp, tf.int32)))
        self.loss_tag.value.scatter_nd_update(rows, take(loss_tag))
        self.write_step.value.scatter_nd_update(rows, tf.fill(tf.shape(keep), step))
