"""Planning an AVA conversion: the split's input files, shard names and keyframes.

The first half of `action_tx.data.convert` (which re-exports these names): `plan_split` reads
and validates the split's annotation CSVs, label map and detections, finds every video's frames
and checks the shard names, and returns a `SplitPlan` with one task per video (its keyframes'
boxes, labels and proposals), all before any frame is read. `video_index` is the position of
the video id in the split's sorted ids and `keyframe_index` the position of the keyframe in the
split's sorted keyframes (both counted before any video is rejected, so they do not depend on
--skip_bad).
"""

from __future__ import annotations

import collections
import glob
import os
import re

import numpy as np

from action_tx.data import ava, frame_source, tfrecords

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
        "annotations": lambda: _one(
            os.path.join(ann, f"ava_{split}*.csv"), "annotations", True, exclude="excluded"
        ),
        "label_map": lambda: (
            maps[0] if len(maps) == 1 else _one(os.path.join(ann, "*.pbtxt"), "label map", True)
        ),
        "excluded": lambda: _one(
            os.path.join(ann, f"*{split}_excluded_timestamps*.csv"), "excluded timestamps", False
        ),
        "person_detections": lambda: _one(
            os.path.join(ann, f"person_detections_{split}*.csv"), "person detections", False
        ),
        "object_detections": lambda: _one(
            os.path.join(ann, f"object_detections_{split}*.csv"), "object detections", False
        ),
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


def _stale_shards(template: str, shards: list[str]) -> list[str]:
    """Files beside the shards that a run with another shard count would have written (or
    left unfinished): the shard template with its %d fields as digits, and NAME-00000-of-00002
    style names, with or without the temporary prefix."""
    folder = os.path.dirname(os.path.abspath(shards[0]))
    base = os.path.basename(template)
    parts = re.split(r"%0?\d*d", base)
    pattern = r"\d+".join(re.escape(p) for p in parts)
    plain = re.escape(re.sub(r"-%05d-of-%05d$", "", base)) + r"-\d{5}-of-\d{5}"
    ours = {prefix + os.path.basename(p) for p in shards for prefix in ("", tfrecords.TEMP_PREFIX)}
    names = os.listdir(folder) if os.path.isdir(folder) else []
    return sorted(
        os.path.join(folder, n)
        for n in names
        if n not in ours
        and any(
            re.fullmatch(prefix + p, n)
            for p in (pattern, plain)
            for prefix in ("", re.escape(tfrecords.TEMP_PREFIX))
        )
    )


def shard_template(out: str, num_shards: int | None = None) -> str:
    """The shard name `shard_paths` formats with (i, N) (the plain path for one shard)."""
    m = re.fullmatch(r"(.*)@(\d+)", out)
    if m:
        return m.group(1) + "-%05d-of-%05d"
    if "%" not in out and (num_shards or 1) > 1:
        return out + "-%05d-of-%05d"
    return out


class SplitPlan:
    """What `plan_split` found: everything but the frames. Attributes: split, ava_dir, paths
    (role -> file), label_map, rows (role -> RowReport), kept_rows, num_keys, videos (sorted
    ids), missing (ids without frames) and missing_keyframes (theirs), tasks (one per video
    with frames: video_id, source, keyframes, read options), shards, stale (shards of another
    count, removed once the new ones are complete), options (the manifest's), skip_bad."""

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def task_options(self) -> dict:
        """`video_outcome`'s keyword arguments (small: what a Beam worker receives)."""
        return dict(
            skip_bad=self.skip_bad,
            num_shards=len(self.shards),
            num_keys=self.num_keys,
            ava_dir=self.ava_dir,
        )


