"""Writers of synthetic AVA's annotation files and README.txt, and the class / evidence counts."""

import collections
import os

import numpy as np

from action_tx.data import ava
from action_tx.data import synthetic_labels as L
from action_tx.data.synthetic_story import OBJECT_NAMES


def _annotations(video_id, timestamp, boxes_xyxy, action_id, person_id=None, score=None):
    n = len(video_id)
    boxes = np.asarray(boxes_xyxy, np.float64).reshape(n, 4)
    return ava.Annotations(
        video_id=np.asarray(video_id, object),
        timestamp=np.asarray(timestamp, np.int32),
        boxes=boxes[:, [1, 0, 3, 2]].astype(np.float32),  # -> yxyx, ava.py writes x1,y1,..
        action_id=np.asarray(action_id, np.int32),
        person_id=np.asarray(person_id if person_id is not None else [-1] * n, np.int32),
        score=np.asarray(score if score is not None else [np.nan] * n, np.float32),
        line=np.arange(1, n + 1, dtype=np.int64),
    )


def write_split(ann_dir, split, rows):
    """Writes the CSVs of one split from the rows of synthetic.render_video (all videos)."""
    gt = rows["gt"]
    ava.write_annotations(
        os.path.join(ann_dir, f"ava_{split}.csv"),
        _annotations(
            [r[0] for r in gt],
            [r[1] for r in gt],
            [r[2] for r in gt],
            [r[3] for r in gt],
            person_id=[r[4] for r in gt],
        ),
        kind="groundtruth",
    )
    ex = rows["excluded"]
    ava.write_annotations(
        os.path.join(ann_dir, f"ava_{split}_excluded_timestamps.csv"),
        _annotations(
            [r[0] for r in ex], [r[1] for r in ex], np.full((len(ex), 4), np.nan), [-1] * len(ex)
        ),
    )
    ob = rows["objects"]
    ava.write_annotations(
        os.path.join(ann_dir, f"object_detections_{split}.csv"),
        _annotations(
            [r[0] for r in ob],
            [r[1] for r in ob],
            [r[2] for r in ob],
            [r[3] for r in ob],
            score=[r[4] for r in ob],
        ),
        kind="detections",
    )
    # AVA's person-detection files leave the action column empty: video,t,x1,y1,x2,y2,,score.
    with open(os.path.join(ann_dir, f"person_detections_{split}.csv"), "w") as f:
        for vid, t, b, s in rows["persons"]:
            f.write("%s,%04d,%.3f,%.3f,%.3f,%.3f,,%.4f\n" % (vid, t, *b, s))
    with open(os.path.join(ann_dir, f"evidence_{split}.csv"), "w") as f:
        f.write("video_id,timestamp,person_id,action_id,evidence\n")
        for vid, t, p, a, e in rows["evidence"]:
            f.write("%s,%04d,%d,%d,%s\n" % (vid, t, p, a, e))


def split_counts(rows, num_videos):
    """-> dict: videos, keyframes with people, person_keyframes, excluded keyframes,
    classes {AVA id: positives}, evidence {type: positives}, class_evidence {(id, type): n},
    matched {(id, context_negative | long_term_negative): matched negatives}."""
    pk = {(r[0], r[1], r[4]) for r in rows["gt"]}
    return dict(
        videos=num_videos,
        keyframes=len({(r[0], r[1]) for r in rows["gt"]}),
        person_keyframes=len(pk),
        excluded=len(rows["excluded"]),
        classes={i: sum(1 for r in rows["gt"] if r[3] == i) for i in sorted(L.NAMES)},
        evidence={e: sum(1 for r in rows["evidence"] if r[4] == e) for e in L.EVIDENCE},
        class_evidence=dict(
            sorted(
                collections.Counter(
                    (r[3], r[4]) for r in rows["evidence"] if r[4] in L.EVIDENCE
                ).items()
            )
        ),
        matched=dict(
            sorted(
                collections.Counter(
                    (r[3], r[4]) for r in rows["evidence"] if r[4] not in L.EVIDENCE
                ).items()
            )
        ),
    )


def check_matched(counts):
    """-> list of violation messages: (class, context | long_term) pairs with fewer matched
    negatives than positives."""
    return [
        f"class {i} '{L.NAMES[i]}' {e}: {counts['matched'].get((i, e + '_negative'), 0)} "
        f"matched negatives < {n} positives"
        for (i, e), n in counts["class_evidence"].items()
        if e in ("context", "long_term") and counts["matched"].get((i, e + "_negative"), 0) < n
    ]


