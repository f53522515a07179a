"""Frozen-trunk feature files (`tools/extract_features.py`) and the feature-mode tf.data input.

Files: `DIR/features-%05d-of-%05d.tfrecord` + `DIR/manifest.json`; one `tf.train.Example` per
keyframe, shards in (video_id, timestamp) order. Per keyframe (`encode_keyframe`):
  video_id, video_index, timestamp, keyframe_index; context map [M, M, C] (trunk features
  averaged over T', area-pooled to M x M) stored float16; scene [C]; ground-truth boxes
  [Ng, 4] yxyx + multi-hot labels [Ng, K] + person ids [Ng] + pooled features [Ng, C];
  detected boxes [Nd, 4] + scores [Nd] + pooled features [Nd, C] + labels [Nd, K] (those of
  the ground-truth box of best IoU >= 0.5, else none: STAGE §4); objects [No, 4] + classes
  + scores + pooled features [No, C]. A pooled feature is the mean of the ST-RoIAlign tube over
  T', S, S. (K action classes, C feature channels.)

`feature_dataset.build_feature_dataset` reads them as the feature-mode tf.data input.
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from action_tx import output_files
from object_detection_ext import box_ops

MANIFEST = "manifest.json"
SHARD_PATTERN = "features-%05d-of-%05d.tfrecord"
_GROUPS = {
    "gt": ("boxes", "labels", "person_ids", "features"),
    "det": ("boxes", "scores", "features", "labels"),
    "obj": ("boxes", "classes", "scores", "features"),
}


class FeatureFileError(ValueError):
    """A feature folder that cannot be read; the message names the file."""


def transfer_labels(
    detected: tf.Tensor,
    detected_mask: tf.Tensor,
    gt: tf.Tensor,
    gt_mask: tf.Tensor,
    gt_labels: tf.Tensor,
    iou_threshold: float = 0.5,
) -> tf.Tensor:
    """Labels of detected boxes: those of the ground-truth box of best IoU when it is
    >= iou_threshold, else all zero (STAGE §4).

    Args:
      detected: float [B, Nd, 4] normalized yxyx; detected_mask: bool [B, Nd].
      gt: float [B, Ng, 4] yxyx; gt_mask: bool [B, Ng]; gt_labels: float [B, Ng, K] multi-hot.
    Returns:
      float32 [B, Nd, K] (zeros at padding).
    """
    if gt.shape[1] == 0:  # no ground-truth slot at all: argmax would have nothing to pick
        return tf.zeros(tf.concat([tf.shape(detected)[:2], tf.shape(gt_labels)[-1:]], 0))
    iou = box_ops.pairwise_iou(detected, gt, detected_mask, gt_mask)  # [B, Nd, Ng]
    best = tf.argmax(iou, axis=-1, output_type=tf.int32)  # [B, Nd]
    ok = tf.reduce_max(iou, axis=-1) >= iou_threshold
    labels = tf.gather(tf.cast(gt_labels, tf.float32), best, batch_dims=1)
    return labels * tf.cast(ok, tf.float32)[..., None]


def _floats(values) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=np.ravel(values)))


def _ints(values) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=np.ravel(values).astype(np.int64)))


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def encode_keyframe(
    *,
    video_id: str,
    video_index: int,
    timestamp: int,
    keyframe_index: int,
    context: np.ndarray,
    scene: np.ndarray,
    gt: Dict[str, np.ndarray],
    det: Dict[str, np.ndarray],
    obj: Dict[str, np.ndarray],
) -> bytes:
    """One keyframe -> serialized tf.train.Example. context [M, M, C] (stored float16), scene
    [C]; gt/det/obj: dicts with the keys of the module docstring (numpy arrays, first axis the
    box)."""
    context = np.asarray(context, np.float16)
    feats = {
        "video_id": _bytes(video_id.encode()),
        "video_index": _ints([video_index]),
        "timestamp": _ints([timestamp]),
        "keyframe_index": _ints([keyframe_index]),
        "context": _bytes(context.tobytes()),
        "context_shape": _ints(context.shape),
        "scene": _floats(scene),
    }
    for group, values in (("gt", gt), ("det", det), ("obj", obj)):
        for key in _GROUPS[group]:
            v = np.asarray(values[key])
            feats[f"{group}/{key}"] = _ints(v) if key in ("person_ids", "classes") else _floats(v)
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString(
        deterministic=True
    )


def decode_keyframe(record: bytes) -> dict:
    """Inverse of `encode_keyframe`: dict with the scalars, context float16 [M, M, C], scene
    [C], and `gt`/`det`/`obj` dicts of flat arrays (reshaped by `read_feature_dir`)."""
    f = tf.train.Example.FromString(record).features.feature
    shape = tuple(f["context_shape"].int64_list.value)
    out = {
        "video_id": f["video_id"].bytes_list.value[0].decode(),
        "video_index": f["video_index"].int64_list.value[0],
        "timestamp": f["timestamp"].int64_list.value[0],
        "keyframe_index": f["keyframe_index"].int64_list.value[0],
        "context": np.frombuffer(f["context"].bytes_list.value[0], np.float16).reshape(shape),
        "scene": np.asarray(f["scene"].float_list.value, np.float32),
    }
    for group, keys in _GROUPS.items():
        out[group] = {
            k: np.asarray(f[f"{group}/{k}"].int64_list.value, np.int32)
            if k in ("person_ids", "classes")
            else np.asarray(f[f"{group}/{k}"].float_list.value, np.float32)
            for k in keys
        }
    return out


def write_feature_dir(
    directory: str, keyframes: List[dict], *, num_classes: int, shard_size: int = 256
) -> dict:
    """Writes `keyframes` (dicts of `encode_keyframe` arguments, in the order given) as a
    finished feature folder (shards + manifest) -> the manifest. For tests and tools that
    make features without a detector."""
    os.makedirs(directory, exist_ok=True)
    num = max(1, -(-len(keyframes) // shard_size))
    shards = []
    for i in range(num):
        part = keyframes[i * shard_size : (i + 1) * shard_size]
        name = SHARD_PATTERN % (i, num)
        with tf.io.TFRecordWriter(os.path.join(directory, name)) as writer:
            for kf in part:
                writer.write(encode_keyframe(**kf))
        shards.append({"path": name, "start": i * shard_size, "records": len(part), "done": True})
    first = keyframes[0]
    manifest = {
        "settings": {},
        "keyframes": len(keyframes),
        "shards": shards,
        "num_classes": num_classes,
        "feature_dim": int(np.shape(first["scene"])[-1]),
        "map_size": int(np.shape(first["context"])[0]),
    }
    with open(os.path.join(directory, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def video_runs(files: List[str]) -> List[List[int]]:
    """[[video_index, keyframes], ...]: the runs of consecutive keyframes of one video in the
    converter's TFRecord shards `files` of either layout (read in order; only each record's
    video index and keyframe count are parsed, but every byte is read once)."""
    from action_tx.data import tfrecords

    spec = {
        tfrecords.VIDEO_INDEX: tf.io.FixedLenFeature([], tf.int64),
        tfrecords.TIMESTAMP: tf.io.VarLenFeature(tf.int64),  # one a keyframe (layout 2: K)
    }

    def video_of_keyframes(record):
        context = tf.io.parse_single_sequence_example(record, context_features=spec)[0]
        count = tf.size(context[tfrecords.TIMESTAMP].values)
        return tf.fill([count], context[tfrecords.VIDEO_INDEX])

    ds = tf.data.TFRecordDataset(files).map(
        video_of_keyframes, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return _runs(v for batch in ds.unbatch().batch(4096) for v in batch.numpy().tolist())


def folder_video_runs(directory: str) -> List[List[int]]:
    """`video_runs` of a finished feature folder, in the keyframe order `read_feature_dir`
    and `build_feature_dataset` use ((video_id, timestamp)); only each record's video_id,
    timestamp and video_index are parsed."""
    paths = [os.path.join(directory, s["path"]) for s in _finished_shards(directory)]
    spec = {
        "video_id": tf.io.FixedLenFeature([], tf.string),
        "timestamp": tf.io.FixedLenFeature([], tf.int64),
        "video_index": tf.io.FixedLenFeature([], tf.int64),
    }
    ds = tf.data.TFRecordDataset(paths).batch(4096).map(lambda r: tf.io.parse_example(r, spec))
    keys = []
    for batch in ds:
        parts = [batch[k].numpy().tolist() for k in ("video_id", "timestamp", "video_index")]
        keys.extend(zip(*parts))
    return _runs(v for _, _, v in sorted(keys))


def _runs(video_indices) -> List[List[int]]:
    runs: List[List[int]] = []
    for v in video_indices:
        if runs and runs[-1][0] == v:
            runs[-1][1] += 1
        else:
            runs.append([v, 1])
    return runs


def plan_shards(runs: List[List[int]], shard_size: int, pattern: str = SHARD_PATTERN) -> List[dict]:
    """Output shards of whole videos: consecutive videos of `runs` (`video_runs`) are added to
    a shard until it holds >= shard_size keyframes (a longer video is a shard of its own), so
    a video's keyframes (a memory or bank window) never span two shards or two workers.
    `pattern` % (i, count) names shard i.
    -> [{"path", "start", "records", "videos", "done": False}]."""
    parts, start = [], 0
    for video, count in runs:
        if not parts or parts[-1]["records"] >= shard_size:
            parts.append({"start": start, "records": 0, "videos": 0})
        parts[-1]["records"] += count
        parts[-1]["videos"] += 1
        start += count
    return [dict(path=pattern % (i, len(parts)), done=False, **p) for i, p in enumerate(parts)]


def update_manifest(directory: str, update) -> dict:
    """Applies `update(manifest) -> manifest` to DIR/manifest.json under an exclusive lock
    (`fcntl.flock` on manifest.json.lock), so that parallel extraction workers of one folder
    never lose each other's updates; the file is replaced atomically. A missing manifest
    reaches `update` as None."""
    import fcntl

    path = os.path.join(directory, MANIFEST)
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = read_manifest(directory) if os.path.isfile(path) else None
        manifest = update(manifest)
        output_files.write_texts({path: json.dumps(manifest, indent=1)})
        return manifest


def _finished_shards(directory: str, manifest: Optional[dict] = None) -> List[dict]:
    """The shards of a feature folder's manifest (FeatureFileError unless every one is done)."""
    shards = (manifest or read_manifest(directory)).get("shards", [])
    missing = [s["path"] for s in shards if not s.get("done")]
    if not shards or missing:
        raise FeatureFileError(
            f"{os.path.join(directory, MANIFEST)}: extraction unfinished "
            f"({len(missing)} of {len(shards)} shards missing); re-run "
            "tools/extract_features.py to resume"
        )
    return shards


