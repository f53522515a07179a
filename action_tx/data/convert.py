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

Planning (input files, shard names, keyframes: `plan_split`) is in `action_tx.data.convert_plan`,
whose public names are re-exported here; this module reads and decodes the frames
(`read_video`, `video_outcome`), writes the shards (`convert_split`) and the manifest
(`finish_split`).
"""

from __future__ import annotations

import collections
import hashlib
import json
import multiprocessing
import os

import tensorflow as tf

from action_tx.data import chunks, frame_source, tfrecords
from action_tx.data.convert_plan import (  # noqa: F401  (this module's API, re-exported)
    DEFAULT_FPS,
    ConversionError,
    SplitPlan,
    find_split_files,
    frame_folder_fps,
    plan_split,
    shard_paths,
    shard_template,
)
from action_tx.progress import Progress


def _input_record(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"path": os.path.abspath(path), "bytes": os.path.getsize(path), "sha256": h.hexdigest()}


def read_video(task):
    """Worker: one video's keyframes -> ("ok", records, frames) or ("bad", reason, message).
    records: one per keyframe, None where a frame of its window is missing or unreadable
    (with task["keyframes_per_record"] > 1, True for the others: chunks are encoded once the
    rejected keyframes are known, by `video_outcome`); frames: the `frame_source.VideoFrames`
    (each frame once) for the main process to decode."""
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
        if task.get("keyframes_per_record", 1) > 1:
            records.append(True)
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


def video_outcome(
    task: dict, result, *, skip_bad: bool, num_shards: int, num_keys: int, ava_dir: str
) -> dict:
    """One video's `read_video` result -> {"video_id", "keyframes": count, "bad": None or
    [reason, message] (a bad video), "error": None or the message of its first bad frame
    (when not skip_bad), "rejected_keyframes": {reason: n}, "rejected_frames": {reason:
    [frame paths]}, "records": [(shard, keyframe_index, record, keyframes in it)]};
    JSON-able but for the records. Decodes the stored frames with TensorFlow
    (`frame_source.check_frames`): the process pool calls it in the main process, the Beam
    pipeline in its workers. A record goes to shard keyframe_index * num_shards // num_keys
    of its first keyframe (contiguous runs of keyframes, the same for any worker count).
    With task["keyframes_per_record"] = K > 1 the video's kept keyframes (the rejected ones
    drop out first) are grouped K at a time into layout-2 records (`_chunk_records`)."""
    out = {
        "video_id": task["video_id"],
        "keyframes": len(task["keyframes"]),
        "bad": None,
        "error": None,
        "rejected_keyframes": {},
        "rejected_frames": {},
        "records": [],
        "frames": {"stored": 0, "distinct": 0},
    }
    if result[0] == "bad":
        out["bad"] = [result[1], result[2]]
        return out
    _, records, video = result
    frame_source.check_frames(video, {i for w, r in zip(video.windows, records) if r for i in w})
    rejected_frames = collections.defaultdict(set)
    kept = []
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
        kept.append((k, record, window))
    size = task.get("keyframes_per_record", 1)
    out["frames"] = {
        "stored": _stored_frames([window for _, _, window in kept], size),
        "distinct": len({i for _, _, window in kept for i in window}),
    }
    if size == 1:
        records = [(k["keyframe_index"], record, 1) for k, record, _ in kept]
    else:
        records = _chunk_records(kept, video, size, task["read"]["num_frames"] // 2)
    out["records"] = [(i * num_shards // num_keys, i, r, n) for i, r, n in records]
    out["rejected_frames"] = {r: sorted(v) for r, v in rejected_frames.items()}
    return out


def _stored_frames(windows, size: int) -> int:
    """Frames the records of these kept windows store: a layout-1 record (size 1) its whole
    window, a layout-2 record the union of its `size` windows."""
    if size == 1:
        return sum(len(w) for w in windows)
    return sum(
        len({i for w in windows[s : s + size] for i in w}) for s in range(0, len(windows), size)
    )


def _chunk_records(kept, video, size: int, keyframe_frame: int) -> list:
    """A video's kept (keyframe, _, window) -> [(first keyframe_index, layout-2 record, K)],
    K = `size` consecutive kept keyframes a record (fewer in the last); each record stores the
    union of its windows once, in the video's frame order."""
    out = []
    for start in range(0, len(kept), size):
        part = kept[start : start + size]
        used = sorted({i for _, _, window in part for i in window})
        position = {i: p for p, i in enumerate(used)}
        first = part[0][0]
        record = chunks.encode_chunk(
            video_id=first["video_id"],
            video_index=first["video_index"],
            fps=video.fps,
            height=video.height,
            width=video.width,
            num_classes=first["num_classes"],
            frames=[video.frames[i] for i in used],
            keyframes=[
                dict(
                    {n: v for n, v in k.items() if n not in _PER_VIDEO},
                    window=[position[i] for i in window],
                    keyframe_frame=keyframe_frame,
                )
                for k, _, window in part
            ],
        )
        out.append((first["keyframe_index"], record, len(part)))
    return out


