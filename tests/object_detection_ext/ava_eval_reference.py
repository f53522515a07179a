"""A deliberately plain, slow evaluator of the official AVA semantics, for tests only.

Written from the rules of ActivityNet's get_ava_performance.py / TF OD API (not from our fast
code): per image and per class loops, one detection at a time.
Rows: (video_id, timestamp, y1, x1, y2, x2, action_id, score); ground truth may also hold
key-only rows (video_id, timestamp). A detection row without its score (7 fields) has score 1.0,
as the official `read_csv` reads a 7-column row. Detection boxes with y1 >= y2 or x1 >= x2
(zero-area ones included) take their place in the per-image cap and are then dropped, as
`PerImageEvaluation._remove_invalid_boxes` does.
"""

import collections
import math


def iou(a, b):
    ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ih * iw
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def voc_ap(tp_flags, num_gt):
    if num_gt == 0:
        return math.nan
    if not tp_flags:
        return 0.0
    precision, recall, tp = [], [], 0
    for i, flag in enumerate(tp_flags):
        tp += flag
        precision.append(tp / (i + 1))
        recall.append(tp / num_gt)
    recall = [0.0] + recall + [1.0]
    precision = [0.0] + precision + [0.0]
    for i in range(len(precision) - 2, -1, -1):
        precision[i] = max(precision[i], precision[i + 1])
    return sum(
        (recall[i] - recall[i - 1]) * precision[i]
        for i in range(1, len(recall))
        if recall[i] != recall[i - 1]
    )


def evaluate(gt_rows, det_rows, class_ids, excluded=(), cap=50, threshold=0.5):
    """Returns (mAP, {class id: AP})."""
    excluded = set(excluded)
    gt_keys = {(r[0], r[1]) for r in gt_rows} - excluded
    gt = collections.defaultdict(list)
    for r in gt_rows:
        if len(r) > 2 and r[6] in class_ids and (r[0], r[1]) not in excluded:
            gt[(r[0], r[1])].append((r[2:6], r[6]))
    dets = collections.defaultdict(list)
    for r in det_rows:
        if r[6] in class_ids:
            dets[(r[0], r[1])].append((r[7] if len(r) > 7 else 1.0, r[2:6], r[6]))
    scored = collections.defaultdict(list)  # class -> [(score, is_tp)]
    for key, items in dets.items():
        if key not in gt_keys:
            continue
        items = sorted(items, key=lambda t: -t[0])
        if cap:
            items = items[:cap]
        for c in class_ids:
            gt_boxes = [b for b, a in gt[key] if a == c]
            taken = [False] * len(gt_boxes)
            for score, box, a in items:
                if a != c or not (box[0] < box[2] and box[1] < box[3]):
                    continue
                is_tp = False
                if gt_boxes:
                    overlaps = [iou(box, g) for g in gt_boxes]
                    best = overlaps.index(max(overlaps))
                    if overlaps[best] >= threshold and not taken[best]:
                        taken[best] = is_tp = True
                scored[c].append((score, is_tp))
    num_gt = collections.Counter(a for boxes in gt.values() for _, a in boxes)
    aps = {}
    for c in class_ids:
        ranked = sorted(scored[c], key=lambda t: -t[0])
        aps[c] = voc_ap([t for _, t in ranked], num_gt[c])
    valid = [v for v in aps.values() if not math.isnan(v)]
    return (sum(valid) / len(valid) if valid else math.nan), aps
