"""Streams of keyframes out of TFRecord shards of either layout, for `action_tx.data.pipeline`
and feature extraction.

Layout 1 (`tfrecords`: a record per keyframe) streams (shard, serialized) pairs and parses
each record after any shuffle or selection, as it always has; layout 2 (`chunks`: a record per
K keyframes) expands each record into its keyframes' `parse_example` dicts (plus shard) first.
`parse_element` turns an element of either stream into that dict. `select_ranges` and
`keyframe_windows` (runs of consecutive keyframes) work on either stream.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from action_tx.data import chunks
from action_tx.data.tfrecords import parse_example

# The keyframe dict entries of variable length: `pack` serializes them for batching.
_RAGGED = {
    "frames": (tf.string, [None]),
    "boxes": (tf.float32, [None, 4]),
    "labels": (tf.float32, [None, None]),
    "person_ids": (tf.int32, [None]),
    "proposals": (tf.float32, [None, 4]),
    "proposal_scores": (tf.float32, [None]),
    "objects": (tf.float32, [None, 4]),
    "object_classes": (tf.int32, [None]),
    "object_scores": (tf.float32, [None]),
}


def shard_records(shard: tf.Tensor) -> tf.data.Dataset:
    """The records of one shard file as (shard, serialized) pairs: the shard's name travels
    with each record, so an error can name it."""
    return tf.data.TFRecordDataset(shard).map(lambda r: (shard, r))


def shard_reader(layout: int, num_classes: int | None = None):
    """shard -> its stream: (shard, serialized) records for layout 1, keyframe dicts (with
    shard) for layout 2 (`chunks.read_layout` tells which)."""
    if layout == 1:
        return shard_records
    return lambda shard: chunks.shard_keyframes(shard, num_classes)


def parse_element(element, num_classes: int | None = None) -> dict:
    """An element of a `shard_reader` stream -> the keyframe's `parse_example` dict + shard."""
    if isinstance(element, dict):
        return element
    shard, serialized = element
    return dict(parse_example(serialized, num_classes=num_classes), shard=shard)


def pack(ex: dict) -> dict:
    """A keyframe dict -> the same with every variable-length entry serialized
    (`tf.io.serialize_tensor`): every entry a scalar, so that runs of keyframes batch."""
    return {k: tf.io.serialize_tensor(v) if k in _RAGGED else v for k, v in ex.items()}


def unpack(packed: dict, num_classes: int | None = None) -> dict:
    """The inverse of `pack` (labels get a static C when num_classes is given)."""
    out = dict(packed)
    for key, (dtype, shape) in _RAGGED.items():
        out[key] = tf.io.parse_tensor(packed[key], dtype)
        out[key].set_shape(shape if key != "labels" else [None, num_classes])
    return out


def select_ranges(ds: tf.data.Dataset, ranges: Sequence[tuple[int, int]]) -> tf.data.Dataset:
    """The elements of `ds` at positions [start, start + count) of the ascending `ranges`, in
    one pass (it stops after the last range)."""
    starts = tf.constant([int(s) for s, _ in ranges] or [0], tf.int64)
    ends = tf.constant([int(s) + int(c) for s, c in ranges] or [0], tf.int64)

    def inside(i, *element):
        j = tf.searchsorted(starts, [i], side="right")[0] - 1
        return (j >= 0) & (i < tf.gather(ends, tf.maximum(j, 0)))

    return (
        ds.take(tf.reduce_max(ends))
        .enumerate()
        .filter(inside)
        .map(lambda i, *element: element if len(element) > 1 else element[0])
    )


def keyframe_windows(keyframes: tf.data.Dataset, batch_size: int, context: int) -> tf.data.Dataset:
    """Keyframes in (video_id, timestamp) order, each a tuple or dict of scalars ((shard,
    serialized) records, or `pack`ed keyframe dicts) -> windows of L = batch_size + 2 *
    context consecutive ones: (element with each entry batched to [L], valid bool [L],
    target bool [L]).

    The targets (positions context .. context + batch_size - 1) of successive windows tile the
    stream, so every keyframe is a target once; the `context` keyframes on each side feed only
    the temporal part of a head (STAGE's temporal edges, HGRNN's scene BiGRU: target false).
    Positions past either end of the stream are padding (valid false; their entries repeat a
    real keyframe of the window so that they parse). A window may span two videos: heads
    find neighbours by video_index and timestamp, never by batch position alone.
    """
    size = batch_size + 2 * context
    blank = tf.nest.map_structure(lambda s: tf.zeros([], s.dtype), keyframes.element_spec)

    def pad(n):
        return tf.data.Dataset.from_tensors((blank, False)).repeat(n)

    stream = (
        pad(context)
        .concatenate(keyframes.map(lambda *e: (e[0] if len(e) == 1 else e, True)))
        .concatenate(pad(batch_size + context))
    )
    windows = stream.window(size, shift=batch_size, drop_remainder=True).flat_map(
        lambda e, v: tf.data.Dataset.zip(
            (tf.nest.map_structure(lambda d: d.batch(size), e), v.batch(size))
        )
    )
    middle = tf.constant([False] * context + [True] * batch_size + [False] * context)

    def fill(e, v):
        first = tf.argmax(tf.cast(v, tf.int32))
        return tf.nest.map_structure(lambda x: tf.where(v, x, x[first]), e), v, v & middle

    return windows.filter(lambda e, v: tf.reduce_any(v & middle)).map(fill)
