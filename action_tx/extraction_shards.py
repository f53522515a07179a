"""Resumable extraction in shards of whole videos, run by N parallel workers over one output
folder: what frozen-feature extraction (`feature_extraction.extract_split`) and ACAR's bank
(`feature_extraction.extract_split_bank`) share.

The first worker plans the folder's `manifest.json` (`load_manifest`: shards of whole videos,
`features.plan_shards`, with the settings that made them); worker i writes the shards j with
j % N == i that are not marked done (`run_shards`), each under a temporary name renamed when
complete and then marked done under the manifest's file lock (`features.update_manifest`). A
worker killed halfway loses only the shard it was writing; its re-run writes the rest."""

from __future__ import annotations

import os
import sys
from typing import Callable

from action_tx.data import features


class ManifestMismatch(ValueError):
    """An output folder's manifest was written with other settings."""


def stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_manifest(
    out: str,
    settings: dict,
    runs: Callable[[], list],
    shard_size: int,
    pattern: str = features.SHARD_PATTERN,
) -> dict:
    """The folder's manifest.json: checked against `settings`, or planned and written when
    absent (shards of whole videos, `features.plan_shards` of the video runs that `runs()`
    reads, named by `pattern`). Workers that start together plan the same shards; the first
    to take the lock writes them, the others read them."""

    def plan(manifest):
        if manifest is not None:
            return manifest
        shards = features.plan_shards(runs(), shard_size, pattern)
        return {
            "settings": settings,
            "keyframes": sum(s["records"] for s in shards),
            "shards": shards,
        }

    path = os.path.join(out, features.MANIFEST)
    if not os.path.isfile(path):
        features.update_manifest(out, plan)
    manifest = features.read_manifest(out)
    if manifest.get("settings") != settings:
        diff = sorted(
            k
            for k in set(settings) | set(manifest.get("settings", {}))
            if settings.get(k) != manifest.get("settings", {}).get(k)
        )
        raise ManifestMismatch(
            f"{path}: written with other settings ({', '.join(diff)} "
            "differ); use another output folder or delete it"
        )
    return manifest


def check_worker(num_workers: int, worker_index: int) -> None:
    if not 0 <= worker_index < num_workers:
        raise ValueError(f"worker_index={worker_index} must be in [0, num_workers={num_workers})")


def run_shards(
    out: str,
    manifest: dict,
    start: Callable[[list, Callable[[int], None]], Callable],
    mark: Callable[[dict, dict, dict], None],
    *,
    num_workers: int,
    worker_index: int,
    name: str,
    progress: bool,
    log: Callable[[str], None],
) -> dict:
    """Writes this worker's shards of `manifest` (those j with j % num_workers == worker_index
    not yet done), each then marked done in manifest.json under its lock -> the manifest.

    start(todo, update): called once, only when there is a shard to write (it builds the
    model), with the shards to write in order and the progress bar's update(n); returns
    write(path, start, count) -> info, called for each of them in that order, which writes
    keyframes [start, start + count) of the input to `path` (via `path.tmp`, renamed when
    complete). mark(manifest, entry, info): records `info` in the locked manifest and the
    shard's `entry` (done=True is set).
    """
    from action_tx.progress import Progress

    mine = manifest["shards"][worker_index::num_workers]
    todo = [s for s in mine if not s["done"]]
    if not todo:
        log(f"all {len(mine)} shards of worker {worker_index} already in {out}")
        return manifest
    bar = Progress(sum(s["records"] for s in todo), name, enabled=progress)
    write = start(todo, bar.update)
    for shard in todo:
        info = write(os.path.join(out, shard["path"]), shard["start"], shard["records"])

        def done(manifest, path=shard["path"], info=info):
            for entry in manifest["shards"]:
                if entry["path"] == path:
                    entry["done"] = True
                    mark(manifest, entry, info)
            return manifest

        manifest = features.update_manifest(out, done)
    bar.close()
    return manifest
