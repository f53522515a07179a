"""The TFRecord layout: one `tf.train.SequenceExample` per keyframe clip.

Written by `tools/create_ava_tfrecords.py` (library: `action_tx.data.convert`), read by
`action_tx.data.pipeline`. Each record stores a window of JPEG frames centred on the keyframe
(edge frames repeated at the ends of the video), the position of the keyframe inside that window,
and everything known about the keyframe:

Context features (keys below):
  video_id (bytes), video_index, timestamp (s), keyframe_index, keyframe_frame (position of the
  keyframe in the window), fps, height, width (of the stored JPEGs), num_classes,
  box/yxyx [4N] (normalized y1,x1,y2,x2), box/person_id [N],
  box/label_box [L], box/label_class [L]: the multi-hot labels as (box row, contiguous class)
  pairs, proposal/yxyx [4P] + proposal/score [P] (external person detections),
  object/yxyx [4O] + object/class [O] (AVA-format object class ids) + object/score [O].
Feature list:
  image/encoded: one JPEG per frame of the window, oldest first.

Every reader expands its shard globs with `match_files`, which refuses what is not a shard.

This is layout 1. Layout 2 (`action_tx.data.chunks`, the converter's --keyframes_per_record
> 1) stores K consecutive keyframes of a video per record with each frame once; its records
carry clip/layout = 2 and are read with `chunks.record_keyframes` (either layout), not with
`parse_example` (layout 1 only).
"""

from __future__ import annotations

import os
import struct
from typing import Sequence

import numpy as np
import tensorflow as tf

VIDEO_ID = "clip/video_id"
VIDEO_INDEX = "clip/video_index"
TIMESTAMP = "clip/timestamp"
KEYFRAME_INDEX = "clip/keyframe_index"
KEYFRAME_FRAME = "clip/keyframe_frame"
FPS = "clip/fps"
HEIGHT = "clip/height"
WIDTH = "clip/width"
NUM_CLASSES = "clip/num_classes"
BOX_YXYX = "box/yxyx"
BOX_PERSON_ID = "box/person_id"
LABEL_BOX = "box/label_box"
LABEL_CLASS = "box/label_class"
PROPOSAL_YXYX = "proposal/yxyx"
PROPOSAL_SCORE = "proposal/score"
OBJECT_YXYX = "object/yxyx"
OBJECT_CLASS = "object/class"
OBJECT_SCORE = "object/score"
FRAMES = "image/encoded"


# The converter writes a shard under this prefix and renames it when the shard is complete:
# `NAME.tfrecord-*` never matches an unfinished (or killed) conversion's files.
TEMP_PREFIX = ".tmp-"


class NotTFRecordError(ValueError):
    """A file matched by a shard glob that is not a TFRecord shard; the message names it."""


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def _masked_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C[(crc ^ b) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _not_a_shard(path: str):
    """-> why `path` is not a TFRecord shard, or None. Reads the 12-byte header of the first
    record (length + its masked CRC-32C): a JSON, CSV or JPEG fails it; an empty file is a
    shard without records."""
    if tf.io.gfile.isdir(path):
        return "is a folder"
    if os.path.basename(path).startswith(TEMP_PREFIX):
        return (
            "is an unfinished shard of a conversion that did not end (killed?); delete it "
            "or run the conversion again"
        )
    with tf.io.gfile.GFile(path, "rb") as f:
        head = f.read(12)
    if not head:
        return None
    if len(head) < 12 or struct.unpack("<I", head[8:])[0] != _masked_crc32c(head[:8]):
        return "is not a TFRecord file (corrupted record header at byte 0)"
    return None


def match_files(patterns: str | Sequence[str]) -> list[str]:
    """The sorted files that one glob or a list of globs match: the one way every reader of
    shards (pipeline, evaluation, feature extraction, benchmarks) expands them.

    Raises:
      FileNotFoundError when a glob matches nothing; NotTFRecordError, naming the file, when
      a match is not a TFRecord shard (e.g. `DIR/val*` also matching `val_manifest.json`):
      nothing a glob matches is skipped silently.
    """
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    files = set()
    for pattern in patterns:
        found = sorted(tf.io.gfile.glob(pattern))
        if not found:
            raise FileNotFoundError(f"no TFRecord files match {pattern}")
        for path in found:
            why = _not_a_shard(path)
            if why:
                raise NotTFRecordError(
                    f"{path} {why}; the glob {pattern!r} matches it: give a glob of the shards "
                    "alone (e.g. DIR/NAME.tfrecord-*)"
                )
        files.update(found)
    return sorted(files)


def _int64(values) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _float(values) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def _bytes(values) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _boxes(boxes, name: str) -> np.ndarray:
    arr = np.zeros((0, 4), np.float32) if boxes is None else np.asarray(boxes, np.float32)
    arr = arr.reshape(-1, 4) if arr.size == 0 else arr
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name}: expected shape [N, 4], got {arr.shape}")
    return arr


