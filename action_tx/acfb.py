"""Actor-Context Feature Bank (ACFB, acar_net.txt §3.3, Figure 3, eq. 5).

Stage 1 trains an ACAR-Net without a bank. `extract_bank` runs it in inference mode over every
keyframe of a split and archives the first-order actor-context relation maps L (the HR2O input
F of each actor the model scores: its RoIs at inference) per keyframe. Stage 2 trains a new
`ACARHead(use_bank=True)` whose HR2O takes queries from its own short-term F and keys/values
from L of the keyframes in [t - w, t + w] of the same video (`BankTable.read`). This module
reads and writes bank folders; whoever builds the model gives the loaded `Bank`s to the head
(`attach_banks`, or `ACARHead.set_bank`): the head never reads files.

On disk (`out_dir`): `.npz` shards in the dataset's order, each holding, for k keyframes with
at most P actors:
  keyframe_index int64 [k], video_index int32 [k], timestamp int32 [k], video_id str [k],
  maps float16 [k, P, h, w, d], mask bool [k, P], boxes float32 [k, P, 4] (yxyx),
  scores float32 [k, P];
and `acfb.json`, written once every shard is: {"num_keyframes": K (max keyframe_index + 1),
"max_persons": P over shards, "map_shape": [h, w, d], "shards": [names], "keyframes": count
written}; `load_bank` reads only that. `extract_bank` (one pass) names shards `acfb-%05d.npz`;
the sharded, resumable extraction (`feature_extraction.extract_split_bank`) writes shards of
whole videos, `acfb-%05d-of-%05d.npz`, planned in a `manifest.json` as feature folders are
(`action_tx.data.features.plan_shards`), and acfb.json when its last shard is done.
Keyframe indices are those of the split (docs/DESIGN.md), so a split's bank serves only that
split: train with the training split's bank, evaluate with the evaluation split's.
"""

import json
import os
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from action_tx import output_files
from action_tx.heads.acar import ACARHead
from action_tx.heads.acar_bank import Bank, BankTable  # noqa: F401  (BankTable: re-exported)
from action_tx.progress import Progress

MANIFEST = "acfb.json"


SHARD_PATTERN = "acfb-%05d-of-%05d.npz"  # a sharded extraction's shards (features.plan_shards)


def write_shard(path: str, rows) -> dict:
    """Writes keyframe `rows` (tuples of `BankWriter.add`'s arguments) as one bank shard at
    `path` (via `path.tmp`, renamed when complete) -> {"records", "max_persons", "max_index",
    "map_shape"}: what the folder's acfb.json sums up."""
    rows = list(rows)
    if not rows:
        raise ValueError(f"{path}: a bank shard needs at least one keyframe")
    shape = list(rows[0][4].shape[1:])
    k, p = len(rows), max(max(r[4].shape[0] for r in rows), 1)
    maps = np.zeros([k, p] + shape, np.float16)
    mask = np.zeros([k, p], bool)
    boxes, scores = np.zeros([k, p, 4], np.float32), np.zeros([k, p], np.float32)
    for i, row in enumerate(rows):
        n = row[4].shape[0]
        maps[i, :n], mask[i, :n], boxes[i, :n], scores[i, :n] = row[4], True, row[5], row[6]
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a name
        np.savez(
            f,
            keyframe_index=np.array([r[0] for r in rows], np.int64),
            video_index=np.array([r[1] for r in rows], np.int32),
            timestamp=np.array([r[2] for r in rows], np.int32),
            video_id=np.array([r[3] for r in rows]),
            maps=maps,
            mask=mask,
            boxes=boxes,
            scores=scores,
        )
    os.replace(tmp, path)
    return dict(
        records=k,
        max_persons=max(r[4].shape[0] for r in rows),
        max_index=max(int(r[0]) for r in rows),
        map_shape=shape,
    )


