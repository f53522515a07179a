"""Layout 2 of the TFRecords: one record per chunk of K consecutive keyframes of one video,
each distinct frame stored once.

Layout 1 (`action_tx.data.tfrecords`) stores each keyframe's W-frame window: with keyframes
30 frames apart and W = 64, every frame is stored 64 / 30 = 2.13 times. A chunk stores the
union of its K windows once ((K - 1) min(W, 30) + W frames) and each window as indices into
them (docs/notes/2026-12-06-data-cost.md). Written by `encode_chunk` (the converter's
`--keyframes_per_record=K`), read back by `record_keyframes`: a `tf.data.Dataset` of exactly
the dicts `tfrecords.parse_example` gives, one per keyframe, for records of either layout.

A chunk is a `tf.train.SequenceExample`:
  context: clip/layout = 2; clip/video_id, clip/video_index, clip/fps, clip/height,
    clip/width, clip/num_classes (as layout 1); per keyframe, lists of length K:
    clip/timestamp, clip/keyframe_index, clip/keyframe_frame (position of the keyframe in
    its window); window/frame [K W]: row k is keyframe k's window as indices into the
    chunk's frames (an end-of-video repeat is a repeated index); the annotations of the K
    keyframes one after the other, with per-keyframe counts box/count [K] (rows of
    box/yxyx and box/person_id), label/count [K] (pairs of box/label_box, the box's row
    within its keyframe, and box/label_class), proposal/count [K], object/count [K].
  feature list image/encoded: the chunk's distinct frames, oldest first.
A record without clip/layout is layout 1, read as a chunk of one keyframe.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from action_tx.data import tfrecords as r

LAYOUT = "clip/layout"
WINDOW_FRAME = "window/frame"
BOX_COUNT = "box/count"
LABEL_COUNT = "label/count"
PROPOSAL_COUNT = "proposal/count"
OBJECT_COUNT = "object/count"

# Annotation lists -> (the count that splits them per keyframe, values per row).
_GROUPS = {
    r.BOX_YXYX: (BOX_COUNT, 4),
    r.BOX_PERSON_ID: (BOX_COUNT, 1),
    r.LABEL_BOX: (LABEL_COUNT, 1),
    r.LABEL_CLASS: (LABEL_COUNT, 1),
    r.PROPOSAL_YXYX: (PROPOSAL_COUNT, 4),
    r.PROPOSAL_SCORE: (PROPOSAL_COUNT, 1),
    r.OBJECT_YXYX: (OBJECT_COUNT, 4),
    r.OBJECT_CLASS: (OBJECT_COUNT, 1),
    r.OBJECT_SCORE: (OBJECT_COUNT, 1),
}
# The list whose length per keyframe each count is.
_COUNTED = {
    BOX_COUNT: r.BOX_PERSON_ID,
    LABEL_COUNT: r.LABEL_CLASS,
    PROPOSAL_COUNT: r.PROPOSAL_SCORE,
    OBJECT_COUNT: r.OBJECT_SCORE,
}
_ANNOTATIONS = (
    "boxes",
    "labels",
    "person_ids",
    "proposals",
    "proposal_scores",
    "objects",
    "object_classes",
    "object_scores",
)


def encode_chunk(
    *,
    video_id: str,
    video_index: int,
    fps: float,
    height: int,
    width: int,
    num_classes: int,
    frames: Sequence[bytes],
    keyframes: Sequence[dict],
) -> bytes:
    """Serializes K keyframes of one video as one layout-2 record (deterministically).

    Args:
      video_id, video_index, fps, height, width, num_classes: as `tfrecords.encode_example`.
      frames: the chunk's F distinct JPEG frames, oldest first.
      keyframes: K >= 1 dicts, in keyframe order: timestamp, keyframe_index, window (W ints
        into `frames`, oldest first; the same W for all), keyframe_frame (position in the
        window), and the annotations as `encode_example` takes them (boxes, labels,
        person_ids, proposals, proposal_scores, objects, object_classes, object_scores).
    Returns:
      The serialized `tf.train.SequenceExample`.
    """
    if not keyframes:
        raise ValueError("a chunk holds at least one keyframe")
    if len({len(k["window"]) for k in keyframes}) != 1:
        raise ValueError("every keyframe's window must have the same W >= 1 frames")
    windows = np.asarray([k["window"] for k in keyframes], np.int64)
    if windows.size == 0:
        raise ValueError("every keyframe's window must have the same W >= 1 frames")
    if windows.min() < 0 or windows.max() >= len(frames):
        raise ValueError(f"a window index is outside the chunk's {len(frames)} frames")
    for k in keyframes:
        if not 0 <= k["keyframe_frame"] < windows.shape[1]:
            raise ValueError(
                f"keyframe_frame {k['keyframe_frame']} outside the window of {windows.shape[1]}"
            )
    arrays = [
        r.annotation_arrays(num_classes, **{a: k.get(a) for a in _ANNOTATIONS}) for k in keyframes
    ]
    ints = lambda key: r._int64([k[key] for k in keyframes])  # noqa: E731
    context = {
        LAYOUT: r._int64([2]),
        r.VIDEO_ID: r._bytes([video_id.encode("utf-8")]),
        r.VIDEO_INDEX: r._int64([video_index]),
        r.TIMESTAMP: ints("timestamp"),
        r.KEYFRAME_INDEX: ints("keyframe_index"),
        r.KEYFRAME_FRAME: ints("keyframe_frame"),
        r.FPS: r._float([fps]),
        r.HEIGHT: r._int64([height]),
        r.WIDTH: r._int64([width]),
        r.NUM_CLASSES: r._int64([num_classes]),
        WINDOW_FRAME: r._int64(windows.reshape(-1)),
        **{count: r._int64([len(a[key]) for a in arrays]) for count, key in _COUNTED.items()},
        **r.annotation_features(arrays),
    }
    example = tf.train.SequenceExample(
        context=tf.train.Features(feature=context),
        feature_lists=tf.train.FeatureLists(
            feature_list={r.FRAMES: tf.train.FeatureList(feature=[r._bytes([f]) for f in frames])}
        ),
    )
    return example.SerializeToString(deterministic=True)


def parse_chunk(serialized: tf.Tensor, num_classes: int | None = None) -> dict:
    """Parses one record of either layout with TF ops only (layout 1: a chunk of one keyframe).

    Args:
      serialized: string scalar. num_classes: C, checked against the stored value when given.
    Returns:
      dict: video_id string []; video_index, height, width, num_classes int32 []; fps
      float32 []; frames string [F]; windows int32 [K, W]; timestamp, keyframe_index,
      keyframe_frame int32 [K]; for every annotation list of `tfrecords` (e.g. "box/yxyx")
      its K keyframes' values one after the other, and "splits/" + its name, int32 [K + 1]:
      keyframe k's rows are [splits[k], splits[k + 1]) (rows of 4 values for the yxyx lists).
    """
    scalars = {
        k: tf.io.FixedLenFeature([], d)
        for k, d in r._SCALARS.items()
        if k not in (r.TIMESTAMP, r.KEYFRAME_INDEX, r.KEYFRAME_FRAME)
    }
    spec = dict(scalars, **{LAYOUT: tf.io.FixedLenFeature([], tf.int64, default_value=1)})
    spec.update({k: tf.io.VarLenFeature(d) for k, d in r._LISTS.items()})
    for key in (r.TIMESTAMP, r.KEYFRAME_INDEX, r.KEYFRAME_FRAME, WINDOW_FRAME, *_COUNTED):
        spec[key] = tf.io.VarLenFeature(tf.int64)
    context, lists = tf.io.parse_single_sequence_example(
        serialized,
        context_features=spec,
        sequence_features={r.FRAMES: tf.io.FixedLenSequenceFeature([], tf.string)},
    )
    dense = {k: tf.sparse.to_dense(v) for k, v in context.items() if isinstance(v, tf.SparseTensor)}
    if num_classes is not None:
        check = tf.debugging.assert_equal(
            context[r.NUM_CLASSES],
            tf.constant(num_classes, tf.int64),
            message=f"records were written with a different number of classes than {num_classes}",
        )
        with tf.control_dependencies([check]):
            dense = {k: tf.identity(v) for k, v in dense.items()}
    frames = lists[r.FRAMES]
    num_keys = tf.size(dense[r.TIMESTAMP])
    # Layout 1: one keyframe whose window is every stored frame and who owns every row.
    window = dense[WINDOW_FRAME]
    window = tf.cond(
        tf.size(window) > 0, lambda: window, lambda: tf.range(tf.size(frames, tf.int64))
    )
    i32 = lambda t: tf.cast(t, tf.int32)  # noqa: E731
    out = {
        "video_id": context[r.VIDEO_ID],
        "video_index": i32(context[r.VIDEO_INDEX]),
        "height": i32(context[r.HEIGHT]),
        "width": i32(context[r.WIDTH]),
        "num_classes": i32(context[r.NUM_CLASSES]),
        "fps": context[r.FPS],
        "frames": frames,
        "windows": tf.reshape(i32(window), [num_keys, -1]),
        "timestamp": i32(dense[r.TIMESTAMP]),
        "keyframe_index": i32(dense[r.KEYFRAME_INDEX]),
        "keyframe_frame": i32(dense[r.KEYFRAME_FRAME]),
    }
    for key, (count_key, width) in _GROUPS.items():
        values = dense[key]
        rows = tf.size(values) // width
        counts = tf.cond(
            context[LAYOUT] > 1,
            lambda c=count_key: dense[c],
            lambda n=rows: tf.reshape(tf.cast(n, tf.int64), [1]),
        )
        out[key] = values
        out["splits/" + key] = i32(tf.concat([[0], tf.cumsum(counts)], 0))
    return out


def chunk_keyframe(chunk: dict, k: tf.Tensor, num_classes: int | None = None) -> dict:
    """Keyframe k of a `parse_chunk` dict -> exactly the dict `tfrecords.parse_example` gives
    for it (frames string [W]: the keyframe's window gathered from the chunk's frames)."""

    def rows(key):
        splits = chunk["splits/" + key]
        return chunk[key][splits[k] * _GROUPS[key][1] : splits[k + 1] * _GROUPS[key][1]]

    boxes = tf.reshape(rows(r.BOX_YXYX), [-1, 4])
    c = chunk["num_classes"] if num_classes is None else num_classes
    pairs = tf.stack([rows(r.LABEL_BOX), rows(r.LABEL_CLASS)], axis=1)
    labels = tf.scatter_nd(
        pairs,
        tf.ones([tf.shape(pairs)[0]], tf.float32),
        tf.cast(tf.stack([tf.shape(boxes)[0], c]), tf.int64),
    )
    if num_classes is not None:
        labels.set_shape([None, num_classes])
    i32 = lambda t: tf.cast(t, tf.int32)  # noqa: E731
    return {
        "video_id": chunk["video_id"],
        "video_index": chunk["video_index"],
        "timestamp": chunk["timestamp"][k],
        "keyframe_index": chunk["keyframe_index"][k],
        "keyframe_frame": chunk["keyframe_frame"][k],
        "fps": chunk["fps"],
        "height": chunk["height"],
        "width": chunk["width"],
        "frames": tf.gather(chunk["frames"], chunk["windows"][k]),
        "boxes": boxes,
        "labels": tf.minimum(labels, 1.0),
        "person_ids": i32(rows(r.BOX_PERSON_ID)),
        "proposals": tf.reshape(rows(r.PROPOSAL_YXYX), [-1, 4]),
        "proposal_scores": rows(r.PROPOSAL_SCORE),
        "objects": tf.reshape(rows(r.OBJECT_YXYX), [-1, 4]),
        "object_classes": i32(rows(r.OBJECT_CLASS)),
        "object_scores": rows(r.OBJECT_SCORE),
    }


def chunk_keyframes(chunk: dict, num_classes: int | None = None) -> tf.data.Dataset:
    """A `parse_chunk` dict -> a dataset of its K keyframes' `parse_example` dicts, in order."""
    return tf.data.Dataset.range(tf.size(chunk["timestamp"], tf.int64)).map(
        lambda k: chunk_keyframe(chunk, k, num_classes)
    )


