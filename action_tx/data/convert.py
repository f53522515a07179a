"""AVA-format folder -> sharded TFRecords of keyframe clips + a JSON manifest.

Library side of `tools/create_ava_tfrecords.py`. One record per keyframe (`action_tx.data.
tfrecords` layout); keyframes in (video_id, timestamp) order, shards hold contiguous runs of
them, so the same inputs give byte-identical shards whatever the number of workers.
`video_index` is the position of the video id in the split's sorted ids and `keyframe_index` the
position of the keyframe in the split's sorted keyframes (both counted before any video is
rejected, so they do not depend on --skip_bad).
"""
from __future__ import annotations

import collections
import glob
import hashlib
import json
import multiprocessing
import os
import re

import numpy as np
import tensorflow as tf

from action_tx.data import ava, frame_source, tfrecords
from action_tx.progress import Progress

DEFAULT_FPS = 30.0  # AVA's frames are extracted at 30 fps


class ConversionError(ValueError):
    """Inputs that cannot be converted; the message names the file and what is wrong."""


def _one(pattern: str, role: str, required: bool, exclude: str | None = None):
    found = [p for p in sorted(glob.glob(pattern)) if not (exclude and exclude in p)]
    if len(found) > 1:
        raise ConversionError(f"several {role} files match {pattern}: {found}; pass one explicitly")
    if not found and required:
        raise ConversionError(f"no {role} file: nothing matches {pattern}")
    return found[0] if found else None


def find_split_files(ava_dir: str, split: str, **explicit) -> dict:
    """Paths of the split's inputs under ava_dir/annotations; `explicit` overrides any role
    (annotations, label_map, excluded, person_detections, object_detections)."""
    ann = os.path.join(glob.escape(ava_dir), "annotations")
    if not os.path.isdir(os.path.join(ava_dir, "annotations")) and not explicit.get("annotations"):
        raise ConversionError(f"{ava_dir}: no annotations/ folder (is it an AVA-format root?)")
    maps = sorted(glob.glob(os.path.join(ann, "*action_list*.pbtxt")))
    # Real AVA ships the 80-class list and the 60-class ActivityNet list: evaluate on the latter.
    maps = [m for m in maps if "activitynet" in m] or maps
    files = {
        "annotations": lambda: _one(os.path.join(ann, f"ava_{split}*.csv"), "annotations", True,
                                    exclude="excluded"),
        "label_map": lambda: (maps[0] if len(maps) == 1 else
                              _one(os.path.join(ann, "*.pbtxt"), "label map", True)),
        "excluded": lambda: _one(os.path.join(ann, f"*{split}_excluded_timestamps*.csv"),
                                 "excluded timestamps", False),
        "person_detections": lambda: _one(os.path.join(ann, f"person_detections_{split}*.csv"),
                                          "person detections", False),
        "object_detections": lambda: _one(os.path.join(ann, f"object_detections_{split}*.csv"),
                                          "object detections", False),
    }
    return {role: explicit.get(role) or find() for role, find in files.items()}


def shard_paths(out: str, num_shards: int | None = None) -> list[str]:
    """`DIR/name@N` -> name-00000-of-0000N...; a pattern with `%` is formatted with (i, N);
    a plain path with N > 1 gets the -%05d-of-%05d suffix."""
    m = re.fullmatch(r"(.*)@(\d+)", out)
    if m:
        out, num_shards = m.group(1) + "-%05d-of-%05d", int(m.group(2))
    num_shards = num_shards or 1
    if num_shards < 1:
        raise ConversionError(f"--num_shards must be >= 1, got {num_shards}")
    if "%" not in out:
        if num_shards == 1:
            return [out]
        out += "-%05d-of-%05d"
    try:
        return [out % (i, num_shards) for i in range(num_shards)]
    except TypeError:
        raise ConversionError(f"--out {out!r}: expected two %d fields (shard, count)") from None


def frame_folder_fps(ava_dir: str, fps: float | None = None) -> tuple[float, str]:
    """The fps of JPEG frame folders -> (fps, where it came from): the argument, else the
    `fps=N` of the synthetic generator's README.txt, else AVA's 30."""
    if fps:
        return float(fps), "argument"
    readme = os.path.join(ava_dir, "README.txt")
    if os.path.isfile(readme):
        with open(readme, errors="replace") as f:
            m = re.search(r"\bfps=(\d+(?:\.\d+)?)", f.read())
        if m:
            return float(m.group(1)), readme
    return DEFAULT_FPS, "default (AVA)"