def write_summary(out_dir: str, shards: list) -> dict:
    """Writes `out_dir`/acfb.json, what `load_bank` reads, from the `write_shard` results of
    every shard (dicts with their "path"), atomically -> its dict."""
    manifest = dict(
        num_keyframes=max((s["max_index"] for s in shards), default=-1) + 1,
        max_persons=max((s["max_persons"] for s in shards), default=0),
        map_shape=next((s["map_shape"] for s in shards), None),
        shards=[s["path"] for s in shards],
        keyframes=sum(s["records"] for s in shards),
    )
    path = os.path.join(out_dir, MANIFEST)
    output_files.write_texts({path: json.dumps(manifest, indent=1)})
    return manifest


class BankWriter:
    """Writes bank shards of `shard_size` keyframes (`acfb-%05d.npz`) and, on `close()`,
    acfb.json: a bank in one pass, without a resumable plan."""

    def __init__(self, out_dir: str, shard_size: int = 256):
        os.makedirs(out_dir, exist_ok=True)
        self.out_dir, self.shard_size = out_dir, shard_size
        self._rows, self._shards = [], []

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
        row = (int(keyframe_index), int(video_index), int(timestamp), str(video_id))
        self._rows.append(row + (maps, boxes, scores))
        if len(self._rows) >= self.shard_size:
            self._flush()

    def _flush(self):
        if self._rows:
            name = f"acfb-{len(self._shards):05d}.npz"
            info = write_shard(os.path.join(self.out_dir, name), self._rows)
            self._shards.append(dict(info, path=name))
            self._rows = []

    def close(self) -> dict:
        self._flush()
        return write_summary(self.out_dir, self._shards)


def bank_rows(model, dataset, update: Callable[[int], None] = lambda n: None):
    """The bank rows (`BankWriter.add`'s arguments) of every keyframe of `dataset`: the
    first-order relation maps L of the actors `model` scores (see `extract_bank`). `update(n)`
    after each batch with its n keyframes. Raises ValueError at once for a head that is not an
    ACARHead."""
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

    def rows():
        for batch in dataset:
            rois, roi_mask, scores, maps = [t.numpy() for t in step(batch)]
            keep = np.ones(rois.shape[0], bool)
            for key in ("keyframe_mask", "target_mask"):
                if key in batch:
                    keep &= batch[key].numpy().astype(bool)
            video_ids = batch["video_id"].numpy()
            for b in np.nonzero(keep)[0]:
                m = roi_mask[b].astype(bool)
                vid = video_ids[b]
                yield (
                    int(batch["keyframe_index"][b]),
                    int(batch["video_index"][b]),
                    int(batch["timestamp"][b]),
                    vid.decode() if isinstance(vid, bytes) else str(vid),
                    maps[b][m],
                    rois[b][m],
                    scores[b][m],
                )
            update(int(keep.sum()))

    return rows()


def extract_bank(
    model,
    dataset,
    out_dir: str,
    progress: bool = True,
    total: Optional[int] = None,
    shard_size: int = 256,
) -> dict:
    """Archives the first-order relation maps L of every keyframe's actors (stage 1 -> bank),
    in one pass (`feature_extraction.extract_split_bank` shards and resumes it).

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
    bar = Progress(total or 0, "acfb bank", enabled=progress)
    rows = bank_rows(model, dataset, bar.update)
    writer = BankWriter(out_dir, shard_size=shard_size)
    for row in rows:
        writer.add(*row)
    bar.close()
    return writer.close()


def load_bank(bank_dir: str) -> Bank:
    """Reads a bank folder into a `Bank` indexed by keyframe index (ValueError naming the file
    when it is missing or malformed)."""
    path = os.path.join(bank_dir, MANIFEST)
    plan = os.path.join(bank_dir, "manifest.json")  # a sharded extraction's plan
    if not os.path.isfile(path) and os.path.isfile(plan):
        try:
            with open(plan) as f:
                shards = json.load(f)["shards"]
            done = f"{sum(bool(s.get('done')) for s in shards)} of {len(shards)} shards done"
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            done = f"unreadable {plan}: {e}"
        raise ValueError(
            f"{path}: bank extraction unfinished ({done}); re-run tools/extract_features.py "
            "--bank=acfb with the same flags (every --worker_index) to resume"
        )
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
