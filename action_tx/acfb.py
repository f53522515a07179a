"""Actor-Context Feature Bank (ACFB, acar_net.txt §3.3, Figure 3, eq. 5).

Stage 1 trains an ACAR-Net without a bank. `extract_bank` runs it in inference mode over every
keyframe of a split and archives the first-order actor-context relation maps L (the HR2O input
F of each actor the model scores: its RoIs at inference) per keyframe. Stage 2 trains a new
`ACARHead(use_bank=True)` whose HR2O takes queries from its own short-term F and keys/values
from L of the keyframes in [t - w, t + w] of the same video (`BankTable.read`). This module
reads and writes bank folders; whoever builds the model gives the loaded `Bank`s to the head
(`attach_banks`, or `ACARHead.set_bank`): the head never reads files.

On disk (`out_dir`): `acfb-%05d.npz` shards in the dataset's order, each holding, for k
keyframes with at most P actors:
  keyframe_index int64 [k], video_index int32 [k], timestamp int32 [k], video_id str [k],
  maps float16 [k, P, h, w, d], mask bool [k, P], boxes float32 [k, P, 4] (yxyx),
  scores float32 [k, P];
and `acfb.json`: {"num_keyframes": K (max keyframe_index + 1), "max_persons": P over shards,
"map_shape": [h, w, d], "shards": [...], "keyframes": count written}.
Keyframe indices are those of the split (docs/DESIGN.md), so a split's bank serves only that
split: train with the training split's bank, evaluate with the evaluation split's.
"""

import json
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from action_tx.heads.acar import ACARHead
from action_tx.heads.acar_bank import Bank, BankTable  # noqa: F401  (BankTable: re-exported)
from action_tx.progress import Progress

MANIFEST = "acfb.json"


class BankWriter:
    """Writes bank shards of `shard_size` keyframes and, on `close()`, the manifest."""

    def __init__(self, out_dir: str, shard_size: int = 256):
        os.makedirs(out_dir, exist_ok=True)
        self.out_dir, self.shard_size = out_dir, shard_size
        self._rows, self._shards, self._map_shape = [], [], None
        self._max_persons, self._max_index, self._count = 0, -1, 0

    def add(
        self,
        keyframe_index: int,
        video_index: int,
        timestamp: int,
        video_id: str,
        maps: np.ndarray,
        boxes: np.ndarray,
        scores: np.ndarray,
    ):
        """One keyframe: maps [P, h, w, d] of its P actors, boxes [P, 4], scores [P]."""
        if self._map_shape is None:
            self._map_shape = list(maps.shape[1:])
        self._rows.append(
            (
                int(keyframe_index),
                int(video_index),
                int(timestamp),
                str(video_id),
                maps.astype(np.float16),
                boxes.astype(np.float32),
                scores.astype(np.float32),
            )
        )
        self._max_persons = max(self._max_persons, maps.shape[0])
        self._max_index = max(self._max_index, int(keyframe_index))
        self._count += 1
        if len(self._rows) >= self.shard_size:
            self._flush()

    def _flush(self):
        if not self._rows:
            return
        k, p = len(self._rows), max(max(r[4].shape[0] for r in self._rows), 1)
        maps = np.zeros([k, p] + self._map_shape, np.float16)
        mask = np.zeros([k, p], bool)
        boxes, scores = np.zeros([k, p, 4], np.float32), np.zeros([k, p], np.float32)
        for i, row in enumerate(self._rows):
            n = row[4].shape[0]
            maps[i, :n], mask[i, :n], boxes[i, :n], scores[i, :n] = row[4], True, row[5], row[6]
        name = f"acfb-{len(self._shards):05d}.npz"
        np.savez(
            os.path.join(self.out_dir, name),
            keyframe_index=np.array([r[0] for r in self._rows], np.int64),
            video_index=np.array([r[1] for r in self._rows], np.int32),
            timestamp=np.array([r[2] for r in self._rows], np.int32),
            video_id=np.array([r[3] for r in self._rows]),
            maps=maps,
            mask=mask,
            boxes=boxes,
            scores=scores,
        )
        self._shards.append(name)
        self._rows = []

    def close(self) -> dict:
        self._flush()
        manifest = dict(
            num_keyframes=self._max_index + 1,
            max_persons=self._max_persons,
            map_shape=self._map_shape,
            shards=self._shards,
            keyframes=self._count,
        )
        with open(os.path.join(self.out_dir, MANIFEST), "w") as f:
            json.dump(manifest, f, indent=1)
        return manifest