def _input_record(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"path": os.path.abspath(path), "bytes": os.path.getsize(path), "sha256": h.hexdigest()}


def _by_key(ann):
    """Annotations -> {(video_id, timestamp): row indices in file order}."""
    groups = collections.defaultdict(list)
    for i, key in enumerate(zip(ann.video_id.tolist(), ann.timestamp.tolist())):
        groups[key].append(i)
    return groups


def _keyframe(rows, ann, classes, num_classes):
    """Ground-truth rows of one keyframe -> boxes [N,4], multi-hot [N,C], person ids [N].
    classes: [rows] contiguous class index of every row of `ann`."""
    slots, boxes, pids, hits = {}, [], [], []
    for i in rows:
        box = ann.boxes[i]
        if np.isnan(box).any():  # a 2-column row: the keyframe exists but has no box
            continue
        key = (tuple(np.round(box, 4).tolist()), int(ann.person_id[i]))
        if key not in slots:
            slots[key] = len(boxes)
            boxes.append(box)
            pids.append(key[1])
        hits.append((slots[key], int(classes[i])))
    labels = np.zeros((len(boxes), num_classes), bool)
    for b, c in hits:
        labels[b, c] = True
    return np.array(boxes, np.float32).reshape(-1, 4), labels, np.array(pids, np.int64)


def video_output(task: dict, *, skip_bad: bool, num_shards: int, num_keys: int) -> dict:
    """One video's keyframes -> {"video_id", "keyframes": count, "bad": None or [reason,
    message], "records": [(shard, keyframe_index, record)]}: the unit of work of both the
    process pool (`convert_split`) and the Beam pipeline (`beam_convert`). JSON-able but for
    the records. A keyframe goes to shard keyframe_index * num_shards // num_keys, so shards
    hold contiguous runs of the sorted keyframes."""
    del skip_bad   # every keyframe of a readable video is written (bad ones: `bad`)
    out = {"video_id": task["video_id"], "keyframes": len(task["keyframes"]), "bad": None,
           "records": []}
    try:
        windows, fps, height, width = frame_source.read_windows(
            task["source"], [k["timestamp"] for k in task["keyframes"]], **task["read"])
    except frame_source.BadVideo as e:
        out["bad"] = [e.reason, str(e)]
        return out
    for k, frames in zip(task["keyframes"], windows):
        record = tfrecords.encode_example(
            frames=frames, keyframe_frame=task["read"]["num_frames"] // 2, fps=fps,
            height=height, width=width, **k)
        out["records"].append((k["keyframe_index"] * num_shards // num_keys,
                               k["keyframe_index"], record))
    return out


class SplitPlan:
    """What `plan_split` found: everything but the frames. Attributes: split, ava_dir,
    paths (role -> file), fps, fps_source, label_map, rows (role -> RowReport), kept_rows,
    num_keys, videos (sorted ids), missing (ids without frames), tasks (one per video with
    frames: video_id, source, keyframes, read options), shards (paths), options (the
    manifest's), skip_bad."""

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def task_options(self) -> dict:
        """`video_output`'s keyword arguments."""
        return dict(skip_bad=self.skip_bad, num_shards=len(self.shards), num_keys=self.num_keys)


