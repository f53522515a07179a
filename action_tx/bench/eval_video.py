"""Part of benchmark suite `eval`: video-mAP on a UCF101-24-sized synthetic test split.

910 videos of 40-180 frames (about 100,000 frames, keyframes at every frame), 24 classes, one or
two ground-truth tubes per video (one class per video, as UCF101-24); per frame the detector's
output is a jittered box per tube plus a false-positive box, each written with 3 classes (the
tube's own class on the first row two times in three, scored 0.5-1; other rows 0-0.6). Arrays,
no CSV: this times the linking and the tube scoring of `object_detection_ext.video_map.evaluate`.
"""

import time

import numpy as np

from object_detection_ext import video_map

NUM_CLASSES = 24
SEED = 0


def generate(num_videos, seed=SEED):
    """(groundtruth, detections) dicts of arrays in the AVA row format (timestamp = frame)."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(40, 181, num_videos)
    tubes = rng.integers(1, 3, num_videos)
    video_class = rng.integers(1, NUM_CLASSES + 1, num_videos)
    # Ground truth: each tube covers a random half or more of its video, drifting slowly.
    t_video = np.repeat(np.arange(num_videos), tubes)
    length = (frames[t_video] * rng.uniform(0.5, 1.0, len(t_video))).astype(int)
    begin = (rng.random(len(t_video)) * (frames[t_video] - length + 1)).astype(int)
    row_tube = np.repeat(np.arange(len(t_video)), length)
    row_t = (
        begin[row_tube] + np.arange(len(row_tube)) - np.repeat(np.cumsum(length) - length, length)
    )
    corner = rng.uniform(0.05, 0.5, (len(t_video), 2))
    drift = rng.normal(0, 0.001, (len(t_video), 2))
    step = (row_t - begin[row_tube])[:, None]
    c0 = np.clip(corner[row_tube] + drift[row_tube] * step, 0.0, 0.55)
    gt_box = np.concatenate([c0, c0 + 0.4], axis=1)
    person = np.arange(len(t_video)) - np.repeat(np.cumsum(tubes) - tubes, tubes)
    gt = {
        "video_id": t_video[row_tube],
        "timestamp": row_t,
        "boxes": gt_box,
        "action_id": video_class[t_video[row_tube]],
        "person_id": person[row_tube],
    }
    # Detections: per ground-truth row a jittered box (missed 10 % of the time), per frame a
    # false positive; 3 class rows per box.
    found = rng.random(len(row_tube)) > 0.1
    tp_box = gt_box[found] + rng.normal(0, 0.02, (int(found.sum()), 4))
    tp_video, tp_t = t_video[row_tube[found]], row_t[found]
    f_video = np.repeat(np.arange(num_videos), frames)
    f_t = np.arange(len(f_video)) - np.repeat(np.cumsum(frames) - frames, frames)
    fp_corner = rng.uniform(0.0, 0.6, (len(f_video), 2))
    box = np.concatenate([tp_box, np.concatenate([fp_corner, fp_corner + 0.3], axis=1)])
    b_video = np.r_[tp_video, f_video]
    b_t = np.r_[tp_t, f_t]
    rows = np.repeat(np.arange(len(box)), 3)
    action = rng.integers(1, NUM_CLASSES + 1, len(rows))
    own = (np.arange(len(rows)) % 3 == 0) & (rows < len(tp_box)) & (rng.random(len(rows)) < 2 / 3)
    action[own] = video_class[b_video[rows[own]]]
    score = (rng.random(len(rows)) * 0.6).astype(np.float32)  # others: below 0.6
    score[own] = 0.5 + score[own] / 1.2  # own class: 0.5 to 1
    det = {
        "video_id": b_video[rows],
        "timestamp": b_t[rows],
        "boxes": np.clip(box[rows], 0, 1),
        "action_id": action,
        "score": score,
    }
    return gt, det


def run(quick: bool) -> list:
    """Times video_map.evaluate; returns Markdown lines for the suite's report."""
    num_videos = 91 if quick else 910
    gt, det = generate(num_videos)
    ids = list(range(1, NUM_CLASSES + 1))
    wall, cpu = time.perf_counter(), time.process_time()
    result = video_map.evaluate(gt, det, ids)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    frames = len(np.unique(det["video_id"].astype(np.int64) * 1000 + det["timestamp"]))
    return [
        "## Video-mAP (object_detection_ext.video_map), UCF101-24-sized split",
        "",
        f"Inputs (seed {SEED}, arrays): {num_videos} videos, {frames:,} frames, "
        f"{result.counts['groundtruth_tubes']:,} ground-truth tubes, "
        f"{len(det['score']):,} detection rows, {NUM_CLASSES} classes; "
        f"{result.counts['linked_tubes']:,} linked tubes.",
        "",
        "| step | wall s | CPU s |",
        "|---|---|---|",
        f"| link + ST-IoU + AP at 0.2, 0.5, 0.75 and 0.5:0.95 | {wall:.2f} | {cpu:.2f} |",
        "",
        "video-mAP of these random inputs: "
        + ", ".join(f"@{t:g} {v:.4f}" for t, v in result.map.items())
        + f", @0.5:0.95 {result.map_50_95:.4f}.",
        "",
    ]