def read_manifest(directory: str) -> dict:
    path = os.path.join(directory, MANIFEST)
    if not os.path.isfile(path):
        raise FeatureFileError(f"{path}: no feature manifest (run tools/extract_features.py)")
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError as e:
        raise FeatureFileError(f"{path}: not JSON ({e})") from None


def read_feature_dir(directory: str) -> dict:
    """Every keyframe of a finished feature folder, sorted by (video_id, timestamp).

    Returns dict: keyframes (list of `decode_keyframe` dicts with gt/det/obj arrays reshaped
    to [n, ...]), num_classes, feature_dim, map_size.
    """
    manifest = read_manifest(directory)
    shards = _finished_shards(directory, manifest)
    k, c = int(manifest["num_classes"]), int(manifest["feature_dim"])
    widths = {"boxes": 4, "labels": k, "features": c}
    keyframes = []
    for shard in shards:
        path = os.path.join(directory, shard["path"])
        if not os.path.isfile(path):
            raise FeatureFileError(f"{path}: shard listed in the manifest is missing")
        try:
            for record in tf.data.TFRecordDataset(path):
                kf = decode_keyframe(record.numpy())
                for group in _GROUPS:
                    kf[group] = {
                        key: v.reshape(-1, widths[key]) if key in widths else v
                        for key, v in kf[group].items()
                    }
                keyframes.append(kf)
        except tf.errors.OpError as e:
            raise FeatureFileError(f"{path}: cannot read ({e.message.splitlines()[0]})") from None
    keyframes.sort(key=lambda kf: (kf["video_id"], kf["timestamp"]))
    return dict(
        keyframes=keyframes, num_classes=k, feature_dim=c, map_size=int(manifest["map_size"])
    )


def count_target_keyframes(directory: str) -> int:
    """Keyframes in a feature folder (from its manifest)."""
    return sum(int(s.get("records", 0)) for s in read_manifest(directory).get("shards", []))