def plan_split(ava_dir: str, split: str, out: str, *, num_shards: int | None = None,
               num_frames: int = 32, fps: float | None = None, max_side: int | None = None,
               timestamp_offset: float = 0.0, skip_bad: bool = False, **files) -> SplitPlan:
    """Reads and validates the split's annotations and finds its videos (arguments as
    `convert_split`). Raises ava.AvaFormatError or ConversionError."""
    paths = find_split_files(ava_dir, split, **files)
    fps, fps_source = frame_folder_fps(ava_dir, fps)
    label_map = ava.read_label_map(paths["label_map"])
    # Unknown action ids are counted, not fatal: real AVA's CSVs hold 80 classes, the
    # ActivityNet label map 60; SlowFast's AVA loader likewise ignores the other 20.
    gt, gt_report = ava.read_annotations(paths["annotations"], skip_bad=skip_bad)
    rows = {"annotations": gt_report}
    excluded = (ava.read_excluded_timestamps(paths["excluded"]) if paths["excluded"] else set())
    dets = {}
    for role, reader in (("person_detections", ava.read_person_detections),
                         ("object_detections", ava.read_object_detections)):
        if paths[role]:
            dets[role], rows[role] = reader(paths[role], skip_bad=skip_bad)
    classes = label_map.index_of(gt.action_id)
    in_map = (classes >= 0) | np.isnan(gt.boxes).any(axis=1)
    is_excl = np.array([(v, int(t)) in excluded for v, t in zip(gt.video_id, gt.timestamp)], bool)
    gt_report.rejected["excluded timestamp"] += int(is_excl.sum())
    gt_report.rejected["action id not in label map"] += int((~in_map & ~is_excl).sum())
    groups = _by_key(gt)
    keep_rows = set(np.nonzero(in_map & ~is_excl)[0].tolist())
    groups = {k: [i for i in v if i in keep_rows] for k, v in groups.items()}
    groups = {k: v for k, v in groups.items() if v}
    keys = sorted(groups)
    if not keys:
        raise ConversionError(f"{paths['annotations']}: no keyframes left to convert")
    videos = sorted({v for v, _ in keys})
    video_index = {v: i for i, v in enumerate(videos)}
    det_groups = {role: _by_key(d) for role, d in dets.items()}

    # Every video needs frames: check them all up front so one message lists what is missing.
    sources = {v: frame_source.find_source(ava_dir, v) for v in videos}
    missing = [v for v in videos if sources[v] is None]
    if missing and not skip_bad:
        raise ConversionError(
            f"{len(missing)} video(s) of {paths['annotations']} have no frame folder "
            f"{os.path.join(ava_dir, 'frames', missing[0])}/ and no video "
            f"{os.path.join(ava_dir, 'videos', missing[0])}.*: {', '.join(missing[:5])}"
            + (" ..." if len(missing) > 5 else "") + " (use --skip_bad to skip them)")
    tasks = []
    for k_index, (v, t) in enumerate(keys):
        if sources[v] is None:
            continue
        if not tasks or tasks[-1]["video_id"] != v:
            tasks.append({"video_id": v, "source": sources[v], "keyframes": [], "read": dict(
                num_frames=num_frames, fps=fps, max_side=max_side,
                offset=timestamp_offset)})
        boxes, labels, pids = _keyframe(groups[(v, t)], gt, classes, label_map.num_classes)
        k = dict(video_id=v, video_index=video_index[v], timestamp=int(t),
                 keyframe_index=k_index, num_classes=label_map.num_classes, boxes=boxes,
                 labels=labels, person_ids=pids)
        if "person_detections" in dets:
            d, idx = dets["person_detections"], det_groups["person_detections"].get((v, t), [])
            k.update(proposals=d.boxes[idx], proposal_scores=d.score[idx])
        if "object_detections" in dets:
            d, idx = dets["object_detections"], det_groups["object_detections"].get((v, t), [])
            k.update(objects=d.boxes[idx], object_classes=d.action_id[idx],
                     object_scores=d.score[idx])
        tasks[-1]["keyframes"].append(k)

    return SplitPlan(
        split=split, ava_dir=ava_dir, paths=paths, fps=fps, fps_source=fps_source,
        label_map=label_map, rows=rows, kept_rows=len(keep_rows), num_keys=len(keys),
        videos=videos, missing=missing, tasks=tasks, shards=shard_paths(out, num_shards),
        skip_bad=skip_bad, missing_keyframes=sum(1 for v, _ in keys if sources[v] is None),
        options=dict(num_frames=num_frames, fps_for_frame_folders=fps, fps_source=fps_source,
                     max_side=max_side, timestamp_offset=timestamp_offset, skip_bad=skip_bad))


def bad_video_error(outcome: dict) -> ConversionError:
    """The error of a bad video (`video_output`'s "bad") when bad videos are not skipped."""
    return ConversionError(outcome["bad"][1] + " (use --skip_bad to skip bad videos)")


def temp_path(shard: str) -> str:
    """Where a shard is written before it is complete."""
    return shard + ".tmp"


