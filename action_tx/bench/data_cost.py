"""Data cost at AVA scale: preparation and conversion rates, TFRecord bytes and their frame
duplication, measured on a generated movie and projected to AVA v2.2 train + val.

    python tools/benchmark.py --suite=data_cost [--quick] [--out=DIR]

For each configuration (`CONFIGS`: the papers' 64 stored frames at a 400 px short side, the
demo's 32 at 112 px, and the papers' again in layout 2, K = 10 keyframes a record) it writes
one generated movie (`data_cost_source`: 1/f texture, about the JPEG bytes per pixel of real
footage) at 854x480, 30 fps, and times, in this process:

1. preparation, `prepare.prepare` (the library of tools/prepare_ava.py) with one worker: the
   whole clip (Kinetics mode: the per-frame work of an AVA movie without its seek) resampled
   to 30 fps and scaled to the short side, as an H.264 video (the default format);
2. conversion, `convert.convert_split` with one process (the single-process converter; the
   Beam converter writes the same bytes from the same functions) of keyframes at every
   second of the clip (AVA's 1 Hz), W stored frames each.

Rates are per CPU second (user + system of every thread of this process): "per core", less
disturbed by other jobs than wall time, which is reported too. Then it reads the records back:
bytes per keyframe, and the DUPLICATION, the bytes stored per keyframe over the bytes of the
distinct JPEG frames the records reference (a frame is in the windows of every keyframe
within W / 2 frames of it, so at 30 fps and 1 Hz each frame is stored about W / 30 times).

Projection (`project`): AVA v2.2 train + val, 235 + 64 movies of 897 keyframes (902-1798 s)
and 27,000 prepared frames (900-1800 s at 30 fps) each: 268,203 keyframes. Disk: prepared
videos, TFRecords, and the records if each frame were stored once. CPU-hours: preparation +
conversion. Wall time on N workers assumes one worker per core and linear scaling over
independent movies (both tools parallelise by movie); the `*_movie_rounds` figure charges
whole movies per worker (ceil(299 / N) rounds). The report writes `data_cost.json` too; the
clips, prepared videos and records are removed once measured.
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import time

import tensorflow as tf

from action_tx.bench import data_cost_source
from action_tx.bench.runner import machine_info
from action_tx.data import chunks, convert, frame_source, prepare, tfrecords

FPS = 30
SOURCE = dict(width=854, height=480)  # a 480p movie; AVA's are mostly 480p-1080p
CONFIGS = {
    "paper": dict(short_side=400, num_frames=64),  # Action Transformer §4: 64 x 400 x 400
    "demo": dict(short_side=112, num_frames=32),  # configs/demo.flags: 112 px, 32 stored
    # The paper's input in layout 2 (`action_tx.data.chunks`): 10 keyframes a record, each
    # frame stored once.
    "paper_k10": dict(short_side=400, num_frames=64, keyframes_per_record=10),
}
SECONDS = 60  # the clip per configuration: 59 keyframes
QUICK = dict(
    seconds=4, source=dict(width=64, height=48), short_sides=dict(paper=32, demo=16, paper_k10=32)
)
AVA_V22 = dict(
    movies=235 + 64,  # train + val
    keyframes_per_movie=prepare.AVA_LAST_KEYFRAME - prepare.AVA_FIRST_KEYFRAME + 1,  # 897
    frames_per_movie=(prepare.AVA_LAST_KEYFRAME - prepare.AVA_FIRST_KEYFRAME + 4) * FPS,
)
WORKERS = (8, 64)
LABEL_MAP = 'item {\n  name: "stand"\n  id: 12\n}\n'


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime


def _timed(fn):
    """fn() -> (result, wall s, CPU s)."""
    wall, cpu = time.perf_counter(), _cpu_seconds()
    result = fn()
    return result, time.perf_counter() - wall, _cpu_seconds() - cpu


def duplication(windows) -> dict:
    """How often the records store each frame.

    Args:
      windows: per record, a list of (frame key, JPEG byte count) in window order; a key
        names one frame of one video (e.g. (video_id, frame index)) and has one byte count.
    Returns:
      dict: stored_frames, distinct_frames, stored_bytes, distinct_bytes (JPEG payload),
      frame_ratio = stored / distinct frames, byte_ratio = stored / distinct bytes.
    """
    sizes, stored_frames, stored_bytes = {}, 0, 0
    for window in windows:
        for key, size in window:
            if sizes.setdefault(key, size) != size:
                raise ValueError(f"frame {key} has {sizes[key]} and {size} bytes in two records")
            stored_frames += 1
            stored_bytes += size
    distinct_bytes = sum(sizes.values())
    return dict(
        stored_frames=stored_frames,
        distinct_frames=len(sizes),
        stored_bytes=stored_bytes,
        distinct_bytes=distinct_bytes,
        frame_ratio=stored_frames / len(sizes),
        byte_ratio=stored_bytes / distinct_bytes,
    )


def record_windows(shards, frame_counts: dict, offset: float = 0.0):
    """Records of `shards` (either layout) -> (the frames each record stores, for
    `duplication`; keyframes). frame_counts: video_id -> frames of its prepared video; a
    keyframe's window is `frame_source.window_indices` around its keyframe's frame, which is
    how the converter chose them; a layout-2 record stores the union of its windows once."""
    windows, keyframes = [], 0
    for path in shards:
        for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
            ex = tf.train.SequenceExample.FromString(raw)
            ctx = ex.context.feature
            vid = ctx[tfrecords.VIDEO_ID].bytes_list.value[0].decode()
            timestamps = ctx[tfrecords.TIMESTAMP].int64_list.value
            jpegs = [
                f.bytes_list.value[0]
                for f in ex.feature_lists.feature_list[tfrecords.FRAMES].feature
            ]
            # Layout 1: one window, every stored frame; layout 2: K windows into the frames.
            flat = ctx[chunks.WINDOW_FRAME].int64_list.value or range(len(jpegs))
            width = len(flat) // len(timestamps)
            stored = {}  # position in the record -> frame index in the video
            for k, t in enumerate(timestamps):
                center = frame_source.keyframe_frame(
                    t, ctx[tfrecords.FPS].float_list.value[0], offset
                )
                idx = frame_source.window_indices(center, width, frame_counts[vid] - 1)
                for p, i in zip(flat[k * width : (k + 1) * width], idx):
                    if stored.setdefault(p, i) != i:
                        raise ValueError(f"{path}: stored frame {p} is two frames of {vid}")
            windows.append([((vid, stored[p]), len(j)) for p, j in enumerate(jpegs)])
            keyframes += len(timestamps)
    return windows, keyframes


def measure(
    work_dir: str,
    *,
    short_side: int,
    num_frames: int,
    seconds: int,
    source: dict,
    keyframes_per_record: int = 1,
):
    """Prepares and converts one generated clip in `work_dir` (removed after) -> the measured
    figures (see the module doc). keyframes_per_record: K of the converter (> 1: layout 2)."""
    shutil.rmtree(work_dir, ignore_errors=True)
    movies, root = os.path.join(work_dir, "movies"), os.path.join(work_dir, "ava")
    data_cost_source.write_movie(os.path.join(movies, "clip.mp4"), seconds, FPS, **source)
    os.makedirs(os.path.join(root, "annotations"))
    csv = os.path.join(root, "annotations", "ava_train.csv")
    with open(csv, "w") as f:  # one person at every second of the clip
        f.writelines(f"clip,{t},0.2,0.1,0.6,0.9,12,0\n" for t in range(1, seconds))
    with open(os.path.join(root, "annotations", "action_list.pbtxt"), "w") as f:
        f.write(LABEL_MAP)

    result, prep_wall, prep_cpu = _timed(
        lambda: prepare.prepare(
            movies, [csv], root, short_side=short_side, fps=FPS, kinetics=True, progress=False
        )
    )
    if result.done != ["clip"]:
        raise RuntimeError(f"preparation failed: {result.messages}")
    video = prepare.output_path(root, "videos", "clip")
    frames, side = prepare.count_frames(video, "videos")
    manifest, conv_wall, conv_cpu = _timed(
        lambda: convert.convert_split(
            root,
            "train",
            os.path.join(work_dir, "records", "train.tfrecord"),
            num_frames=num_frames,
            keyframes_per_record=keyframes_per_record,
            timestamp_offset=0.0,
            num_workers=1,
            progress=False,
        )
    )
    shards = [s["path"] for s in manifest["shards"]]
    windows, keyframes = record_windows(shards, {"clip": frames})
    dup = duplication(windows)
    record_bytes = sum(os.path.getsize(p) for p in shards)
    video_bytes = os.path.getsize(video)
    shutil.rmtree(work_dir)  # the paper's records of one minute take 350 MB
    return dict(
        short_side=side,
        num_frames=num_frames,
        keyframes_per_record=keyframes_per_record,
        fps=FPS,
        source=dict(source, seconds=seconds),
        prepare=dict(
            frames=frames,
            wall_s=prep_wall,
            cpu_s=prep_cpu,
            frames_per_cpu_s=frames / prep_cpu,
            video_bytes_per_frame=video_bytes / frames,
        ),
        convert=dict(
            keyframes=keyframes,
            wall_s=conv_wall,
            cpu_s=conv_cpu,
            keyframes_per_cpu_s=keyframes / conv_cpu,
        ),
        record_bytes_per_keyframe=record_bytes / keyframes,
        jpeg_bytes_per_frame=dup["distinct_bytes"] / dup["distinct_frames"],
        stored_jpeg_bytes_per_keyframe=dup["stored_bytes"] / keyframes,
        distinct_jpeg_bytes_per_keyframe=dup["distinct_bytes"] / keyframes,
        # The issue's figure: all bytes stored per keyframe over the distinct frames' bytes.
        duplication=record_bytes / dup["distinct_bytes"],
        jpeg_duplication=dup["byte_ratio"],
        frame_duplication=dup["frame_ratio"],
        frames_stored=dup["stored_frames"],
        frames_distinct=dup["distinct_frames"],
    )


def distinct_frames(keyframes: int, num_frames: int, spacing: int) -> int:
    """Frames that W-frame windows around `keyframes` keyframes `spacing` frames apart
    reference, none at a video's end: W each when they do not overlap, else spacing more per
    keyframe after the first."""
    return (keyframes - 1) * min(num_frames, spacing) + num_frames


def project(
    m: dict, *, movies: int, keyframes_per_movie: int, frames_per_movie: int, workers=WORKERS
) -> dict:
    """Measured figures (`measure`) -> AVA-scale disk, CPU-hours and wall hours (linear in
    `movies`; see the module doc for the assumptions)."""
    keyframes = movies * keyframes_per_movie
    frames = movies * frames_per_movie
    prep_h = frames / m["prepare"]["frames_per_cpu_s"] / 3600
    conv_h = keyframes / m["convert"]["keyframes_per_cpu_s"] / 3600
    cpu_h = prep_h + conv_h
    jpeg = m["jpeg_bytes_per_frame"]
    # What a record holds besides its JPEGs: annotations, and the protobuf and TFRecord framing.
    overhead = m["record_bytes_per_keyframe"] - m["stored_jpeg_bytes_per_keyframe"]
    w, k = m["num_frames"], m.get("keyframes_per_record", 1)
    referenced = movies * distinct_frames(keyframes_per_movie, w, m["fps"])
    # Frames a movie's records store: each chunk of K keyframes stores its windows' union.
    stored = movies * sum(
        distinct_frames(min(k, keyframes_per_movie - s), w, m["fps"])
        for s in range(0, keyframes_per_movie, k)
    )
    return dict(
        movies=movies,
        keyframes=keyframes,
        frames=frames,
        prepare_keyframes_per_cpu_s=keyframes / (prep_h * 3600),
        # At 1 Hz over a whole AVA movie (no clip ends): stored / referenced frames.
        frame_duplication=stored / referenced,
        disk_gb=dict(
            videos=frames * m["prepare"]["video_bytes_per_frame"] / 1e9,
            tfrecords=keyframes * m["record_bytes_per_keyframe"] / 1e9,
            # Each referenced frame stored once (per video chunk) + each keyframe's overhead.
            tfrecords_frames_once=(referenced * jpeg + keyframes * overhead) / 1e9,
        ),
        cpu_hours=dict(prepare=prep_h, convert=conv_h, total=cpu_h),
        wall_hours={str(w): cpu_h / w for w in workers},
        wall_hours_movie_rounds={str(w): math.ceil(movies / w) * cpu_h / movies for w in workers},
    )


def _table(rows, head) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def _seconds(stage: dict) -> str:
    return f"{stage['cpu_s']:.1f} CPU s, {stage['wall_s']:.1f} s wall"


def report(results: dict, machine: dict, quick: bool) -> str:
    """The markdown report of `run`'s results {config: {"measured", "projected"}}."""
    a = AVA_V22
    keyframes, frames = a["movies"] * a["keyframes_per_movie"], a["movies"] * a["frames_per_movie"]
    lines = [
        f"# Data cost{' (quick)' if quick else ''}",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, load average "
        f"{machine['load_average']} at the start, {machine['load_average_end']} at the end.",
        "",
        "## Measured (one process; rates per CPU second = per core)",
        "",
    ]
    rows = []
    for name, r in results.items():
        m = r["measured"]
        p, c = m["prepare"], m["convert"]
        rows.append(
            [
                name,
                f"{m['num_frames']} x {m['short_side']} px"
                + (
                    f", K={m['keyframes_per_record']}"
                    if m.get("keyframes_per_record", 1) > 1
                    else ""
                ),
                f"{p['frames_per_cpu_s']:.1f} ({p['frames']} in {_seconds(p)})",
                f"{r['projected']['prepare_keyframes_per_cpu_s']:.2f}",
                f"{c['keyframes_per_cpu_s']:.2f} ({c['keyframes']} in {_seconds(c)})",
                f"{m['record_bytes_per_keyframe'] / 1e3:.0f}",
                f"{m['jpeg_bytes_per_frame'] / 1e3:.1f}",
                f"{m['duplication']:.2f} (JPEG {m['jpeg_duplication']:.2f}, "
                f"frames {m['frames_stored']}/{m['frames_distinct']})",
            ]
        )
    lines += _table(
        rows,
        [
            "config",
            "W x short side",
            "prepare frames/s/core",
            "prepare keyframes/s/core (AVA density)",
            "convert keyframes/s/core",
            "record kB/keyframe",
            "JPEG kB/frame",
            "duplication",
        ],
    )
    lines += [
        "",
        f"## AVA v2.2 train + val: {a['movies']} movies, {keyframes:,} keyframes, "
        f"{frames:,} prepared frames",
        "",
        "Assumptions: workers = cores, linear scaling over independent movies (rounds: whole "
        "movies per worker); content as the generated movie (bytes scale with the JPEG kB/frame).",
        "",
    ]
    rows = []
    for name, r in results.items():
        p = r["projected"]
        d, h = p["disk_gb"], p["cpu_hours"]
        rows.append(
            [
                name,
                f"{p['frame_duplication']:.2f}",
                f"{d['videos']:.0f}",
                f"{d['tfrecords']:.0f}",
                f"{d['tfrecords_frames_once']:.0f}",
                f"{h['prepare']:.1f} + {h['convert']:.1f} = {h['total']:.1f}",
            ]
            + [
                f"{p['wall_hours'][str(w)]:.2f} ({p['wall_hours_movie_rounds'][str(w)]:.2f})"
                for w in WORKERS
            ]
        )
    lines += _table(
        rows,
        [
            "config",
            "duplication (frames)",
            "videos GB",
            "TFRecords GB",
            "frames once GB",
            "CPU-h prepare + convert",
        ]
        + [f"wall h, {w} workers (rounds)" for w in WORKERS],
    )
    return "\n".join(lines) + "\n"


def run(out_dir: str, preset: str = "demo", quick: bool = False) -> str:
    """Measures every configuration, projects, writes `out_dir/data_cost.json` -> the report.
    `preset` is unused (the suite makes its own movie)."""
    del preset
    machine = machine_info()
    results = {}
    for name, config in CONFIGS.items():
        config = dict(config, short_side=QUICK["short_sides"][name]) if quick else config
        m = measure(
            os.path.join(out_dir, f"data_cost_{name}"),
            seconds=QUICK["seconds"] if quick else SECONDS,
            source=QUICK["source"] if quick else SOURCE,
            **config,
        )
        results[name] = dict(measured=m, projected=project(m, **AVA_V22))
    machine["load_average_end"] = machine_info()["load_average"]
    with open(os.path.join(out_dir, "data_cost.json"), "w") as f:
        json.dump(dict(machine=machine, quick=quick, ava=AVA_V22, results=results), f, indent=1)
    return report(results, machine, quick)
