"""AVA-format folder -> sharded TFRecords of keyframe clips + a JSON manifest.

Library side of `tools/create_ava_tfrecords.py`. One record per keyframe (`action_tx.data.
tfrecords` layout); keyframes in (video_id, timestamp) order, shards hold contiguous runs of
them, so the same inputs give byte-identical shards whatever the number of workers.
`video_index` is the position of the video id in the split's sorted ids and `keyframe_index` the
position of the keyframe in the split's sorted keyframes (both counted before any video is
rejected, so they do not depend on --skip_bad).

Every stored frame is decoded once, in the main process, with the decoder of the training
pipeline (`tf.io.decode_jpeg(..., channels=3)`); a frame that is missing, does not decode or
has another size than its video rejects the keyframes whose windows hold it. Shards are
written as `DIR/.tmp-NAME` and renamed when complete, so `NAME.tfrecord-*` never matches an
unfinished file; shards of another count under the same name are refused (or removed).
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


def read_video(task):
    """Worker: one video's keyframes -> ("ok", records, frames) or ("bad", reason, message).
    records: one per keyframe, None where a frame of its window is missing or unreadable;
    frames: the `frame_source.VideoFrames` (each frame once) for the main process to decode."""
    try:
        video = frame_source.read_frames(
            task["source"], [k["timestamp"] for k in task["keyframes"]], **task["read"]
        )
    except frame_source.BadVideo as e:
        return "bad", e.reason, str(e)
    records = []
    for k, window in zip(task["keyframes"], video.windows):
        if any(video.problems[i] for i in window):
            records.append(None)
            continue
        records.append(
            tfrecords.encode_example(
                frames=[video.frames[i] for i in window],
                keyframe_frame=task["read"]["num_frames"] // 2,
                fps=video.fps,
                height=video.height,
                width=video.width,
                **k,
            )
        )
    return "ok", records, video


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
    fps: float | None = None,
    max_side: int | None = None,
    timestamp_offset: float = 0.0,
    skip_bad: bool = False,
    overwrite: bool = False,
    **files,
) -> SplitPlan:
    """Reads and validates the split's annotations, finds its videos and checks the shard
    names (arguments as `convert_split`). Raises ava.AvaFormatError or ConversionError."""
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
            num_frames=num_frames,
            fps_for_frame_folders=fps,
            fps_source=fps_source,
            max_side=max_side,
            timestamp_offset=timestamp_offset,
            skip_bad=skip_bad,
        ),
    )


def video_outcome(
    task: dict, result, *, skip_bad: bool, num_shards: int, num_keys: int, ava_dir: str
) -> dict:
    """One video's `read_video` result -> {"video_id", "keyframes": count, "bad": None or
    [reason, message] (a bad video), "error": None or the message of its first bad frame
    (when not skip_bad), "rejected_keyframes": {reason: n}, "rejected_frames": {reason:
    [frame paths]}, "records": [(shard, keyframe_index, record)]}; JSON-able but for the
    records. Decodes the stored frames with TensorFlow (`frame_source.check_frames`): the
    process pool calls it in the main process, the Beam pipeline in its workers. A keyframe
    goes to shard keyframe_index * num_shards // num_keys (contiguous runs of keyframes)."""
    out = {
        "video_id": task["video_id"],
        "keyframes": len(task["keyframes"]),
        "bad": None,
        "error": None,
        "rejected_keyframes": {},
        "rejected_frames": {},
        "records": [],
    }
    if result[0] == "bad":
        out["bad"] = [result[1], result[2]]
        return out
    _, records, video = result
    frame_source.check_frames(video, {i for w, r in zip(video.windows, records) if r for i in w})
    rejected_frames = collections.defaultdict(set)
    for k, record, window in zip(task["keyframes"], records, video.windows):
        bad = next((i for i in window if video.problems[i]), None)
        if bad is not None:
            reason, message = video.problems[bad]
            if not skip_bad:
                out["error"] = (
                    f"{message}; keyframe {k['video_id']},{k['timestamp']} needs it "
                    "(use --skip_bad to skip the keyframes whose windows hold it)"
                )
                out["records"] = []
                return out
            out["rejected_keyframes"][reason] = out["rejected_keyframes"].get(reason, 0) + 1
            rejected_frames[reason].add(os.path.relpath(video.names[bad], ava_dir))
            continue
        out["records"].append(
            (k["keyframe_index"] * num_shards // num_keys, k["keyframe_index"], record)
        )
    out["rejected_frames"] = {r: sorted(v) for r, v in rejected_frames.items()}
    return out


def outcome_error(outcome: dict) -> ConversionError | None:
    """The error that stops a conversion at this video (None: it goes on)."""
    if outcome["bad"]:
        return ConversionError(outcome["bad"][1] + " (use --skip_bad to skip bad videos)")
    return ConversionError(outcome["error"]) if outcome["error"] else None


def temp_path(shard: str) -> str:
    """Where a shard is written until it is complete (hidden from NAME.tfrecord-*)."""
    return os.path.join(os.path.dirname(shard), tfrecords.TEMP_PREFIX + os.path.basename(shard))


def finish_split(plan: SplitPlan, outcomes, counts) -> dict:
    """Removes the stale shards and writes `<split>_manifest.json` beside the shards -> the
    manifest (+ manifest_path). outcomes: `video_outcome`s of `plan.tasks` in that order
    (records not needed); counts: records written per shard. Raises the first video's
    ConversionError (`outcome_error`) unless skip_bad."""
    rejected_files = collections.defaultdict(list)
    rejected_keyframes = collections.Counter()
    rejected_frames = collections.defaultdict(set)
    for v in plan.missing:
        rejected_files["missing frame folder or video"].append(v)
    if plan.missing_keyframes:
        rejected_keyframes["missing frame folder or video"] += plan.missing_keyframes
    for outcome in outcomes:
        if (error := outcome_error(outcome)) is not None and (
            outcome["error"] or not plan.skip_bad
        ):
            raise error
        if outcome["bad"]:
            rejected_files[outcome["bad"][0]].append(outcome["video_id"])
            rejected_keyframes[outcome["bad"][0]] += outcome["keyframes"]
        rejected_keyframes.update(outcome["rejected_keyframes"])
        for reason, names in outcome["rejected_frames"].items():
            rejected_frames[reason].update(names)
    for p in plan.stale:  # only with overwrite, and only once the new shards are complete
        os.remove(p)
    videos, shards = plan.videos, plan.shards
    manifest = {
        "split": plan.split,
        "ava_dir": os.path.abspath(plan.ava_dir),
        "inputs": {role: _input_record(p) for role, p in sorted(plan.paths.items()) if p},
        "options": plan.options,
        "label_map": {"num_classes": plan.label_map.num_classes, "ids": list(plan.label_map.ids)},
        "rows": {
            role: {
                "path": os.path.abspath(r.path),
                "kept": int(r.kept),
                "rejected": {k: v for k, v in sorted(r.rejected.items()) if v},
                "examples": r.examples,
            }
            for role, r in plan.rows.items()
        },
        "videos": {
            "total": len(videos),
            "written": len(videos) - sum(len(v) for v in rejected_files.values()),
        },
        "files_rejected": {r: sorted(v) for r, v in sorted(rejected_files.items())},
        "frames_rejected": {r: sorted(v) for r, v in sorted(rejected_frames.items())},
        "keyframes": {
            "total": plan.num_keys,
            "written": sum(counts),
            "rejected": dict(sorted(rejected_keyframes.items())),
        },
        "shards": [{"path": os.path.abspath(p), "records": c} for p, c in zip(shards, counts)],
    }
    manifest["rows"]["annotations"]["kept"] = int(plan.kept_rows)
    path = os.path.join(os.path.dirname(os.path.abspath(shards[0])), f"{plan.split}_manifest.json")
    with open(path, "w") as f:
        json.dump(manifest, f, indent=1)
    manifest["manifest_path"] = path
    return manifest


def convert_split(
    ava_dir: str,
    split: str,
    out: str,
    *,
    num_shards: int | None = None,
    num_frames: int = 32,
    fps: float | None = None,
    max_side: int | None = None,
    timestamp_offset: float = 0.0,
    skip_bad: bool = False,
    num_workers: int = 2,
    progress: bool = True,
    overwrite: bool = False,
    **files,
) -> dict:
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
      skip_bad: skip and count bad rows, bad videos and the keyframes whose windows hold a
        missing, undecodable or odd-sized frame, instead of failing on the first.
      num_workers: processes decoding videos. progress: show a progress bar.
      overwrite: remove shards of the same name and another count (e.g. an earlier @2 when
        writing @3) after writing; without it such shards are an error.
      **files: explicit paths overriding `find_split_files` roles.
    Raises:
      ava.AvaFormatError (bad rows, FILE:LINE listed) or ConversionError (bad videos, frames
      or options; shards of another count).
    """
    plan = plan_split(
        ava_dir,
        split,
        out,
        num_shards=num_shards,
        num_frames=num_frames,
        fps=fps,
        max_side=max_side,
        timestamp_offset=timestamp_offset,
        skip_bad=skip_bad,
        overwrite=overwrite,
        **files,
    )
    shards, tasks = plan.shards, plan.tasks
    os.makedirs(os.path.dirname(os.path.abspath(shards[0])), exist_ok=True)
    counts = [0] * len(shards)
    writers = [tf.io.TFRecordWriter(temp_path(p)) for p in shards]
    bar = Progress(sum(len(t["keyframes"]) for t in tasks), f"{split}: keyframes", progress)
    pool = multiprocessing.get_context("fork").Pool(num_workers) if num_workers > 1 else None
    outcomes = []
    ok = False
    try:
        results = pool.imap(read_video, tasks) if pool else map(read_video, tasks)
        for task, result in zip(tasks, results):
            # Frames decode here, in the main process (TensorFlow is not fork-safe).
            outcome = video_outcome(task, result, **plan.task_options())
            error = outcome_error(outcome)
            if error is not None and (outcome["error"] or not skip_bad):
                raise error
            for shard, _, record in outcome.pop("records"):
                writers[shard].write(record)
                counts[shard] += 1
            outcomes.append(outcome)
            bar.update(len(task["keyframes"]))
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


def _counts(rejected: dict) -> str:
    total = sum(rejected.values())
    return f"{total} (" + ", ".join(f"{r}: {n}" for r, n in sorted(rejected.items())) + ")"


def summary(manifest: dict) -> str:
    """One line for the end of a conversion: what was written, and every rejection the
    manifest counts (keyframes, then the rows of each input CSV, then frames) with its reason."""
    k = manifest["keyframes"]
    rejected = [f"keyframes {_counts(k['rejected']) if k['rejected'] else 'none'}"]
    for role, r in manifest["rows"].items():
        if r["rejected"]:
            rejected.append(f"{role} rows {_counts(r['rejected'])}")
    frames = {r: len(v) for r, v in manifest.get("frames_rejected", {}).items()}
    if frames:
        rejected.append(f"frames {_counts(frames)}")
    return (
        f"wrote {k['written']} of {k['total']} keyframes to {len(manifest['shards'])} "
        f"shard(s); rejected: {'; '.join(rejected)}; manifest: {manifest['manifest_path']}"
    )
