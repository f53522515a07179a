"""Synthetic AVA: renders small videos and writes them in exactly the AVA layout
(spec: shared/SYNTHETIC_DATA.md).

    summary = generate("data/synthetic_demo", preset="demo", seed=0)

Layout under out_dir: frames/VIDEO_ID/VIDEO_ID_000001.jpg (1-based), optional
videos/VIDEO_ID.mp4, annotations/ (ava_{train,val}.csv, action_list.pbtxt,
ava_{train,val}_excluded_timestamps.csv, person_detections_{split}.csv,
object_detections_{split}.csv, evidence_{split}.csv) and README.txt.

evidence_{split}.csv starts with the header video_id,timestamp,person_id,action_id,evidence.
Each positive (row of ava_{split}.csv) has one row whose evidence is self|context|temporal|
long_term. Matched negatives (synthetic_labels.matched_negatives) add rows whose evidence is
context_negative|long_term_negative and whose action_id is the class they are a look-alike
negative of; that (person, class) has no ground-truth row, so evaluators joining evidence to
ground truth ignore them. Per split, matched negatives >= positives for every (class, context |
long_term) pair (generate checks it).

Time convention: frame k (1-based) shows time (k - 1) / fps seconds; timestamps start at 0 at
the first frame (unlike AVA's 902 s), so keyframe t is frame round(t * fps) + 1. Keyframes are
the whole seconds skip_seconds .. seconds - skip_seconds, so clips of +-skip_seconds fit.
Deterministic: every video draws from numpy Generators seeded by (seed, video index), so the
same seed and parameters give byte-identical annotation files (and JPEGs).
"""

import os
import time

import numpy as np

from action_tx.data import ava
from action_tx.data import synthetic_labels as L
from action_tx.data.synthetic_render import background, camera_offsets, render_frame
from action_tx.data.synthetic_scenarios import CYCLE, SCENARIOS, build_video
from action_tx.progress import Progress

PRESETS = {
    "tiny": dict(videos=15, seconds=20, fps=10, width=64, height=64, people=4),
    "demo": dict(videos=30, seconds=20, fps=10, width=112, height=112, people=4),
    "bench": dict(videos=75, seconds=20, fps=10, width=112, height=112, people=4),
}
# Train holds whole scenario cycles (12 videos: tiny 1, demo 2, bench 5) and videos last 20 s,
# the length the scenario timings are tuned to, so every preset meets the balance quotas.
DEFAULTS = dict(val_fraction=0.2, skip_seconds=2, jpeg_quality=90, write_videos=False)
VISIBLE_MIN = 0.5  # a person is annotated when >= half of its box is in the frame
AMBIGUOUS_MIN = 0.2  # 20-50 % visible: ambiguous, the keyframe goes to excluded_timestamps
MIN_CLASS_FRACTION, MIN_EVIDENCE_FRACTION = 0.02, 0.10
_MATCH_STREAM = 10**6  # rng key [seed, this, split]: no video index reaches it


class UnbalancedDataError(ValueError):
    """The generated data breaks SYNTHETIC_DATA.md's class/evidence balance (`generate`'s
    check): nothing of its annotations was written."""


def label_map():
    """The 15 classes with their real AVA ids and names (ava.LabelMap)."""
    return ava.LabelMap(ids=tuple(sorted(L.NAMES)), names=dict(L.NAMES))


