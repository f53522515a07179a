"""Input-pipeline benchmark: clips/s of the training pipeline on a synthetic preset, 2 cores,
and at the papers' input (64 frames, 400 px) in both record layouts against a train step.

    python tools/benchmark.py --suite=input [--preset=demo] [--quick]

Creates (and caches under out_dir) the preset's synthetic AVA data and its train TFRecords,
then times batches of the training `build_dataset` (decode, crop, flip, jitter, pad) with a
2-thread private pool, as a 2-core training machine would run it. Then the papers' input
(`input_paper`): a generated movie (`data_cost_source`, prepared to a 400 px short side at
30 fps, a keyframe a second) converted with 64-frame windows in layout 1 (a record per
keyframe) and layout 2 (`chunks`, 10 keyframes a record), each timed the same way at T = 64,
400x400: clips/s (wall) and clips per CPU second (per core), against the paper-size train
step's clips/s (`TRAIN_STEP_S`).
"""

from __future__ import annotations

import os
import time

import tensorflow as tf

from action_tx.bench import input_paper
from action_tx.data import convert, pipeline

# Clip settings of the measurement: T frames at stride s, resized to the preset's resolution.
NUM_FRAMES, FRAME_STRIDE, BATCH_SIZE, WINDOW = 16, 2, 8, 32


def _prepare(out_dir: str, preset: str) -> tuple[str, dict, float | None]:
    """-> (shard glob, conversion manifest, conversion seconds or None when cached)."""
    data_dir = os.path.join(out_dir, f"synthetic_{preset}")
    if not os.path.isfile(os.path.join(data_dir, "annotations", "ava_train.csv")):
        from action_tx.data import synthetic  # imported only when data must be made

        # check=False: the label-balance check of the generator does not matter for throughput.
        synthetic.generate(data_dir, preset=preset, seed=0, progress=True, check=False)
    rec_dir = os.path.join(out_dir, f"input_tfrecords_{preset}")
    manifest_path = os.path.join(rec_dir, "train_manifest.json")
    seconds = None
    if not os.path.isfile(manifest_path):
        start = time.perf_counter()
        manifest = convert.convert_split(
            data_dir,
            "train",
            os.path.join(rec_dir, "train.tfrecord@4"),
            num_frames=WINDOW,
            num_workers=2,
        )
        seconds = time.perf_counter() - start
    else:
        import json

        with open(manifest_path) as f:
            manifest = json.load(f)
    return os.path.join(rec_dir, "train.tfrecord-*"), manifest, seconds


def run(out_dir: str, preset: str = "demo", quick: bool = False) -> str:
    """Measures clips/s; returns a markdown report."""
    pattern, manifest, convert_s = _prepare(out_dir, preset)
    first = next(iter(tf.data.TFRecordDataset(manifest["shards"][0]["path"]).take(1)))
    size = int(pipeline.parse_example(first)["height"])
    ds = pipeline.build_dataset(
        pattern,
        batch_size=BATCH_SIZE,
        num_classes=manifest["label_map"]["num_classes"],
        num_frames=NUM_FRAMES,
        frame_stride=FRAME_STRIDE,
        image_size=size,
        training=True,
        seed=0,
        shuffle_buffer=64,
        num_parallel_calls=2,
        num_threads=2,
        box_jitter=0.05,
    )  # the library's default until issue 27 (0 now): timings stay comparable
    warmup, steps = (2, 10) if quick else (5, 60)
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(steps):
        batch = next(it)
    batch["clip"].numpy()
    seconds = time.perf_counter() - start
    clips_s = steps * BATCH_SIZE / seconds
    k = manifest["keyframes"]
    lines = [
        f"# Input pipeline ({preset} preset{', quick' if quick else ''})",
        "",
        f"- data: {k['written']} train keyframes in {len(manifest['shards'])} shards, "
        f"{WINDOW} stored frames each, {size}x{size} JPEG",
        f"- pipeline: training (crop, flip, box jitter), T={NUM_FRAMES} stride={FRAME_STRIDE}, "
        f"{size}x{size}, batch {BATCH_SIZE}, 2 threads (num_parallel_calls=2)",
        f"- **{clips_s:.1f} clips/s** ({steps} batches in {seconds:.2f} s after {warmup} warm-up)",
    ]
    if convert_s is not None:
        lines.append(
            f"- conversion (2 workers): {k['written']} keyframes in {convert_s:.1f} s "
            f"({k['written'] / convert_s:.1f} keyframes/s)"
        )
    return "\n".join(lines + [""] + input_paper.run(out_dir, quick)) + "\n"