def annotation_arrays(
    num_classes: int,
    *,
    boxes=None,
    labels=None,
    person_ids=None,
    proposals=None,
    proposal_scores=None,
    objects=None,
    object_classes=None,
    object_scores=None,
) -> dict:
    """One keyframe's annotations (arguments as `encode_example`), checked -> numpy arrays
    keyed by feature name: box/yxyx [N, 4], box/person_id [N], box/label_box [L] (row of the
    box), box/label_class [L], proposal/yxyx [P, 4], proposal/score [P], object/yxyx [O, 4],
    object/class [O], object/score [O]. Raises ValueError on a shape that does not fit."""
    boxes = _boxes(boxes, "boxes")
    n = len(boxes)
    labels = np.zeros((n, num_classes), bool) if labels is None else np.asarray(labels) > 0
    if labels.shape != (n, num_classes):
        raise ValueError(f"labels: expected shape {(n, num_classes)}, got {labels.shape}")
    label_box, label_class = np.nonzero(labels)  # row-major: sorted by box, then class
    person_ids = np.full([n], -1) if person_ids is None else np.asarray(person_ids).reshape(-1)
    proposals = _boxes(proposals, "proposals")
    proposal_scores = np.asarray([] if proposal_scores is None else proposal_scores, np.float32)
    objects = _boxes(objects, "objects")
    object_classes = np.asarray([] if object_classes is None else object_classes, np.int64)
    object_scores = np.asarray([] if object_scores is None else object_scores, np.float32)
    for name, arr, want in (
        ("person_ids", person_ids, n),
        ("proposal_scores", proposal_scores, len(proposals)),
        ("object_classes", object_classes, len(objects)),
        ("object_scores", object_scores, len(objects)),
    ):
        if len(arr) != want:
            raise ValueError(f"{name}: expected {want} values, got {len(arr)}")
    return {
        BOX_YXYX: boxes,
        BOX_PERSON_ID: person_ids,
        LABEL_BOX: label_box,
        LABEL_CLASS: label_class,
        PROPOSAL_YXYX: proposals,
        PROPOSAL_SCORE: proposal_scores,
        OBJECT_YXYX: objects,
        OBJECT_CLASS: object_classes,
        OBJECT_SCORE: object_scores,
    }


def annotation_features(arrays: Sequence[dict]) -> dict:
    """`annotation_arrays` of one or more keyframes -> their context features, each list the
    keyframes' values one after the other (boxes flattened row-major)."""
    return {
        key: (_int64 if dtype == tf.int64 else _float)(
            [v for a in arrays for v in np.asarray(a[key]).reshape(-1)]
        )
        for key, dtype in _LISTS.items()
    }


def encode_example(
    *,
    video_id: str,
    video_index: int,
    timestamp: int,
    keyframe_index: int,
    frames: Sequence[bytes],
    keyframe_frame: int,
    fps: float,
    height: int,
    width: int,
    num_classes: int,
    boxes=None,
    labels=None,
    person_ids=None,
    proposals=None,
    proposal_scores=None,
    objects=None,
    object_classes=None,
    object_scores=None,
) -> bytes:
    """Serializes one keyframe clip (deterministically: same arguments, same bytes).

    Args:
      video_id: AVA video id. video_index, timestamp (s), keyframe_index: see docs/DESIGN.md.
      frames: W JPEG-encoded RGB frames, oldest first; `frames[keyframe_frame]` is the keyframe.
      fps: frame rate of the window. height, width: size of the JPEGs. num_classes: C.
      boxes: [N, 4] ground-truth person boxes, normalized [y1, x1, y2, x2].
      labels: [N, C] multi-hot (bool or 0/1) over contiguous class indices.
      person_ids: [N] AVA person ids (-1 when unknown).
      proposals: [P, 4] external person detections, yxyx; proposal_scores: [P].
      objects: [O, 4] object detections, yxyx; object_classes: [O] int; object_scores: [O].
    Returns:
      The serialized `tf.train.SequenceExample`.
    """
    a = annotation_arrays(
        num_classes,
        boxes=boxes,
        labels=labels,
        person_ids=person_ids,
        proposals=proposals,
        proposal_scores=proposal_scores,
        objects=objects,
        object_classes=object_classes,
        object_scores=object_scores,
    )
    if not 0 <= keyframe_frame < len(frames):
        raise ValueError(f"keyframe_frame {keyframe_frame} outside the window of {len(frames)}")
    context = {
        VIDEO_ID: _bytes([video_id.encode("utf-8")]),
        VIDEO_INDEX: _int64([video_index]),
        TIMESTAMP: _int64([timestamp]),
        KEYFRAME_INDEX: _int64([keyframe_index]),
        KEYFRAME_FRAME: _int64([keyframe_frame]),
        FPS: _float([fps]),
        HEIGHT: _int64([height]),
        WIDTH: _int64([width]),
        NUM_CLASSES: _int64([num_classes]),
        **annotation_features([a]),
    }
    example = tf.train.SequenceExample(
        context=tf.train.Features(feature=context),
        feature_lists=tf.train.FeatureLists(
            feature_list={FRAMES: tf.train.FeatureList(feature=[_bytes([f]) for f in frames])}
        ),
    )
    # deterministic=True sorts the map entries: byte-identical shards for identical inputs.
    return example.SerializeToString(deterministic=True)


