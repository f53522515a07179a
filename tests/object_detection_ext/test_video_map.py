"""video-mAP (object_detection_ext.video_map): hand-computed cases and a plain-Python reference."""

import numpy as np
import pytest

from object_detection_ext import video_link, video_map

IDS = [1, 2]


def _rows(entries):
    """entries: (video, timestamp, box yxyx, action, last) -> dict of arrays."""
    v, t, b, a, last = zip(*entries)
    return {
        "video_id": np.array(v, object),
        "timestamp": np.array(t),
        "boxes": np.array(b, float),
        "action_id": np.array(a),
        "last": np.array(last),
    }


def _gt(entries):
    r = _rows(entries)
    r["person_id"] = r.pop("last").astype(int)
    return r


def _det(entries):
    r = _rows(entries)
    r["score"] = r.pop("last").astype(float)
    return r


BOX = (0.0, 0.0, 0.5, 0.5)
SHIFTED = (0.0, 0.1, 0.5, 0.6)  # IoU with BOX: 0.2 / 0.3 = 2/3


def test_perfect_tube_is_one():
    gt = _gt([("v", t, BOX, 1, 0) for t in range(10)])
    det = _det([("v", t, BOX, 1, 0.9) for t in range(10)])
    result = video_map.evaluate(gt, det, IDS)
    assert result.map == {0.2: 1.0, 0.5: 1.0, 0.75: 1.0}
    assert result.map_50_95 == 1.0
    assert np.isnan(result.per_class[0.5][2])
    assert result.counts["linked_tubes"] == 1


def test_half_the_frames_shifted():
    # ST-IoU = (5 * 1 + 5 * 2/3) / 10 = 5/6: a true positive up to 0.8, not from 0.85.
    gt = _gt([("v", t, BOX, 1, 0) for t in range(10)])
    det = _det([("v", t, BOX if t < 5 else SHIFTED, 1, 0.9) for t in range(10)])
    result = video_map.evaluate(gt, det, IDS)
    assert result.map == {0.2: 1.0, 0.5: 1.0, 0.75: 1.0}
    assert result.map_50_95 == pytest.approx(0.7)  # 0.5 .. 0.8: 7 of 10 thresholds


def test_temporal_half_and_wrong_class():
    gt = _gt([("v", t, BOX, 1, 0) for t in range(10)])
    half = _det([("v", t, BOX, 1, 0.9) for t in range(5)])  # tIoU 0.5 -> ST-IoU 0.5
    result = video_map.evaluate(gt, half, IDS)
    assert result.map == {0.2: 1.0, 0.5: 1.0, 0.75: 0.0}
    wrong = _det([("v", t, BOX, 2, 0.9) for t in range(10)])
    result = video_map.evaluate(gt, wrong, IDS)
    assert result.map == {0.2: 0.0, 0.5: 0.0, 0.75: 0.0}
    assert result.per_class[0.5] == {1: 0.0, 2: pytest.approx(np.nan, nan_ok=True)}


def test_keyframe_stride_links_across_frames():
    # Keyframes every 3rd frame are consecutive positions; a gap over max_gap splits a tube.
    gt = _gt([("v", t, BOX, 1, 0) for t in range(0, 30, 3)])
    det = _det([("v", t, BOX, 1, 0.9) for t in range(0, 30, 3)])
    assert video_map.evaluate(gt, det, IDS).map[0.75] == 1.0
    tubes = video_link.link_tubes([0, 0, 0, 0], [0, 1, 4, 8], [BOX] * 4, [1.0] * 4, max_gap=2)
    np.testing.assert_array_equal(tubes.first, [0, 8])  # 2 skipped: linked; 3: split
    np.testing.assert_array_equal(tubes.last, [4, 8])


def test_linking_order_and_gap_fill():
    # Two tubes, the better-scored one takes the better detection; a skipped position
    # repeats the last box.
    other = (0.05, 0.0, 0.55, 0.5)  # IoU with BOX 0.9/1.1 (> 0.5)
    stream = [0, 0, 0, 0, 0]
    pos = [0, 0, 1, 1, 3]
    boxes = [BOX, other, BOX, other, BOX]
    scores = [0.9, 0.5, 0.4, 0.8, 0.7]
    tubes = video_link.link_tubes(stream, pos, boxes, scores)
    # Tube 0 (0.9) takes 0.8 at position 1 (the highest-scoring box within IoU), tube 1 gets 0.4.
    np.testing.assert_allclose(tubes.score, [(0.9 + 0.8 + 0.7) / 3, (0.5 + 0.4) / 2])
    np.testing.assert_array_equal(tubes.last, [3, 1])
    np.testing.assert_allclose(tubes.boxes[tubes.start[0] + 2], other)  # position 2: held


# ---------------------------------------------------------------------------------------------
# Independent reference: loops over dicts, written from the definitions.