def check_balance(counts, min_class, min_evidence):
    """-> list of violation messages (empty when every class has >= min_class of the
    person-keyframes positive and each evidence type >= min_evidence of the positives)."""
    bad, pk = [], max(1, counts["person_keyframes"])
    total = max(1, sum(counts["evidence"].values()))
    for i, n in counts["classes"].items():
        if n / pk < min_class:
            bad.append(
                f"class {i} '{L.NAMES[i]}': {n}/{pk} person-keyframes = {n / pk:.1%} "
                f"< {min_class:.0%}"
            )
    for e, n in counts["evidence"].items():
        if n / total < min_evidence:
            bad.append(
                f"evidence '{e}': {n}/{total} positives = {n / total:.1%} < {min_evidence:.0%}"
            )
    return bad


def write_readme(path, params, seed, preset, counts, scenarios):
    pk = {s: max(1, c["person_keyframes"]) for s, c in counts.items()}
    lines = [
        "Synthetic AVA (action_tx.data.synthetic; spec: shared/SYNTHETIC_DATA.md)",
        "",
        f"seed: {seed}",
        f"preset: {preset}",
        "parameters: " + ", ".join(f"{k}={params[k]}" for k in sorted(params)),
        "",
        "Conventions",
        "- frames/VIDEO_ID/VIDEO_ID_%06d.jpg, 1-based: frame k shows time (k - 1) / fps seconds.",
        "- Timestamps start at 0 at the first frame (not at AVA's 902); keyframe t (whole seconds,",
        f"  {params['skip_seconds']} .. seconds - {params['skip_seconds']}) "
        "is frame round(t * fps) + 1.",
        "- Boxes normalized x1,y1,x2,y2 in the AVA CSVs; person ids are per video and stable.",
        "- A person is annotated when >= 50 % of its box is in the frame; keyframes with a person",
        "  20-50 % in the frame are in ava_*_excluded_timestamps.csv and carry no rows.",
        "- evidence_*.csv (header video_id,timestamp,person_id,action_id,evidence): one row per",
        "  positive, evidence self|context|temporal|long_term; context: decided by others",
        "  inside the clip",
        f"  window +-{L.CLIP_HALF_S} s; long_term: by an event that ended more than "
        f"{L.LONG_TERM_S} s",
        f"  (and at most {L.MEMORY_S} s) before the keyframe, nothing of it inside that window.",
        f"  Keyframes where a positive was decided only {L.CLIP_HALF_S}-{L.LONG_TERM_S} s back "
        "are excluded.",
        "  Matched negatives add rows with evidence context_negative|long_term_negative and the",
        "  action_id of the class they look like a positive of (no ground-truth row: they are",
        "  negatives): same own state (context) or same clip window (long_term) as its positives.",
        "  Context ones are drawn per own-crop state (pose, facing, vehicle seat, talk, motion,",
        f"  turns, arm, hand shake in the window): at most {L.MATCH_RATIO} per positive of that",
        "  state, none for a state no positive shows.",
        "- person_detections_*.csv: simulated detector (jittered true boxes, 92 % recall, ~0.4",
        "  false positives per keyframe); object_detections_*.csv: object_class "
        + ", ".join(f"{k}={v}" for k, v in sorted(OBJECT_NAMES.items()))
        + ".",
        "",
        "Classes (AVA id, name, evidence)",
    ]
    lines += [f"  {i:3d}  {n}  [{e}]" for i, n, e in L.CLASSES]
    for split, c in counts.items():
        total = max(1, sum(c["evidence"].values()))
        lines += [
            "",
            f"Split {split}: {c['videos']} videos, {c['keyframes']} keyframes with people, "
            f"{c['person_keyframes']} person-keyframes, {c['excluded']} excluded keyframes",
            "  scenarios: "
            + ", ".join(
                f"{k}={v}" for k, v in sorted(collections.Counter(scenarios[split]).items())
            ),
            "  counts per class (positives, % of person-keyframes):",
        ]
        lines += [
            f"    {i:3d} {L.NAMES[i]:42s} {n:6d}  {100 * n / pk[split]:5.1f}%"
            for i, n in c["classes"].items()
        ]
        lines += ["  counts per evidence type (positives, % of all positives):"]
        lines += [f"    {e:10s} {n:6d}  {100 * n / total:5.1f}%" for e, n in c["evidence"].items()]
        lines += ["  counts per (class, evidence):"]
        lines += [f"    {i:3d} {e:10s} {n:6d}" for (i, e), n in c["class_evidence"].items()]
        lines += ["  matched negatives per (class, kind):"]
        lines += [f"    {i:3d} {e:18s} {n:6d}" for (i, e), n in c["matched"].items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