def record_keyframes(serialized: tf.Tensor, num_classes: int | None = None) -> tf.data.Dataset:
    """One record of either layout -> a dataset of its keyframes' `parse_example` dicts
    (usable in `tf.data.Dataset.flat_map`)."""
    return chunk_keyframes(parse_chunk(serialized, num_classes), num_classes)


def shard_keyframes(shard: tf.Tensor, num_classes: int | None = None) -> tf.data.Dataset:
    """The keyframes of one shard file of either layout, in order, as `parse_example` dicts
    plus shard (string [], the file, for error messages)."""
    return tf.data.TFRecordDataset(shard).flat_map(
        lambda s: record_keyframes(s, num_classes).map(lambda ex: dict(ex, shard=shard))
    )


def read_layout(files: Sequence[str]) -> tuple[int, int]:
    """(layout, keyframes in the record) of the first record of the first non-empty file in
    `files`, read eagerly; (1, 1) when every file is empty."""
    spec = {
        LAYOUT: tf.io.FixedLenFeature([], tf.int64, default_value=1),
        r.TIMESTAMP: tf.io.VarLenFeature(tf.int64),
    }
    for path in files:
        for record in tf.data.TFRecordDataset(path).take(1):
            context, _ = tf.io.parse_single_sequence_example(record, context_features=spec)
            return int(context[LAYOUT]), int(tf.size(context[r.TIMESTAMP].values))
    return 1, 1
