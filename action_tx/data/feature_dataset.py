"""The feature-mode tf.data input: batches of consecutive keyframes of one video, read from a
feature folder (`features.read_feature_dir`, written by `tools/extract_features.py`).

`build_feature_dataset` reads every shard into memory once (features are small) and serves
batches by gathering from index tables (`_chunk_tables`).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from action_tx.data.features import FeatureFileError, read_feature_dir


def _pad(rows: List[np.ndarray], size: int, width_shape, dtype) -> np.ndarray:
    """Stacks per-keyframe arrays [n_i, ...] into [K + 1, size, ...] (row K: padding)."""
    out = np.zeros((len(rows) + 1, size) + tuple(width_shape), dtype)
    for i, r in enumerate(rows):
        n = min(len(r), size)
        out[i, :n] = r[:n]
    return out


def _actor_rows(kf: dict, actors: str):
    """-> boxes [n, 4], scores [n], features [n, C], labels [n, K] of the chosen actors
    (ground-truth first, then detections, for 'both')."""
    parts = []
    if actors in ("gt", "both"):
        g = kf["gt"]
        parts.append((g["boxes"], np.ones(len(g["boxes"]), np.float32), g["features"], g["labels"]))
    if actors in ("detected", "both"):
        d = kf["det"]
        parts.append((d["boxes"], d["scores"], d["features"], d["labels"]))
    return [np.concatenate(p) for p in zip(*parts)]


def _chunk_tables(video_index: np.ndarray, batch_size: int, context: int, training: bool):
    """Index tables of the batches: idx int32 [num_chunks, B] rows into the keyframe arrays
    (K = padding), target bool [num_chunks, B]. Keyframes are sorted, so a video's keyframes
    are one run [a, b). Training: every window of `batch_size` consecutive keyframes (one per
    start position); eval: consecutive non-overlapping windows, the last one padded."""
    num = len(video_index)
    idx, target = [], []
    bounds = np.flatnonzero(np.diff(video_index)) + 1
    for a, b in zip(np.r_[0, bounds], np.r_[bounds, num]):
        starts = range(a, max(a + 1, b - batch_size + 1)) if training else range(a, b, batch_size)
        for s in starts:
            pos = np.arange(s - context, s + batch_size + context)
            inside = (pos >= a) & (pos < b)
            idx.append(np.where(inside, pos, num))
            target.append(inside & (pos >= s) & (pos < s + batch_size))
    return np.asarray(idx, np.int32).reshape(-1, batch_size + 2 * context), np.asarray(
        target, bool
    ).reshape(-1, batch_size + 2 * context)


def build_feature_dataset(
    directory: str,
    *,
    num_classes: int,
    batch_size: int,
    training: bool,
    seed: int = 0,
    actors: str = "both",
    context: int = 0,
    max_actors: Optional[int] = None,
    max_objects: Optional[int] = None,
    keyframes: Optional[Sequence[Tuple[int, int]]] = None,
) -> tf.data.Dataset:
    """Feature folder -> tf.data of feature batch dicts (heads_spec "feature dataset").

    A batch = `batch_size` consecutive keyframes of ONE video sorted by timestamp, plus
    `context` keyframes of the same video on each side (target_mask false: context only);
    B = batch_size + 2 * context. Training: random windows, shuffled (seeded), repeated.
    Eval: every keyframe exactly once as a target, in order; windows padded with
    keyframe_mask false. Keys: features [B, 1, M, M, C]; rois [B, N, 4] yxyx, roi_mask [B, N],
    roi_scores [B, N] (1 for gt), roi_features [B, N, 1, 1, 1, C], labels [B, N, num_classes];
    objects [B, O, 4], object_mask, object_classes int32, object_scores, object_features
    [B, O, 1, 1, 1, C]; scene [B, C]; video_id string, video_index, timestamp, keyframe_index
    int32 [B] (-1 / "" / 0 on padding); keyframe_mask, target_mask bool [B].

    Args:
      actors: 'gt', 'detected' or 'both' (gt boxes first, then detections).
      max_actors, max_objects: N and O; default the most any keyframe has (at least 1).
      keyframes: ascending ranges (start, count), eval only: just the batches whose targets
        are keyframes [start, start + count) of that order (whole videos, as `plan_shards`
        cuts them: a sharded extraction); N, O and each batch are those of the whole folder.
    """
    if keyframes is not None and training:
        raise ValueError("keyframes=(start, count) selects evaluation batches only")
    if actors not in ("gt", "detected", "both"):
        raise ValueError(f"actors must be gt, detected or both, got {actors!r}")
    data = read_feature_dir(directory)
    if data["num_classes"] != num_classes:
        raise FeatureFileError(
            f"{directory}: features hold {data['num_classes']} classes, the model has {num_classes}"
        )
    kfs, c = data["keyframes"], data["feature_dim"]
    if not kfs:
        raise FeatureFileError(f"{directory}: no keyframes")
    rows = [_actor_rows(kf, actors) for kf in kfs]
    n = max_actors or max(1, max(len(r[0]) for r in rows))
    o = (
        max_objects
        if max_objects is not None
        else max(1, max(len(kf["obj"]["boxes"]) for kf in kfs))
    )
    m = data["map_size"]
    vidx = np.asarray([kf["video_index"] for kf in kfs], np.int32)
    const = {
        "features": np.concatenate(
            [np.stack([kf["context"] for kf in kfs]), np.zeros((1, m, m, c), np.float16)]
        ),
        "scene": _pad([kf["scene"][None] for kf in kfs], 1, (c,), np.float32)[:, 0],
        "rois": _pad([r[0] for r in rows], n, (4,), np.float32),
        "roi_scores": _pad([r[1] for r in rows], n, (), np.float32),
        "roi_features": _pad([r[2] for r in rows], n, (c,), np.float16),
        "labels": _pad([r[3] for r in rows], n, (num_classes,), np.float32),
        "roi_mask": _pad([np.ones(len(r[0]), bool) for r in rows], n, (), bool),
        "objects": _pad([kf["obj"]["boxes"] for kf in kfs], o, (4,), np.float32),
        "object_classes": _pad([kf["obj"]["classes"] for kf in kfs], o, (), np.int32),
        "object_scores": _pad([kf["obj"]["scores"] for kf in kfs], o, (), np.float32),
        "object_features": _pad([kf["obj"]["features"] for kf in kfs], o, (c,), np.float16),
        "object_mask": _pad([np.ones(len(kf["obj"]["boxes"]), bool) for kf in kfs], o, (), bool),
        "video_id": np.asarray([kf["video_id"] for kf in kfs] + [""], object),
        "video_index": np.r_[vidx, -1].astype(np.int32),
        "timestamp": np.asarray([kf["timestamp"] for kf in kfs] + [0], np.int32),
        "keyframe_index": np.asarray([kf["keyframe_index"] for kf in kfs] + [-1], np.int32),
    }
    const = {k: tf.constant(v) for k, v in const.items()}
    idx, target = _chunk_tables(vidx, batch_size, context, training)
    if keyframes is not None:
        first = np.where(target, idx, len(kfs)).min(axis=1)  # each batch's first target
        keep = np.zeros(len(idx), bool)
        for start, count in keyframes:
            keep |= (first >= start) & (first < start + count)
        idx, target = idx[keep], target[keep]

    def gather(i, t):
        out = {k: tf.gather(v, i) for k, v in const.items()}
        for key in ("features", "roi_features", "object_features"):
            out[key] = tf.cast(out[key], tf.float32)
        out["features"] = out["features"][:, None]  # T' = 1
        out["roi_features"] = out["roi_features"][:, :, None, None, None]
        out["object_features"] = out["object_features"][:, :, None, None, None]
        out["keyframe_mask"] = i < len(kfs)
        out["target_mask"] = t
        return out

    ds = tf.data.Dataset.from_tensor_slices((idx, target))
    if training:
        ds = ds.shuffle(len(idx), seed=seed, reshuffle_each_iteration=True).repeat()
    return ds.map(gather, num_parallel_calls=1, deterministic=True).prefetch(2)