def resolve_params(preset="demo", **overrides):
    """Preset values updated by overrides -> dict (unknown keys raise ValueError)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    params = dict(PRESETS[preset], **DEFAULTS)
    bad = sorted(set(overrides) - set(params))
    if bad:
        raise ValueError(f"unknown synthetic parameter(s) {bad}; known: {sorted(params)}")
    params.update({k: v for k, v in overrides.items() if v is not None})
    if params["seconds"] < 2 * params["skip_seconds"] + 1:
        raise ValueError(
            f"seconds={params['seconds']} leaves no keyframe after skipping "
            f"{params['skip_seconds']} s at both ends"
        )
    if not 1 <= params["people"] <= 4:
        raise ValueError(f"people must be 1..4, got {params['people']}")
    return params


def video_ids(params):
    return [f"syn{i:04d}" for i in range(params["videos"])]


def split_of(params):
    """-> list of 'train' / 'val' per video: the last val_fraction of the videos are val."""
    n = params["videos"]
    n_val = min(n - 1, max(1, int(round(n * params["val_fraction"])))) if n >= 2 else 0
    return ["train"] * (n - n_val) + ["val"] * n_val


def scenario_of(params, seed):
    """Scenario per video: a seeded rotation of the scenarios the people limit allows, cycled
    separately in train and val so both splits see every scenario."""
    names = [s for s in CYCLE if SCENARIOS[s][1] <= params["people"]]
    off = int(np.random.default_rng([seed, 99]).integers(len(names)))
    out, count = [], {"train": 0, "val": 0}
    for split in split_of(params):
        out.append(names[(off + count[split]) % len(names)])
        count[split] += 1
    return out


def simulate_video(params, seed, index):
    """The scene state (synthetic_story.SceneState, camera included) of video `index`."""
    rng = np.random.default_rng([seed, index])
    scen, splits = scenario_of(params, seed), split_of(params)
    variant = sum(1 for i in range(index) if scen[i] == scen[index] and splits[i] == splits[index])
    state = build_video(
        scen[index],
        params["seconds"] * params["fps"],
        params["fps"],
        params["people"],
        rng,
        variant,
    )
    state.camera = camera_offsets(rng, state.num_frames, params["fps"], params["width"])
    return state


def keyframe_frames(params):
    """-> list of (timestamp, 0-based frame index)."""
    s, fps = params["skip_seconds"], params["fps"]
    return [(t, int(round(t * fps))) for t in range(s, params["seconds"] - s + 1)]


def _visible(box, W, H):
    """Fraction of a pixel box [x1, y1, x2, y2] inside the frame, and the clipped box."""
    if np.isnan(box).any():
        return 0.0, box
    c = np.clip(box, 0, [W, H, W, H])
    area = max(1e-9, (box[2] - box[0]) * (box[3] - box[1]))
    return max(0.0, (c[2] - c[0])) * max(0.0, (c[3] - c[1])) / area, c


def _jitter(rng, box, sigma):
    """box [x1, y1, x2, y2] normalized + Gaussian noise proportional to its size, clipped."""
    w, h = box[2] - box[0], box[3] - box[1]
    b = box + rng.normal(0, sigma, 4) * np.array([w, h, w, h])
    b = np.clip(b, 0, 1)
    return b if b[2] - b[0] > 0.01 and b[3] - b[1] > 0.01 else np.clip(box, 0, 1)


def _video_writer(path, params):
    import av  # imported lazily: only --write_videos needs it

    container = av.open(path, mode="w")
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    stream = container.add_stream(codec, rate=params["fps"])
    stream.width, stream.height, stream.pix_fmt = params["width"], params["height"], "yuv420p"
    return container, stream


def _write_video_frames(container, stream, frame_or_none):
    import av

    frames = [] if frame_or_none is None else [av.VideoFrame.from_ndarray(frame_or_none, "rgb24")]
    for fr in frames or [None]:
        for packet in stream.encode(fr):
            container.mux(packet)


def render_video(params, seed, index, out_dir):
    """Renders video `index` (frames, optional mp4) -> dict of its rows (see generate)."""
    vid = video_ids(params)[index]
    W, H = params["width"], params["height"]
    state = simulate_video(params, seed, index)
    rng_bg = np.random.default_rng([seed, index, 1])
    rng_det = np.random.default_rng([seed, index, 2])
    margin = int(np.abs(state.camera).max()) + 1
    bg = background(rng_bg, W, H, margin)
    frame_dir = os.path.join(out_dir, "frames", vid)
    os.makedirs(frame_dir, exist_ok=True)
    writer = None
    if params["write_videos"]:
        os.makedirs(os.path.join(out_dir, "videos"), exist_ok=True)
        writer = _video_writer(os.path.join(out_dir, "videos", vid + ".mp4"), params)
    keyframes = dict((f, t) for t, f in keyframe_frames(params))
    rows = dict(gt=[], excluded=[], persons=[], objects=[], evidence=[], signatures=[])
    for f in range(state.num_frames):
        jpeg, rgb, geo = render_frame(state, f, bg, W, H, margin, params["jpeg_quality"])
        with open(os.path.join(frame_dir, f"{vid}_{f + 1:06d}.jpg"), "wb") as fh:
            fh.write(jpeg)
        if writer:
            _write_video_frames(*writer, rgb)
        if f in keyframes:
            _keyframe_rows(state, f, keyframes[f], vid, geo, W, H, rng_det, rows)
    if writer:
        _write_video_frames(*writer, None)
        writer[0].close()
    return rows


def _keyframe_rows(state, f, t, vid, geo, W, H, rng, rows):
    scale = np.array([W, H, W, H], np.float64)
    people, ambiguous = [], False
    for p in range(state.num_people):
        vis, box = _visible(geo["person_boxes"][p], W, H)
        if vis >= VISIBLE_MIN:
            people.append((p, box / scale))
        elif vis >= AMBIGUOUS_MIN:
            ambiguous = True
    labels = {p: L.person_labels(state, p, f) for p, _ in people}
    negatives = {p: L.matched_negatives(state, p, f, {a for a, _ in labels[p]}) for p, _ in people}
    # A positive decided only 1.6-2 s back is neither context nor long_term: unsure, excluded.
    ambiguous = ambiguous or any(e == L.AMBIGUOUS for lab in labels.values() for _, e in lab)
    if ambiguous:  # like AVA: excluded keyframes carry no annotation rows
        rows["excluded"].append((vid, t))
    else:
        for p, box in people:
            sig = L.crop_signature(state, p, f)
            for action, evidence in labels[p]:
                rows["gt"].append((vid, t, box, action, p))
                rows["evidence"].append((vid, t, p, action, evidence))
                rows["signatures"].append(sig if evidence == "context" else None)
            rows["evidence"] += [(vid, t, p, action, kind) for action, kind in negatives[p]]
            rows["signatures"] += [
                sig if kind == "context_negative" else None for _, kind in negatives[p]
            ]
    # Simulated person detector: 92 % recall with jittered boxes, ~0.4 false positives a frame.
    for p, box in people:
        if rng.random() < 0.92:
            rows["persons"].append(
                (vid, t, _jitter(rng, box, 0.04), float(np.clip(rng.normal(0.85, 0.1), 0.3, 0.999)))
            )
    for _ in range(rng.poisson(0.4)):
        w, h = rng.uniform(0.08, 0.25), rng.uniform(0.2, 0.6)
        x, y = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
        rows["persons"].append(
            (vid, t, np.array([x, y, x + w, y + h]), float(rng.uniform(0.05, 0.6)))
        )
    for o in range(len(state.obj_kind)):
        vis, box = _visible(geo["object_boxes"][o], W, H)
        if vis >= VISIBLE_MIN and rng.random() < 0.95:
            rows["objects"].append(
                (
                    vid,
                    t,
                    _jitter(rng, box / scale, 0.05),
                    int(state.obj_kind[o]),
                    float(np.clip(rng.normal(0.8, 0.1), 0.3, 0.999)),
                )
            )


def generate(out_dir, preset="demo", seed=0, progress=False, check=True, **overrides):
    """Generates a synthetic AVA root in out_dir -> summary dict.

    overrides: any of videos, seconds, fps, width, height, people, val_fraction, skip_seconds,
    jpeg_quality, write_videos. check=True raises UnbalancedDataError (a ValueError) when a
    class has < 2 % of the train person-keyframes positive or an evidence type < 10 % of the
    train positives, or when in a split a (class, context | long_term) pair has fewer matched
    negatives than positives; it is checked before out_dir/annotations is made, so a data set
    that fails it has no annotations (the frames it rendered stay) and is never mistaken for a
    finished one. README.txt is written last. Summary: out_dir, preset, seed, params, seconds
    (wall time), splits {split: counts of synthetic_write.split_counts}.
    """
    from action_tx.data import synthetic_write as SW

    t0 = time.time()
    params = resolve_params(preset, **overrides)
    os.makedirs(out_dir, exist_ok=True)
    splits, scen = split_of(params), scenario_of(params, seed)
    keys = ("gt", "excluded", "persons", "objects", "evidence", "signatures")
    rows = {s: {key: [] for key in keys} for s in set(splits)}
    bar = Progress(params["videos"], f"synthetic {preset}", progress, unit="videos")
    for i in range(params["videos"]):
        for key, value in render_video(params, seed, i, out_dir).items():
            rows[splits[i]][key] += value
        bar.update(1)
    bar.close()
    counts, scenarios = {}, {}
    for number, split in enumerate(("train", "val")):
        if split in rows:
            # Context look-alikes drawn to the positives' own crops (synthetic_labels module
            # docstring); its own seed, so frames and the other files do not change with it.
            split_rows = rows[split]
            keep = L.select_matched(
                split_rows["evidence"],
                split_rows.pop("signatures"),
                np.random.default_rng([seed, _MATCH_STREAM, number]),
            )
            split_rows["evidence"] = [r for r, k in zip(split_rows["evidence"], keep) if k]
            counts[split] = SW.split_counts(rows[split], splits.count(split))
            scenarios[split] = [s for s, sp in zip(scen, splits) if sp == split]
    if check and "train" in counts:
        bad = SW.check_balance(counts["train"], MIN_CLASS_FRACTION, MIN_EVIDENCE_FRACTION)
        bad += [f"{split}: {m}" for split in counts for m in SW.check_matched(counts[split])]
        if bad:
            raise UnbalancedDataError(
                f"synthetic preset {preset!r} (seed {seed}, {params}) violates the "
                "class/evidence balance of SYNTHETIC_DATA.md: " + "; ".join(bad)
            )
    ann_dir = os.path.join(out_dir, "annotations")
    os.makedirs(ann_dir, exist_ok=True)
    ava.write_label_map(os.path.join(ann_dir, "action_list.pbtxt"), label_map())
    for split in counts:
        SW.write_split(ann_dir, split, rows[split])
    SW.write_readme(os.path.join(out_dir, "README.txt"), params, seed, preset, counts, scenarios)
    return dict(
        out_dir=out_dir,
        preset=preset,
        seed=seed,
        params=params,
        seconds=time.time() - t0,
        splits=counts,
    )