_PER_VIDEO = ("video_id", "video_index", "num_classes")


def outcome_error(outcome: dict) -> ConversionError | None:
    """The error that stops a conversion at this video (None: it goes on)."""
    if outcome["bad"]:
        return ConversionError(outcome["bad"][1] + " (use --skip_bad to skip bad videos)")
    return ConversionError(outcome["error"]) if outcome["error"] else None


def temp_path(shard: str) -> str:
    """Where a shard is written until it is complete (hidden from NAME.tfrecord-*)."""
    return os.path.join(os.path.dirname(shard), tfrecords.TEMP_PREFIX + os.path.basename(shard))


def finish_split(plan: SplitPlan, outcomes, counts, keyframe_counts) -> dict:
    """Removes the stale shards and writes `<split>_manifest.json` beside the shards -> the
    manifest (+ manifest_path). outcomes: `video_outcome`s of `plan.tasks` in that order
    (records not needed); counts, keyframe_counts: records and keyframes written per shard
    (equal in layout 1). Raises the first video's ConversionError (`outcome_error`) unless
    skip_bad."""
    rejected_files = collections.defaultdict(list)
    rejected_keyframes = collections.Counter()
    rejected_frames = collections.defaultdict(set)
    for v in plan.missing:
        rejected_files["missing frame folder or video"].append(v)
    if plan.missing_keyframes:
        rejected_keyframes["missing frame folder or video"] += plan.missing_keyframes
    frames = collections.Counter()
    for outcome in outcomes:
        frames.update(outcome["frames"])
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
        # JPEG frames the records store, and the distinct frames of the videos among them:
        # their ratio is what the layout costs (a layout-1 window repeats its neighbours').
        "frames": {"stored": frames["stored"], "distinct": frames["distinct"]},
        "keyframes": {
            "total": plan.num_keys,
            "written": sum(keyframe_counts),
            "rejected": dict(sorted(rejected_keyframes.items())),
        },
        "shards": [
            {"path": os.path.abspath(p), "records": c, "keyframes": n}
            for p, c, n in zip(shards, counts, keyframe_counts)
        ],
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
    keyframes_per_record: int = 1,
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
      num_frames: W, the frames of each keyframe's window (centred, edge frames repeated).
      keyframes_per_record: K. 1: one layout-1 record per keyframe (`tfrecords`), its window
        stored whole; K > 1: layout-2 records (`chunks`) of K consecutive kept keyframes of
        one video, each frame stored once.
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
        keyframes_per_record=keyframes_per_record,
        fps=fps,
        max_side=max_side,
        timestamp_offset=timestamp_offset,
        skip_bad=skip_bad,
        overwrite=overwrite,
        **files,
    )
    shards, tasks = plan.shards, plan.tasks
    os.makedirs(os.path.dirname(os.path.abspath(shards[0])), exist_ok=True)
    counts, keyframe_counts = [0] * len(shards), [0] * len(shards)
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
            for shard, _, record, n in outcome.pop("records"):
                writers[shard].write(record)
                counts[shard] += 1
                keyframe_counts[shard] += n
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
    return finish_split(plan, outcomes, counts, keyframe_counts)


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
    stored = ""
    if "frames" in manifest and manifest["frames"]["distinct"]:
        f = manifest["frames"]
        stored = (
            f"; {f['stored']} frames stored for {f['distinct']} distinct "
            f"({duplication(manifest):.2f}x)"
        )
    return (
        f"wrote {k['written']} of {k['total']} keyframes to {len(manifest['shards'])} "
        f"shard(s){stored}; rejected: {'; '.join(rejected)}; manifest: "
        f"{manifest['manifest_path']}"
    )


def duplication(manifest: dict) -> float:
    """Frames stored per distinct frame (1.0 when the manifest does not count them)."""
    f = manifest.get("frames") or {}
    return f["stored"] / f["distinct"] if f.get("distinct") else 1.0
