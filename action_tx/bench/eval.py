"""Benchmark suite `eval`: the AVA evaluator at validation scale, CSV reading included.

    python tools/benchmark.py --suite=eval [--quick]

Generates seeded AVA-format inputs (about 50,000 keyframes over 64 videos, ~2.5 million
detection rows, the 60 classes of AVA v2.1; a tenth with quick) as CSV files under `out_dir`,
then times `object_detection_ext.ava_eval.evaluate` on the paths end to end, and, for
reference, the detection CSV read alone and the evaluation from arrays alone; then video-mAP on
a UCF101-24-sized synthetic split (`action_tx/bench/eval_video.py`).
"""

import os
import sys
import time

import numpy as np
import pandas as pd

from action_tx.bench import eval_video
from object_detection_ext import ava_eval

# The 60 classes of ava_action_list_v2.1_for_activitynet_2018 (AVA ids), built in code so that
# the benchmark needs no file of ../shared.
AVA_V21_IDS = (
    1,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    12,
    13,
    14,
    15,
    17,
    20,
    22,
    24,
    26,
    27,
    28,
    29,
    30,
    34,
    36,
    37,
    38,
    41,
    43,
    45,
    46,
    47,
    48,
    49,
    51,
    52,
    54,
    56,
    57,
    58,
    59,
    60,
    61,
    62,
    63,
    64,
    65,
    66,
    67,
    68,
    69,
    70,
    72,
    73,
    74,
    76,
    77,
    78,
    79,
    80,
)
NUM_VIDEOS = 64
SEED = 0


def _log(message):
    print(f"[bench eval] {message}", file=sys.stderr, flush=True)


def _write_label_map(path):
    with open(path, "w") as f:
        for i in AVA_V21_IDS:
            f.write(f'item {{\n  name: "action_{i}"\n  id: {i}\n}}\n')


def _to_csv(path, video, ts, boxes_yxyx, action, last):
    """AVA CSV: x1,y1,x2,y2 with 3 decimals; `last` is person_id (int) or score (float)."""
    frame = pd.DataFrame(
        {
            "v": video,
            "t": ts,
            "x1": boxes_yxyx[:, 1],
            "y1": boxes_yxyx[:, 0],
            "x2": boxes_yxyx[:, 3],
            "y2": boxes_yxyx[:, 2],
            "a": action,
            "l": last,
        }
    )
    frame.to_csv(path, header=False, index=False, float_format="%.6g")


