"""The input pipeline at the papers' input (64 frames, 400 px) in both record layouts, against
the paper-size train step: part of `--suite=input` (`action_tx.bench.input`).

A generated movie (`data_cost_source`, 854x480) is prepared (`prepare.prepare`) to a 400 px
short side at 30 fps and converted with 64-frame windows at a keyframe a second (AVA's 1 Hz),
once per layout: K = 1 (layout 1, a record per keyframe) and K = 10 (layout 2, `chunks`). Both
are cached under out_dir/input_paper. Each is read by the training `build_dataset` (T = 64 at
stride 1, 400x400 crops, flip, box jitter) on a 2-thread private pool; the rates are clips per
wall second and clips per CPU second of this process (per core).
"""

from __future__ import annotations

import json
import os
import time


from action_tx.bench import data_cost, data_cost_source
from action_tx.data import convert, pipeline, prepare

# Seconds per step of the paper-size Tx detector (64 x 400 x 400, batch 1) on this project's
# 2-core CPU: docs/notes/2026-12-06-train-step-efficiency.md (tx_paper_400).
TRAIN_STEP_S = {"float32": 10.77, "mixed_bfloat16": 6.97}
LAYOUTS = (1, 10)  # keyframes per record
FULL = dict(seconds=30, short_side=400, source=data_cost.SOURCE, steps=12, warmup=2)
QUICK = dict(seconds=4, short_side=32, source=dict(width=64, height=48), steps=2, warmup=1)
NUM_FRAMES, BATCH_SIZE = 64, 2


def _records(folder: str, cfg: dict) -> dict:
    """-> {K: (shard glob, manifest)}, converting (and preparing) only what is not cached."""
    root = os.path.join(folder, "ava")
    csv = os.path.join(root, "annotations", "ava_train.csv")
    if not os.path.isfile(prepare.output_path(root, "videos", "clip")):
        movies = os.path.join(folder, "movies")
        data_cost_source.write_movie(
            os.path.join(movies, "clip.mp4"), cfg["seconds"], data_cost.FPS, **cfg["source"]
        )
        os.makedirs(os.path.dirname(csv), exist_ok=True)
        with open(csv, "w") as f:  # one person at every second of the clip
            f.writelines(f"clip,{t},0.2,0.1,0.6,0.9,12,0\n" for t in range(1, cfg["seconds"]))
        with open(os.path.join(root, "annotations", "action_list.pbtxt"), "w") as f:
            f.write(data_cost.LABEL_MAP)
        result = prepare.prepare(
            movies,
            [csv],
            root,
            short_side=cfg["short_side"],
            fps=data_cost.FPS,
            kinetics=True,
            progress=False,
        )
        if result.done != ["clip"]:
            raise RuntimeError(f"preparation failed: {result.messages}")
    out = {}
    for k in LAYOUTS:
        rec = os.path.join(folder, f"k{k}")
        path = os.path.join(rec, "train_manifest.json")
        if not os.path.isfile(path):
            convert.convert_split(
                root,
                "train",
                os.path.join(rec, "train.tfrecord@2"),
                num_frames=NUM_FRAMES,
                keyframes_per_record=k,
                num_workers=1,
                progress=False,
            )
        with open(path) as f:
            out[k] = (os.path.join(rec, "train.tfrecord-*"), json.load(f))
    return out


def _time(pattern: str, num_classes: int, size: int, steps: int, warmup: int) -> dict:
    ds = pipeline.build_dataset(
        pattern,
        batch_size=BATCH_SIZE,
        num_classes=num_classes,
        num_frames=NUM_FRAMES,
        frame_stride=1,
        image_size=size,
        training=True,
        seed=0,
        shuffle_buffer=16,
        num_parallel_calls=2,
        num_threads=2,
        box_jitter=0.05,
    )
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    wall, cpu = time.perf_counter(), data_cost._cpu_seconds()
    for _ in range(steps):
        batch = next(it)
    batch["clip"].numpy()
    wall, cpu = time.perf_counter() - wall, data_cost._cpu_seconds() - cpu
    clips = steps * BATCH_SIZE
    return dict(clips=clips, wall_s=wall, cpu_s=cpu)


def run(out_dir: str, quick: bool = False) -> list[str]:
    """Measures both layouts -> the report's markdown lines."""
    cfg = QUICK if quick else FULL
    records = _records(os.path.join(out_dir, "input_paper" + ("_quick" if quick else "")), cfg)
    step_rates = ", ".join(f"{p} {1 / s:.3f} clips/s ({s} s)" for p, s in TRAIN_STEP_S.items())
    lines = [
        f"## Papers' input: {NUM_FRAMES} frames x {cfg['short_side']} px, both record layouts",
        "",
        f"A generated {cfg['seconds']} s movie prepared to a {cfg['short_side']} px short side "
        f"at 30 fps, a keyframe a second, {NUM_FRAMES}-frame windows; training pipeline "
        f"(T={NUM_FRAMES} stride 1, {cfg['short_side']}x{cfg['short_side']} crops, flip, box "
        f"jitter), batch {BATCH_SIZE}, 2 threads, {cfg['steps']} batches after "
        f"{cfg['warmup']}. Train step (paper-size Tx, 400 px, batch 1, this CPU's 2 cores; "
        f"docs/notes/2026-12-06-train-step-efficiency.md): {step_rates}.",
        "",
        "| layout | records / keyframes | record MB / keyframe | input clips/s (wall) | "
        "input clips / CPU s (per core) | wall / float32 step's clips/s | "
        "CPU share of a float32 step's 2 cores |",
        "|---|---|---|---|---|---|---|",
    ]
    step = TRAIN_STEP_S["float32"]
    for k, (pattern, manifest) in records.items():
        keys = manifest["keyframes"]["written"]
        n = sum(s["records"] for s in manifest["shards"])
        size = sum(os.path.getsize(s["path"]) for s in manifest["shards"])
        t = _time(
            pattern,
            manifest["label_map"]["num_classes"],
            cfg["short_side"],
            cfg["steps"],
            cfg["warmup"],
        )
        wall_rate, cpu_rate = t["clips"] / t["wall_s"], t["clips"] / t["cpu_s"]
        lines.append(
            f"| {1 if k == 1 else 2} (K={k}) | {n} / {keys} | {size / keys / 1e6:.2f} | "
            f"{wall_rate:.2f} ({t['clips']} in {t['wall_s']:.1f} s) | "
            f"{cpu_rate:.2f} ({t['cpu_s']:.1f} CPU s) | {wall_rate * step:.0f}x | "
            f"{1 / cpu_rate / (2 * step):.3f} |"
        )
    return lines