def _iou(a, b):
    ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ih * iw
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _reference(gt, det, ids, thr, link_iou=0.5, max_gap=5, top_n=10):
    frames = {}
    for v, t in list(zip(gt["video_id"], gt["timestamp"])) + list(
        zip(det["video_id"], det["timestamp"])
    ):
        frames.setdefault(v, set()).add(int(t))
    pos = {v: {t: i for i, t in enumerate(sorted(ts))} for v, ts in frames.items()}
    gtubes = {}
    for v, t, b, a, p in zip(
        gt["video_id"], gt["timestamp"], gt["boxes"], gt["action_id"], gt["person_id"]
    ):
        gtubes.setdefault((v, a, p), {})[pos[v][int(t)]] = tuple(b)
    tubes = []  # (video, class, {pos: box}, scores)
    for v in sorted(frames):
        for c in ids:
            alive = []
            for t in range(len(frames[v])):
                dets = sorted(
                    [
                        (s, tuple(b))
                        for vv, tt, b, a, s in zip(
                            det["video_id"],
                            det["timestamp"],
                            det["boxes"],
                            det["action_id"],
                            det["score"],
                        )
                        if vv == v and a == c and pos[v][int(tt)] == t
                    ],
                    key=lambda d: -d[0],
                )[:top_n]
                alive = [k for k in alive if t - max(tubes[k][2]) <= max_gap + 1]
                free = list(range(len(dets)))
                for k in sorted(alive, key=lambda k: (-np.mean(tubes[k][3]), k)):
                    last = tubes[k][2][max(tubes[k][2])]
                    ok = [i for i in free if _iou(last, dets[i][1]) >= link_iou]
                    if ok:
                        tubes[k][2][t] = dets[ok[0]][1]
                        tubes[k][3].append(dets[ok[0]][0])
                        free.remove(ok[0])
                for i in free:
                    tubes.append((v, c, {t: dets[i][1]}, [dets[i][0]]))
                    alive.append(len(tubes) - 1)
    aps = {}
    for c in ids:
        cand = sorted([tb for tb in tubes if tb[1] == c], key=lambda tb: -np.mean(tb[3]))
        gts = {k: g for k, g in gtubes.items() if k[1] == c}
        taken, tp = set(), []
        for v, _, boxes, _ in cand:
            lo, hi = min(boxes), max(boxes)
            held, dense = None, {}
            for t in range(lo, hi + 1):
                held = boxes.get(t, held)
                dense[t] = held
            best, best_k = -1.0, None
            for k, g in gts.items():
                if k[0] != v:
                    continue
                glo, ghi = min(g), max(g)
                inter = set(range(lo, hi + 1)) & set(range(glo, ghi + 1))
                union = set(range(lo, hi + 1)) | set(range(glo, ghi + 1))
                s = sum(_iou(dense[t], g[t]) if t in g else 0.0 for t in inter) / len(union)
                if s > best:
                    best, best_k = s, k
            hit = best_k is not None and best >= thr and best_k not in taken
            if hit:
                taken.add(best_k)
            tp.append(hit)
        if not gts:
            continue
        ctp = np.cumsum(tp)
        prec = ctp / np.arange(1, len(tp) + 1)
        rec = ctp / len(gts)
        ap, prev = 0.0, 0.0
        for i in range(len(tp)):
            if tp[i]:
                ap += (rec[i] - prev) * max(prec[i:])
                prev = rec[i]
        aps[c] = ap
    return float(np.mean(list(aps.values())))


def test_matches_reference_on_random_tubes():
    rng = np.random.default_rng(3)
    gt_rows, det_rows = [], []
    for v in range(4):
        n = int(rng.integers(12, 20))
        for person in range(2):
            c = int(rng.choice(IDS))
            s, e = sorted(rng.integers(0, n, 2))
            corner = rng.uniform(0, 0.5, 2)
            for t in range(s, e + 1):
                box = np.r_[corner, corner + 0.4] + rng.normal(0, 0.01, 4)
                gt_rows.append((f"v{v}", 2 * t, tuple(box), c, person))
                for _ in range(int(rng.integers(0, 3))):
                    jit = box + rng.normal(0, 0.06, 4)
                    a = c if rng.random() < 0.8 else 3 - c
                    det_rows.append((f"v{v}", 2 * t, tuple(jit), a, float(rng.random())))
    gt, det = _gt(gt_rows), _det(det_rows)
    result = video_map.evaluate(gt, det, IDS, thresholds=(0.2, 0.5))
    for thr in (0.2, 0.5):
        assert result.map[thr] == pytest.approx(_reference(gt, det, IDS, thr), abs=1e-9)
    assert 0.0 < result.map[0.5] < 1.0


def test_excluded_keyframes_leave_both_sides():
    # Detections only on frames 0-4, ground truth on 0-9: tIoU 0.5, unless 5-9 are excluded.
    gt = _gt([("v", t, BOX, 1, 0) for t in range(10)])
    det = _det([("v", t, BOX, 1, 0.9) for t in range(5)])
    assert video_map.evaluate(gt, det, IDS).map[0.75] == 0.0
    result = video_map.evaluate(gt, det, IDS, excluded=[("v", t) for t in range(5, 10)])
    assert result.map[0.75] == 1.0 and result.counts["detection_rows"] == 5