def generate(out_dir, num_keys, detections_per_key=50, seed=SEED):
    """Writes gt.csv, detections.csv and label_map.pbtxt; returns their paths.

    Ground truth: 1-5 persons per key, 1-3 distinct actions each. Detections, as a detector
    writes them: per key a jittered box per person plus ~1 false-positive box, each box on
    several consecutive rows with distinct classes (about `detections_per_key` rows per key,
    some keys over the cap of 50). Files already generated with the same parameters are reused.
    """
    rng = np.random.default_rng(seed)
    paths = {
        name: os.path.join(out_dir, name)
        for name in ("gt.csv", "detections.csv", "label_map.pbtxt")
    }
    stamp = os.path.join(out_dir, "params.txt")
    params = f"num_keys={num_keys} detections_per_key={detections_per_key} seed={seed} v2\n"
    if os.path.exists(stamp) and open(stamp).read() == params:
        _log(f"reusing the inputs in {out_dir}")
        return paths
    _write_label_map(paths["label_map.pbtxt"])
    ids = np.asarray(AVA_V21_IDS)
    key = np.arange(num_keys)
    video_names = np.array([f"bench{v:07d}xx" for v in range(NUM_VIDEOS)], dtype=object)
    key_video = key * NUM_VIDEOS // num_keys
    key_ts = 902 + key - (key_video * num_keys + NUM_VIDEOS - 1) // NUM_VIDEOS
    persons = rng.integers(1, 6, num_keys)
    person_key = np.repeat(key, persons)
    person_index = np.arange(len(person_key)) - np.repeat(np.cumsum(persons) - persons, persons)
    corner = rng.uniform(0.0, 0.6, (len(person_key), 2))
    size = rng.uniform(0.1, 0.4, (len(person_key), 2))
    person_box = np.round(np.concatenate([corner, corner + size], axis=1), 3)
    actions = rng.integers(1, 4, len(person_key))
    gt_person = np.repeat(np.arange(len(person_key)), actions)
    # Distinct actions per person (the readers reject duplicate ground-truth rows).
    action_rank = np.arange(len(gt_person)) - np.repeat(np.cumsum(actions) - actions, actions)
    base = rng.integers(0, len(ids), len(person_key))
    gt_action = ids[(base[gt_person] + 7 * action_rank) % len(ids)]
    _log(f"writing {len(gt_person):,} ground-truth rows")
    _to_csv(
        paths["gt.csv"],
        video_names[key_video[person_key[gt_person]]],
        key_ts[person_key[gt_person]],
        person_box[gt_person],
        gt_action,
        person_index[gt_person],
    )

    # A detector's CSV: per key, a box for each found person (jittered) plus false-positive
    # boxes, and each box written with several classes, as AVA models output them.
    boxes_per_key = persons + rng.poisson(1.0, num_keys)
    box_key = np.repeat(key, boxes_per_key)
    box_rank = np.arange(len(box_key)) - np.repeat(
        np.cumsum(boxes_per_key) - boxes_per_key, boxes_per_key
    )
    first_person = np.cumsum(persons) - persons
    is_person = box_rank < persons[box_key]
    pick = first_person[box_key] + np.minimum(box_rank, persons[box_key] - 1)
    box = person_box[pick] + rng.normal(0.0, 0.03, (len(box_key), 4))
    fp_corner = rng.uniform(0.0, 0.6, (int((~is_person).sum()), 2))
    box[~is_person] = np.concatenate([fp_corner, fp_corner + 0.2], axis=1)
    box = np.round(np.clip(box, 0.0, 1.0), 3)
    box[:, 2:] = np.maximum(box[:, 2:], box[:, :2] + 0.01)
    # Rows per box: about detections_per_key per key in all (a third of keys over the cap).
    per_box = (
        rng.integers(detections_per_key // 2, detections_per_key * 3 // 2 + 1, len(box_key))
        // boxes_per_key[box_key]
    )
    det_box = np.repeat(np.arange(len(box_key)), np.maximum(per_box, 1))
    det_key = box_key[det_box]
    # Distinct classes per box; the person's true first action one time in three.
    class_rank = np.arange(len(det_box)) - np.repeat(
        np.cumsum(np.maximum(per_box, 1)) - np.maximum(per_box, 1), np.maximum(per_box, 1)
    )
    first_action = gt_action[np.cumsum(actions) - actions]
    offset = rng.integers(0, len(ids), len(box_key))
    det_action = ids[(offset[det_box] + class_rank) % len(ids)]
    true_row = (class_rank == 0) & is_person[det_box] & (rng.random(len(det_box)) < 1 / 3)
    det_action[true_row] = first_action[pick[det_box[true_row]]]
    box = box[det_box]
    score = np.round(rng.random(len(det_key)), 6)
    _log(f"writing {len(det_key):,} detection rows")
    _to_csv(
        paths["detections.csv"],
        video_names[key_video[det_key]],
        key_ts[det_key],
        box,
        det_action,
        score,
    )
    with open(stamp, "w") as f:
        f.write(params)
    return paths


def _timed(function, *args, **kwargs):
    """(function's result, "wall | cpu" seconds as a table cell pair)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = function(*args, **kwargs)
    return out, f"{time.perf_counter() - wall:.2f} | {time.process_time() - cpu:.2f}"


def run(out_dir: str, preset: str, quick: bool) -> str:
    """Generates the inputs, times the evaluator, returns a Markdown report."""
    del preset  # the inputs are generated here, not from a synthetic preset
    num_keys = 5_000 if quick else 50_000
    data_dir = os.path.join(out_dir, f"eval_{num_keys}")
    os.makedirs(data_dir, exist_ok=True)
    start = time.perf_counter()
    paths = generate(data_dir, num_keys)
    generate_s = time.perf_counter() - start

    _log("timing evaluate(CSV paths) end to end")
    result, end_to_end = _timed(
        ava_eval.evaluate, paths["gt.csv"], paths["detections.csv"], paths["label_map.pbtxt"]
    )
    from action_tx.data import ava

    _log("timing the CSV reads alone")
    (detections, _), read_det = _timed(
        ava.read_annotations, paths["detections.csv"], kind="detections"
    )
    (groundtruth, _), read_gt = _timed(ava.read_annotations, paths["gt.csv"])
    _log("timing evaluate(arrays)")
    _, arrays = _timed(
        ava_eval.evaluate, groundtruth, detections, ava.read_label_map(paths["label_map.pbtxt"])
    )
    _, core = _timed(
        ava_eval.evaluate, groundtruth, detections, list(AVA_V21_IDS), breakdowns=False
    )

    counts = result.counts
    return "\n".join(
        [
            "# Benchmark: AVA evaluator (object_detection_ext.ava_eval)",
            "",
            f"Inputs (seed {SEED}, generated in {generate_s:.1f} s, not timed): "
            f"{counts['groundtruth_keys']:,} keyframes, "
            f"{counts['groundtruth_rows']:,} ground-truth "
            f"rows, {counts['detection_rows']:,} detection rows, {len(AVA_V21_IDS)} classes; "
            f"{counts['detections_over_cap']:,} rows over the 50-per-key cap.",
            "",
            "| step | wall s | CPU s |",
            "|---|---|---|",
            f"| evaluate(CSV paths), end to end (read + mAP + all breakdowns) | {end_to_end} |",
            f"| read detection CSV alone (action_tx.data.ava.read_annotations) | {read_det} |",
            f"| read ground-truth CSV alone | {read_gt} |",
            f"| evaluate(arrays) with breakdowns (no CSV read) | {arrays} |",
            f"| evaluate(arrays), mAP + per class + categories only | {core} |",
            "",
            "CPU s is this process's CPU time: on a shared machine it is the better estimate of "
            "an unloaded wall time (the evaluator is single-threaded NumPy).",
            "",
            f"frame-mAP@0.5 of these random inputs: {result.map:.4f}; "
            f"localization AP@0.5 {result.localization[0.5]:.4f}.",
            "Target: end to end at most 8 s at full scale on the project's 2-core CPU "
            "(the official get_ava_performance.py needs about two minutes).",
            "",
        ]
        + eval_video.run(quick)
    )