def finish_split(plan: SplitPlan, outcomes, counts) -> dict:
    """Writes `<split>_manifest.json` beside the shards -> the manifest (+ manifest_path).

    outcomes: `video_output` results of `plan.tasks`, in that order (records not needed);
    counts: records written per shard. Raises the first bad video's ConversionError unless
    `plan.skip_bad`."""
    rejected_files = collections.defaultdict(list)
    rejected_keyframes = collections.Counter()
    for v in plan.missing:
        rejected_files["missing frame folder or video"].append(v)
    if plan.missing_keyframes:
        rejected_keyframes["missing frame folder or video"] += plan.missing_keyframes
    for outcome in outcomes:
        if outcome["bad"]:
            if not plan.skip_bad:
                raise bad_video_error(outcome)
            rejected_files[outcome["bad"][0]].append(outcome["video_id"])
            rejected_keyframes[outcome["bad"][0]] += outcome["keyframes"]
    manifest = {
        "split": plan.split,
        "ava_dir": os.path.abspath(plan.ava_dir),
        "inputs": {role: _input_record(p) for role, p in sorted(plan.paths.items()) if p},
        "options": plan.options,
        "label_map": {"num_classes": plan.label_map.num_classes,
                      "ids": list(plan.label_map.ids)},
        "rows": {role: {"path": os.path.abspath(r.path), "kept": int(r.kept),
                        "rejected": {k: v for k, v in sorted(r.rejected.items()) if v},
                        "examples": r.examples}
                 for role, r in plan.rows.items()},
        "videos": {"total": len(plan.videos), "written": len(plan.videos) - sum(
            len(v) for v in rejected_files.values())},
        "files_rejected": {r: sorted(v) for r, v in sorted(rejected_files.items())},
        "keyframes": {"total": plan.num_keys, "written": sum(counts),
                      "rejected": dict(sorted(rejected_keyframes.items()))},
        "shards": [{"path": os.path.abspath(p), "records": c}
                   for p, c in zip(plan.shards, counts)],
    }
    manifest["rows"]["annotations"]["kept"] = int(plan.kept_rows)
    path = os.path.join(os.path.dirname(os.path.abspath(plan.shards[0])),
                        f"{plan.split}_manifest.json")
    with open(path, "w") as f:
        json.dump(manifest, f, indent=1)
    manifest["manifest_path"] = path
    return manifest


def _pool_task(args):
    task, options = args
    return video_output(task, **options)


def convert_split(ava_dir: str, split: str, out: str, *, num_shards: int | None = None,
                  num_frames: int = 32, fps: float | None = None, max_side: int | None = None,
                  timestamp_offset: float = 0.0, skip_bad: bool = False, num_workers: int = 2,
                  progress: bool = True, **files) -> dict:
    """Converts one split; returns the manifest (also written as `<first shard dir>/
    <split>_manifest.json`).

    Args:
      ava_dir: AVA-format root (annotations/, frames/VID/ or videos/VID.*).
      split: "train", "val", ...: picks annotations/ava_<split>*.csv and friends.
      out: shard path spec (see `shard_paths`). num_shards: N when `out` does not say.
      num_frames: W, the frames stored per keyframe (centred, edge frames repeated).
      fps: frame rate of JPEG folders (default: `frame_folder_fps`); video files use their own.
      max_side: downscale frames whose longer side exceeds this. timestamp_offset: seconds
        shown by frame 1 (0 for whole videos).
      skip_bad: skip and count bad rows and bad videos instead of failing on the first.
      num_workers: processes decoding videos. progress: show a progress bar.
      **files: explicit paths overriding `find_split_files` roles.
    Raises:
      ava.AvaFormatError (bad rows, FILE:LINE listed) or ConversionError (bad videos/options).
    """
    plan = plan_split(ava_dir, split, out, num_shards=num_shards, num_frames=num_frames,
                      fps=fps, max_side=max_side, timestamp_offset=timestamp_offset,
                      skip_bad=skip_bad, **files)
    shards, tasks = plan.shards, plan.tasks
    os.makedirs(os.path.dirname(os.path.abspath(shards[0])), exist_ok=True)
    counts = [0] * len(shards)
    writers = [tf.io.TFRecordWriter(temp_path(p)) for p in shards]
    bar = Progress(sum(len(t["keyframes"]) for t in tasks), f"{split}: keyframes", progress)
    pool = (multiprocessing.get_context("fork").Pool(num_workers) if num_workers > 1 else None)
    work = [(t, plan.task_options()) for t in tasks]
    outcomes = []
    ok = False
    try:
        results = pool.imap(_pool_task, work) if pool else map(_pool_task, work)
        for outcome in results:
            if outcome["bad"] and not skip_bad:
                raise bad_video_error(outcome)
            for shard, _, record in outcome.pop("records"):
                writers[shard].write(record)
                counts[shard] += 1
            outcomes.append(outcome)
            bar.update(outcome["keyframes"])
        ok = True
    finally:
        bar.close()
        if pool:
            pool.terminate()
        for w, p in zip(writers, shards):
            w.close()
            if ok:
                os.replace(temp_path(p), p)
            else:
                os.remove(temp_path(p))
    return finish_split(plan, outcomes, counts)