def plan_split(
    ava_dir: str,
    split: str,
    out: str,
    *,
    num_shards: int | None = None,
    num_frames: int = 32,
    keyframes_per_record: int = 1,
    fps: float | None = None,
    max_side: int | None = None,
    timestamp_offset: float = 0.0,
    skip_bad: bool = False,
    overwrite: bool = False,
    **files,
) -> SplitPlan:
    """Reads and validates the split's annotations, finds its videos and checks the shard
    names (arguments as `convert_split`). Raises ava.AvaFormatError or ConversionError."""
    if keyframes_per_record < 1:
        raise ConversionError(f"--keyframes_per_record must be >= 1, got {keyframes_per_record}")
    shards = shard_paths(out, num_shards)
    stale = _stale_shards(shard_template(out, num_shards), shards)
    if stale and not overwrite:
        raise ConversionError(
            f"{os.path.dirname(stale[0])} holds {len(stale)} shard(s) of an earlier conversion "
            f"with another shard count ({', '.join(os.path.basename(p) for p in stale[:3])}"
            + (" ..." if len(stale) > 3 else "")
            + "): a glob of the shards would read old and "
            "new together; delete them, or pass --overwrite to have them removed"
        )
    paths = find_split_files(ava_dir, split, **files)
    fps, fps_source = frame_folder_fps(ava_dir, fps)
    label_map = ava.read_label_map(paths["label_map"])
    # Unknown action ids are counted, not fatal: real AVA's CSVs hold 80 classes, the
    # ActivityNet label map 60; SlowFast's AVA loader likewise ignores the other 20.
    gt, gt_report = ava.read_annotations(paths["annotations"], skip_bad=skip_bad)
    rows = {"annotations": gt_report}
    excluded = ava.read_excluded_timestamps(paths["excluded"]) if paths["excluded"] else set()
    dets = {}
    for role, reader in (
        ("person_detections", ava.read_person_detections),
        ("object_detections", ava.read_object_detections),
    ):
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
            + (" ..." if len(missing) > 5 else "")
            + " (use --skip_bad to skip them)"
        )
    tasks = []
    for k_index, (v, t) in enumerate(keys):
        if sources[v] is None:
            continue
        if not tasks or tasks[-1]["video_id"] != v:
            tasks.append(
                {
                    "video_id": v,
                    "source": sources[v],
                    "keyframes": [],
                    "keyframes_per_record": keyframes_per_record,
                    "read": dict(
                        num_frames=num_frames, fps=fps, max_side=max_side, offset=timestamp_offset
                    ),
                }
            )
        boxes, labels, pids = _keyframe(groups[(v, t)], gt, classes, label_map.num_classes)
        k = dict(
            video_id=v,
            video_index=video_index[v],
            timestamp=int(t),
            keyframe_index=k_index,
            num_classes=label_map.num_classes,
            boxes=boxes,
            labels=labels,
            person_ids=pids,
        )
        if "person_detections" in dets:
            d, idx = dets["person_detections"], det_groups["person_detections"].get((v, t), [])
            k.update(proposals=d.boxes[idx], proposal_scores=d.score[idx])
        if "object_detections" in dets:
            d, idx = dets["object_detections"], det_groups["object_detections"].get((v, t), [])
            k.update(
                objects=d.boxes[idx], object_classes=d.action_id[idx], object_scores=d.score[idx]
            )
        tasks[-1]["keyframes"].append(k)

    return SplitPlan(
        split=split,
        ava_dir=ava_dir,
        paths=paths,
        label_map=label_map,
        rows=rows,
        kept_rows=len(keep_rows),
        num_keys=len(keys),
        videos=videos,
        missing=missing,
        missing_keyframes=sum(1 for v, _ in keys if sources[v] is None),
        tasks=tasks,
        shards=shards,
        stale=stale,
        skip_bad=skip_bad,
        options=dict(
            layout=1 if keyframes_per_record == 1 else 2,
            keyframes_per_record=keyframes_per_record,
            num_frames=num_frames,
            fps_for_frame_folders=fps,
            fps_source=fps_source,
            max_side=max_side,
            timestamp_offset=timestamp_offset,
            skip_bad=skip_bad,
        ),
    )