_SCALARS = {
    VIDEO_ID: tf.string,
    VIDEO_INDEX: tf.int64,
    TIMESTAMP: tf.int64,
    KEYFRAME_INDEX: tf.int64,
    KEYFRAME_FRAME: tf.int64,
    FPS: tf.float32,
    HEIGHT: tf.int64,
    WIDTH: tf.int64,
    NUM_CLASSES: tf.int64,
}
_LISTS = {
    BOX_YXYX: tf.float32,
    BOX_PERSON_ID: tf.int64,
    LABEL_BOX: tf.int64,
    LABEL_CLASS: tf.int64,
    PROPOSAL_YXYX: tf.float32,
    PROPOSAL_SCORE: tf.float32,
    OBJECT_YXYX: tf.float32,
    OBJECT_CLASS: tf.int64,
    OBJECT_SCORE: tf.float32,
}


def parse_example(serialized: tf.Tensor, num_classes: int | None = None) -> dict:
    """Parses one serialized record with TF ops only (usable inside `tf.data.Dataset.map`).

    Args:
      serialized: string scalar, a record written by `encode_example`.
      num_classes: C, giving `labels` a static last dimension; defaults to the stored value.
    Returns:
      dict: video_id string []; video_index, timestamp, keyframe_index, keyframe_frame,
      height, width int32 []; fps float32 []; frames string [W] (JPEG bytes);
      boxes float32 [N, 4] yxyx; labels float32 [N, C] multi-hot; person_ids int32 [N];
      proposals float32 [P, 4]; proposal_scores float32 [P]; objects float32 [O, 4];
      object_classes int32 [O]; object_scores float32 [O].
    """
    context_spec = {k: tf.io.FixedLenFeature([], d) for k, d in _SCALARS.items()}
    context_spec.update({k: tf.io.VarLenFeature(d) for k, d in _LISTS.items()})
    context, lists = tf.io.parse_single_sequence_example(
        serialized,
        context_features=context_spec,
        sequence_features={FRAMES: tf.io.FixedLenSequenceFeature([], tf.string)},
    )
    dense = {k: tf.sparse.to_dense(context[k]) for k in _LISTS}
    boxes = tf.reshape(dense[BOX_YXYX], [-1, 4])
    n = tf.shape(boxes)[0]
    c = tf.cast(context[NUM_CLASSES], tf.int32) if num_classes is None else num_classes
    pairs = tf.stack([dense[LABEL_BOX], dense[LABEL_CLASS]], axis=1)
    checks = []
    if num_classes is not None:  # checked first: a class index past C would fail in scatter_nd
        checks.append(
            tf.debugging.assert_equal(
                context[NUM_CLASSES],
                tf.constant(num_classes, tf.int64),
                message="records were written with a different number of classes than "
                f"{num_classes}",
            )
        )
    with tf.control_dependencies(checks):
        labels = tf.scatter_nd(
            pairs, tf.ones([tf.shape(pairs)[0]], tf.float32), tf.cast(tf.stack([n, c]), tf.int64)
        )
    if num_classes is not None:
        labels.set_shape([None, num_classes])
    i32 = lambda t: tf.cast(t, tf.int32)  # noqa: E731
    return {
        "video_id": context[VIDEO_ID],
        "video_index": i32(context[VIDEO_INDEX]),
        "timestamp": i32(context[TIMESTAMP]),
        "keyframe_index": i32(context[KEYFRAME_INDEX]),
        "keyframe_frame": i32(context[KEYFRAME_FRAME]),
        "fps": context[FPS],
        "height": i32(context[HEIGHT]),
        "width": i32(context[WIDTH]),
        "frames": lists[FRAMES],
        "boxes": boxes,
        "labels": tf.minimum(labels, 1.0),
        "person_ids": i32(dense[BOX_PERSON_ID]),
        "proposals": tf.reshape(dense[PROPOSAL_YXYX], [-1, 4]),
        "proposal_scores": dense[PROPOSAL_SCORE],
        "objects": tf.reshape(dense[OBJECT_YXYX], [-1, 4]),
        "object_classes": i32(dense[OBJECT_CLASS]),
        "object_scores": dense[OBJECT_SCORE],
    }