def extract_bank(
    model,
    dataset,
    out_dir: str,
    progress: bool = True,
    total: Optional[int] = None,
    shard_size: int = 256,
) -> dict:
    """Archives the first-order relation maps L of every keyframe's actors (stage 1 -> bank).

    Args:
      model: a built Keras model whose `head` is an `ACARHead` (ActionDetector end to end, or
        FeatureActionModel on stored features), restored from the stage-1 checkpoint. It runs
        with `training=False`; its output dict gives `rois` [B, N, 4], `roi_mask` [B, N] and
        `roi_scores` [B, N]: the actors archived are those the model scores at inference.
      dataset: evaluation-mode batches (every keyframe once) with `video_id`, `video_index`,
        `timestamp`, `keyframe_index` [B] and, in feature mode, `keyframe_mask` /
        `target_mask` [B] (keyframes where either is false are skipped).
      out_dir: bank folder (module docstring); total: keyframes, for the progress bar.
    Returns the manifest dict.
    """
    head = model.head
    if not isinstance(head, ACARHead):
        raise ValueError(
            f"extract_bank: the model's head {type(head).__name__} is not an "
            "ACARHead (no first-order relation maps to archive)"
        )

    @tf.function
    def step(batch):
        with head.recording() as recorded:
            out = model(batch, training=False)
        return out["rois"], out["roi_mask"], out["roi_scores"], recorded[0]

    writer = BankWriter(out_dir, shard_size=shard_size)
    bar = Progress(total or 0, "acfb bank", enabled=progress)
    for batch in dataset:
        rois, roi_mask, scores, maps = [t.numpy() for t in step(batch)]
        keep = np.ones(rois.shape[0], bool)
        for key in ("keyframe_mask", "target_mask"):
            if key in batch:
                keep &= batch[key].numpy().astype(bool)
        video_ids = batch["video_id"].numpy()
        for b in np.nonzero(keep)[0]:
            m = roi_mask[b].astype(bool)
            vid = video_ids[b].decode() if isinstance(video_ids[b], bytes) else str(video_ids[b])
            writer.add(
                batch["keyframe_index"][b],
                batch["video_index"][b],
                batch["timestamp"][b],
                vid,
                maps[b][m],
                rois[b][m],
                scores[b][m],
            )
        bar.update(int(keep.sum()))
    bar.close()
    return writer.close()


def load_bank(bank_dir: str) -> Bank:
    """Reads a bank folder into a `Bank` indexed by keyframe index (ValueError naming the file
    when it is missing or malformed)."""
    path = os.path.join(bank_dir, MANIFEST)
    try:
        with open(path) as f:
            manifest = json.load(f)
        k, p = int(manifest["num_keyframes"]), max(int(manifest["max_persons"]), 1)
        shape, shards = [int(s) for s in manifest["map_shape"] or [1, 1, 1]], manifest["shards"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"{path}: not an ACFB manifest ({e}); make one with "
            "tools/extract_features.py --bank=acfb"
        ) from None
    maps = np.zeros([max(k, 1), p] + shape, np.float16)
    mask = np.zeros([max(k, 1), p], bool)
    video = np.full([max(k, 1)], -1, np.int32)
    timestamp = np.zeros([max(k, 1)], np.int32)
    video_id = [""] * max(k, 1)
    for name in shards:
        shard = os.path.join(bank_dir, name)
        try:
            with np.load(shard) as z:
                idx, n = z["keyframe_index"], z["maps"].shape[1]
                if list(z["maps"].shape[2:]) != shape or (idx.size and idx.max() >= k):
                    raise ValueError(f"maps {z['maps'].shape} or indices disagree with {path}")
                maps[idx, :n], mask[idx, :n] = z["maps"], z["mask"]
                video[idx], timestamp[idx] = z["video_index"], z["timestamp"]
                for i, v in zip(idx, z["video_id"]):
                    video_id[i] = str(v)
        except (OSError, KeyError, ValueError) as e:
            raise ValueError(f"{shard}: unreadable ACFB shard ({e})") from None
    return Bank(maps, mask, video, timestamp, video_id)


def attach_banks(head, bank_dir: Optional[str] = None, eval_bank_dir: Optional[str] = None) -> None:
    """Reads the bank folders and gives them to `head` (`ACARHead.set_bank`).

    bank_dir: the training split's bank (read in training); eval_bank_dir: the evaluation
    split's (read in inference; None: bank_dir's). Raises ValueError, naming the file, for a
    missing or malformed folder, and for a head that is not an ACARHead built with
    `use_bank=True`.
    """
    if not isinstance(head, ACARHead):
        raise ValueError(
            f"a feature bank was given ({bank_dir or eval_bank_dir}) but the head "
            f"{type(head).__name__} is not an ACARHead (only ACAR reads one)"
        )
    head.set_bank(
        load_bank(bank_dir) if bank_dir else None,
        load_bank(eval_bank_dir) if eval_bank_dir else None,
    )
