"""AVA evaluator: hand-computed APs, the official rules one by one, and the fast vectorised code
against a plain per-image reference (tests/object_detection_ext/ava_eval_reference.py)."""

import collections
import json
import math

import numpy as np
import pytest

from object_detection_ext import ava_eval, voc_ap
import ava_eval_reference as reference  # noqa: E402  (this folder is on sys.path: rootdir-less tests)

BOX = (0.1, 0.1, 0.5, 0.5)  # yxyx
NEAR = (0.1, 0.1, 0.5, 0.45)  # IoU with BOX = 0.875
FAR = (0.6, 0.6, 0.9, 0.9)  # IoU with BOX = 0


def arrays(rows, kind):
    """Reference-style rows (video, ts, y1, x1, y2, x2, action, score|person) -> dict."""

    def box(r):
        return r[2:6] if len(r) > 2 else (math.nan,) * 4

    out = {
        "video_id": np.array([r[0] for r in rows], dtype=object),
        "timestamp": np.array([r[1] for r in rows], dtype=np.int64),
        "boxes": np.array([box(r) for r in rows], dtype=np.float64).reshape(-1, 4),
        "action_id": np.array([r[6] if len(r) > 2 else -1 for r in rows], dtype=np.int64),
    }
    if kind == "detections":
        out["score"] = np.array([r[7] for r in rows], dtype=np.float64)
    else:
        out["person_id"] = np.array([r[7] if len(r) > 7 else -1 for r in rows], dtype=np.int64)
    return out


def score_rows(gt, det, ids=(1, 2), **kwargs):
    return ava_eval.evaluate(
        arrays(gt, "groundtruth"), arrays(det, "detections"), list(ids), **kwargs
    )


# ---------------------------------------------------------------- AP math, by hand
def test_average_precision_hand_computed():
    # TP, FP, TP with 3 GT: P = 1, 1/2, 2/3 at R = 1/3, 1/3, 2/3 -> 1/3 * 1 + 1/3 * 2/3.
    assert voc_ap.average_precision(np.array([True, False, True]), 3) == pytest.approx(5 / 9)
    # Precision envelope: FP, TP, TP with 2 GT. P = 0, 1/2, 2/3 at R = 0, 1/2, 1. Without the
    # envelope 1/2 * 1/2 + 1/2 * 2/3 = 7/12; with it the R=1/2 step uses 2/3 -> 2/3.
    assert voc_ap.average_precision(np.array([False, True, True]), 2) == pytest.approx(2 / 3)
    assert voc_ap.average_precision(np.array([], dtype=bool), 2) == 0.0
    assert math.isnan(voc_ap.average_precision(np.array([True]), 0))


def test_per_class_average_precision_matches_single_class():
    cls = np.array([0, 1, 0, 1, 0])
    tp = np.array([True, False, False, True, True])
    ap = voc_ap.per_class_average_precision(cls, tp, np.array([3, 1, 0]))
    assert ap[0] == pytest.approx(5 / 9) and ap[1] == pytest.approx(0.5)
    assert math.isnan(ap[2])


def test_sort_helpers_equal_numpy_stable_sorts():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 200_000, 5000)  # more than one 16-bit digit
    np.testing.assert_array_equal(
        voc_ap.stable_argsort_uint(values, 200_000), np.argsort(values, kind="stable")
    )
    scores = np.round(rng.normal(0, 1, 5000), 2).astype(np.float32)  # negatives, ties, -0.0
    scores[::997] = np.nan
    np.testing.assert_array_equal(
        voc_ap.descending_score_order(scores), np.argsort(-scores, kind="stable")
    )


def test_paired_iou_has_no_plus_one():
    iou = voc_ap.paired_iou(np.array([BOX, BOX]), np.array([NEAR, FAR]))
    np.testing.assert_allclose(iou, [0.875, 0.0])


def test_argmax_box_without_fallback():
    # Two GT boxes; both detections overlap A best, the second one also overlaps B >= 0.5.
    # TF OD API: the second detection is a FP (no fall-back to B), so AP = 1/2 * 1.
    a, b = (0.1, 0.1, 0.5, 0.5), (0.1, 0.2, 0.5, 0.6)
    gt = [("v", 1, *a, 1, 0), ("v", 1, *b, 1, 1)]
    det = [("v", 1, *a, 1, 0.9), ("v", 1, 0.1, 0.13, 0.5, 0.53, 1, 0.8)]  # IoU .86 / .70
    assert voc_ap.paired_iou(np.array([det[1][2:6]]), np.array([b]))[0] >= 0.5
    assert score_rows(gt, det).per_class[1] == pytest.approx(0.5)


# ---------------------------------------------------------------- official rules
def test_cap_is_top_50_over_all_classes_after_label_map_filter():
    gt = [("v", 1, *BOX, 1, 0)]
    high = [("v", 1, *FAR, 2, 0.5 + i / 1000) for i in range(50)]
    det = high + [("v", 1, *NEAR, 1, 0.1)]
    assert score_rows(gt, det).per_class[1] == 0.0  # the TP is the 51st row: cut
    assert score_rows(gt, det, max_detections_per_key=0).per_class[1] == 1.0
    # Rows of a class outside the label map are dropped before the cap.
    outside = [("v", 1, *FAR, 7, 0.5 + i / 1000) for i in range(50)]
    result = score_rows(gt, outside + [("v", 1, *NEAR, 1, 0.1)])
    assert result.per_class[1] == 1.0
    assert result.counts["detections_outside_label_map"] == 50


def test_detections_on_keys_absent_from_groundtruth_are_ignored():
    gt = [("v", 1, *BOX, 1, 0)]
    det = [("v", 1, *NEAR, 1, 0.5), ("v", 2, *NEAR, 1, 0.9), ("w", 1, *BOX, 1, 0.8)]
    with pytest.warns(
        ava_eval.AvaEvalWarning,
        match=r"^detections row 2: 1 of 3 detection "
        r"rows on 1 video absent from the ground truth \(w\): ignored",
    ):
        result = score_rows(gt, det)
    assert result.per_class[1] == 1.0
    assert result.counts["detections_on_keys_not_in_groundtruth"] == 2


def test_key_only_rows_and_out_of_map_rows_make_groundtruth_keys():
    # Key (v,2) has only "video_id,timestamp", key (v,3) only a class outside the map: both
    # are ground-truth keys, so detections there are false positives ranked above the TP.
    gt = [("v", 1, *BOX, 1, 0), ("v", 2), ("v", 3, *BOX, 9, 0)]
    det = [("v", 1, *NEAR, 1, 0.5), ("v", 2, *BOX, 1, 0.9), ("v", 3, *BOX, 1, 0.8)]
    result = score_rows(gt, det)
    assert result.per_class[1] == pytest.approx(1 / 3)  # P = 1/3 at R = 1
    assert result.per_class[2] is None  # no ground truth: not in the mean
    assert result.map == pytest.approx(1 / 3)
    assert result.counts["groundtruth_keys"] == 3


def test_excluded_keys_are_removed_from_both_sides():
    gt = [("v", 1, *BOX, 1, 0), ("v", 2, *BOX, 1, 0)]
    det = [("v", 1, *NEAR, 1, 0.5), ("v", 2, *FAR, 1, 0.9)]
    assert score_rows(gt, det).per_class[1] == pytest.approx(0.25)  # FP first, then 1 of 2 GT
    assert score_rows(gt, det, excluded=[("v", 2)]).per_class[1] == 1.0


def test_invalid_detection_boxes_are_dropped():
    gt = [("v", 1, *BOX, 1, 0)]
    det = [("v", 1, 0.5, 0.1, 0.5, 0.5, 1, 0.9), ("v", 1, *NEAR, 1, 0.5)]
    result = score_rows(gt, det)
    assert result.per_class[1] == 1.0 and result.counts["detections_invalid_box"] == 1


# ---------------------------------------------------------------- against the reference
def random_rows(seed, num_keys=40, num_classes=6):
    """Seeded GT (persons with 1-3 actions) and detections (jittered GT, random boxes, keys
    absent from GT, classes outside the map, keys over the cap). Scores are all distinct."""
    rng = np.random.default_rng(seed)
    gt, det = [], []
    for k in range(num_keys):
        video, ts = f"vid{k % 5}", 900 + k
        if k % 13 == 0:
            gt.append((video, ts))
            continue
        for person in range(rng.integers(1, 5)):
            y, x = rng.uniform(0, 0.6, 2)
            box = tuple(np.round([y, x, y + rng.uniform(0.1, 0.4), x + rng.uniform(0.1, 0.4)], 3))
            for action in rng.choice(num_classes + 2, rng.integers(1, 4), replace=False) + 1:
                gt.append((video, ts, *box, int(action), person))
            for _ in range(rng.integers(2, 25 if k % 7 else 40)):
                jitter = np.round(np.array(box) + rng.normal(0, 0.04, 4), 3)
                jitter[2:] = np.maximum(jitter[2:], jitter[:2] + 0.01)
                det.append((video, ts, *map(float, jitter), int(rng.integers(1, num_classes + 3))))
    for _ in range(60):  # keys absent from ground truth
        det.append(("vid9", int(rng.integers(0, 50)), 0.1, 0.1, 0.4, 0.4, 1))
    scores = (rng.permutation(len(det)) + 1) / (len(det) + 1)
    det = [(*r, float(s)) for r, s in zip(det, scores)]
    return gt, det, list(range(1, num_classes + 1))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_fast_equals_reference_on_random_inputs(seed):
    gt, det, ids = random_rows(seed)
    excluded = [("vid1", 901 + 5 * seed)]
    expected_map, expected = reference.evaluate(gt, det, ids, excluded=excluded)
    with pytest.warns(ava_eval.AvaEvalWarning, match=r"60 of .* \(vid9\)"):
        result = score_rows(gt, det, ids, excluded=excluded)
    assert result.counts["detections_over_cap"] > 0
    assert result.map == pytest.approx(expected_map, abs=1e-9)
    for c in ids:
        if math.isnan(expected[c]):
            assert result.per_class[c] is None
        else:
            assert result.per_class[c] == pytest.approx(expected[c], abs=1e-9)


# ---------------------------------------------------------------- breakdowns
def test_localization_uses_unique_boxes_and_max_score():
    # One person with two actions; detections: its box for two classes (max 0.9) and a FP box
    # at 0.5 -> unique boxes: TP(0.9), FP(0.5) -> AP 1. At IoU 0.75 NEAR (0.875) still matches.
    gt = [("v", 1, *BOX, 1, 0), ("v", 1, *BOX, 2, 0)]
    det = [("v", 1, *NEAR, 1, 0.9), ("v", 1, *NEAR, 2, 0.3), ("v", 1, *FAR, 1, 0.5)]
    assert score_rows(gt, det).localization == {0.5: 1.0, 0.75: 1.0}
    det = [("v", 1, *FAR, 1, 0.9), ("v", 1, 0.1, 0.1, 0.5, 0.32, 1, 0.5)]  # IoU 0.55
    loc = score_rows(gt, det).localization
    assert loc[0.5] == pytest.approx(0.5) and loc[0.75] == 0.0


def test_by_evidence_marks_other_evidence_difficult():
    gt = [("v", 1, *BOX, 1, 0), ("v", 1, *FAR, 1, 1)]
    evidence = {
        "video_id": ["v", "v"],
        "timestamp": [1, 1],
        "person_id": [0, 1],
        "action_id": [1, 1],
        "evidence": ["self", "context"],
    }
    det = [("v", 1, *FAR, 1, 0.9), ("v", 1, *NEAR, 1, 0.2), ("v", 1, 0.0, 0.0, 0.05, 0.05, 1, 0.5)]
    result = score_rows(gt, det, evidence=evidence)
    assert result.per_class[1] == pytest.approx(1 / 2 + 1 / 2 * 2 / 3)
    # "self": the FAR detection is ignored (matched a "context" box): FP(0.5), TP(0.2) -> 1/2.
    assert result.by_evidence["self"].map == pytest.approx(0.5)
    assert result.by_evidence["context"].map == 1.0
    assert result.by_evidence["self"].num_groundtruth == 1


def test_by_evidence_ignores_rows_without_groundtruth():
    """Synthetic AVA's matched-negative rows (evidence context_negative, a class the person is
    negative for) join no ground-truth row: the breakdown is unchanged and gains no type."""
    gt = [("v", 1, *BOX, 1, 0), ("v", 1, *FAR, 1, 1)]
    evidence = {
        "video_id": ["v", "v"],
        "timestamp": [1, 1],
        "person_id": [0, 1],
        "action_id": [1, 1],
        "evidence": ["self", "context"],
    }
    extra = {k: v + [w] for (k, v), w in zip(evidence.items(), ["v", 1, 0, 20, "context_negative"])}
    det = [("v", 1, *FAR, 1, 0.9), ("v", 1, *NEAR, 1, 0.2), ("v", 1, 0.0, 0.0, 0.05, 0.05, 1, 0.5)]
    plain, with_negative = (score_rows(gt, det, ids=(1, 20), evidence=e) for e in (evidence, extra))
    assert set(with_negative.by_evidence) == {"self", "context"}
    for e in ("self", "context"):
        assert with_negative.by_evidence[e].map == plain.by_evidence[e].map
        assert with_negative.by_evidence[e].num_groundtruth == plain.by_evidence[e].num_groundtruth


def test_prepare_finds_the_detections_on_matched_negatives():
    """Each detection's most-overlapping person (IoU, -inf for none) and whether that person
    is a matched negative (evidence `<type>_negative`) of the detection's class."""
    from object_detection_ext import ava_eval_io, ava_eval_prepare

    gt = [("v", 1, *BOX, 1, 0), ("v", 1, *FAR, 2, 1)]
    evidence = {
        "video_id": ["v", "v", "v"],
        "timestamp": [1, 1, 1],
        "person_id": [0, 1, 1],
        "action_id": [1, 2, 1],
        "evidence": ["context", "self", "context_negative"],
    }
    # On person 1 for class 1 (its negative), on person 1 for class 2, near person 0, nowhere.
    det = [
        ("v", 1, *FAR, 1, 0.9),
        ("v", 1, *FAR, 2, 0.8),
        ("v", 1, *NEAR, 1, 0.7),
        ("v", 1, 0.0, 0.0, 0.05, 0.05, 1, 0.6),
    ]

    def prepare(evidence):
        return ava_eval_prepare.prepare(
            ava_eval_io.as_rows(arrays(gt, "groundtruth"), "groundtruth"),
            ava_eval_io.as_rows(arrays(det, "detections"), "detections"),
            [1, 2],
            ava_eval_io.as_excluded(None),
            ava_eval_io.as_evidence(evidence),
            50,
        )

    data = prepare(evidence)
    assert data.det_score.tolist() == [0.9, 0.8, 0.7, 0.6]  # processing order
    np.testing.assert_allclose(data.det_person_iou[:3], [1.0, 1.0, 0.875])
    assert data.det_person_iou[3] == 0.0  # overlaps person 0's box not at all
    assert list(data.det_on_negative) == ["context_negative"]
    assert data.det_on_negative["context_negative"].tolist() == [True, False, False, False]
    # Without negative rows: nothing.
    again = prepare({k: v[:2] for k, v in evidence.items()})
    assert again.det_on_negative == {} and again.det_person_iou is None


def test_by_persons_and_by_area_bins():
    gt = [
        ("v", 1, *BOX, 1, 0),  # 1 person
        ("v", 2, *BOX, 1, 0),
        ("v", 2, *FAR, 1, 1),  # 2 persons
        ("v", 3, *BOX, 1, 0),
        ("v", 3, *FAR, 1, 1),
        ("v", 3, 0.0, 0.0, 0.05, 0.05, 1, 2),
    ]
    det = [("v", 1, *NEAR, 1, 0.9), ("v", 2, *FAR, 1, 0.8), ("v", 3, *FAR, 1, 0.1)]
    result = score_rows(gt, det)
    assert result.by_persons["1"].map == 1.0
    assert result.by_persons["2"].map == pytest.approx(0.5)
    assert result.by_persons["3+"].map == pytest.approx(1 / 3)
    # Areas: 0.0025 x1, 0.09 x2 (FAR), 0.16 x3 (BOX) -> tertile bins by equal count.
    assert sum(p.num_groundtruth for p in result.by_area.values()) == 6
    assert result.by_area["large"].map == pytest.approx(1 / 3)  # BOX rows: only v/1 found


def test_per_category_and_json(tmp_path):
    gt = [("v", 1, *BOX, 1, 0), ("v", 1, *BOX, 20, 0)]
    det = [("v", 1, *NEAR, 1, 0.9), ("v", 1, *FAR, 20, 0.8)]
    result = score_rows(gt, det, ids=(1, 20, 70))
    assert result.per_category == {"pose": 1.0, "person_object": 0.0, "person_person": None}
    payload = json.loads(json.dumps(result.to_json()))
    assert payload["mAP@0.5IOU"] == 0.5
    assert payload["per_class"] == {"1": 1.0, "20": 0.0, "70": None}
    assert "frame-mAP@0.5IOU" in result.format_table()


# ---------------------------------------------------------------- CSV paths and real files
def write_csv(path, rows):
    """Reference rows (yxyx) -> AVA CSV (x1,y1,x2,y2); a 7-field row gets 7 columns."""
    with open(path, "w") as f:
        for r in rows:
            if len(r) == 2:
                f.write(f"{r[0]},{r[1]:04d}\n")
            else:
                f.write(
                    f"{r[0]},{r[1]:04d},{r[3]:.3f},{r[2]:.3f},{r[5]:.3f},{r[4]:.3f},{r[6]}"
                    + (f",{r[7]:.6g}\n" if len(r) > 7 else "\n")
                )


def test_csv_paths_equal_arrays(tmp_path):
    gt, det, ids = random_rows(7)
    det = [r for r in det if all(0 <= v <= 1 for v in r[2:6])]
    write_csv(tmp_path / "gt.csv", gt)
    write_csv(tmp_path / "det.csv", det + [("vid1", 905)])  # a key-only detection row
    (tmp_path / "map.pbtxt").write_text(
        "".join(f'item {{\n  name: "a{i}"\n  id: {i}\n}}\n' for i in ids)
    )
    (tmp_path / "excluded.csv").write_text("vid1,0906\n")
    with pytest.warns(ava_eval.AvaEvalWarning, match=r"det.csv:\d+: 60 of .* \(vid9\)"):
        from_csv = ava_eval.evaluate(
            str(tmp_path / "gt.csv"),
            str(tmp_path / "det.csv"),
            str(tmp_path / "map.pbtxt"),
            excluded=str(tmp_path / "excluded.csv"),
        )
    expected_map, _ = reference.evaluate(gt, det, ids, excluded=[("vid1", 906)])
    assert from_csv.map == pytest.approx(expected_map, abs=1e-9)
    assert from_csv.class_names[1] == "a1"


def unscored_and_zero_area(det, ids, seed):
    """Detections with a few scores removed (7-column rows: 1.0 for the official evaluator) and
    high-scoring zero-area boxes added on the most crowded keys, where they take places in the
    cap of 50. Ties are avoided: one removed score per class and key, new scores between the old
    ones (which are k / (N + 1))."""
    rng = np.random.default_rng(100 + seed)
    det = list(det)
    used_classes, used_keys = set(), set()
    for i in rng.permutation(len(det)):
        r = det[i]
        if r[6] in ids and r[6] not in used_classes and (r[0], r[1]) not in used_keys:
            det[i] = r[:7]
            used_classes.add(r[6])
            used_keys.add((r[0], r[1]))
    keys = collections.Counter((r[0], r[1]) for r in det)
    crowded = [k for k, n in keys.most_common() if k not in used_keys][:8]
    n = len(det) + 1
    for j, (video, ts) in enumerate(crowded):
        y, x = np.round(rng.uniform(0.1, 0.7, 2), 3)
        flat = [(y, x, y, x + 0.2), (y, x, y + 0.2, x), (0.0, x, 0.0, x + 0.2)][j % 3]
        for c in ids[:4]:  # four rows per key: a detector writes one per class
            det.append((video, ts, *map(float, flat), c, (n - 1 - j - 0.5 - c / 10) / n))
    det.append((*crowded[0], 0.3, 0.3, 0.3, 0.6, ids[0]))  # zero-area and no score
    return det


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_7_column_rows_and_zero_area_boxes_equal_reference(tmp_path, seed):
    """Issue 26 items 6-7: a CSV with rows without a score and zero-area boxes is read as the
    official evaluator reads it and scores exactly as the reference."""
    gt, det, ids = random_rows(seed)
    det = unscored_and_zero_area([r for r in det if all(0 <= v <= 1 for v in r[2:6])], ids, seed)
    write_csv(tmp_path / "gt.csv", gt)
    write_csv(tmp_path / "det.csv", det)
    unscored = sum(len(r) == 7 for r in det)
    zero_area = sum(r[2] == r[4] or r[3] == r[5] for r in det)
    first_unscored = 1 + next(i for i, r in enumerate(det) if len(r) == 7)
    with pytest.warns(ava_eval.AvaEvalWarning) as caught:
        result = ava_eval.evaluate(tmp_path / "gt.csv", tmp_path / "det.csv", ids)
    messages = [str(w.message) for w in caught]
    assert f"det.csv:{first_unscored}: {unscored} detection rows without a score" in messages[0]
    assert f"{zero_area} detection rows with a zero-area box" in messages[1]
    expected_map, expected = reference.evaluate(gt, det, ids)
    assert result.map == pytest.approx(expected_map, abs=1e-9)
    for c in ids:
        assert result.per_class[c] == pytest.approx(expected[c], abs=1e-9)
    assert result.counts["detections_without_score"] == unscored
    assert result.counts["detections_invalid_box"] == zero_area
    # They took places in the cap: without them fewer rows are over it.
    kept = [r for r in det if not (r[2] == r[4] or r[3] == r[5])]
    with pytest.warns(ava_eval.AvaEvalWarning, match="vid9"):
        without = score_rows(gt, [r if len(r) > 7 else (*r, 1.0) for r in kept], ids)
    assert without.counts["detections_over_cap"] < result.counts["detections_over_cap"]


def test_real_eval_sample(shared_data):
    root = shared_data / "ava_format" / "eval_sample"
    result = ava_eval.evaluate(root / "gt.csv", root / "pred.csv", root / "action_list.txt")
    # 0.0938552188552 and the class APs are the official get_ava_performance.py output.
    assert result.map == pytest.approx(0.0938552188552, abs=1e-6)
    assert result.per_class == pytest.approx(
        {1: 0.17045454545454547, 2: 0.0, 3: 0.1111111111111111}, abs=1e-9
    )


def test_real_label_map_and_excluded_files(shared_data, tmp_path):
    """mmaction2's AVA sample as ground truth, its rows as perfect detections plus one high
    false positive on a keyframe that the real excluded-timestamps sample removes."""
    root = shared_data / "ava_format"
    rows = (root / "mmaction2_ava_sample.csv").read_text().split()
    det = [",".join(r.split(",")[:7] + [f"0.{50 + i}"]) for i, r in enumerate(rows)]
    det.append("0f39OWEqJ24,0903,0.700,0.700,0.900,0.900,12,0.99")
    (tmp_path / "det.csv").write_text("\n".join(det) + "\n")
    label_map = root / "ava_action_list_v2.1_for_activitynet_2018.pbtxt"
    full = ava_eval.evaluate(root / "mmaction2_ava_sample.csv", tmp_path / "det.csv", label_map)
    # Class 12 has 3 boxes; the FP ranks first: P = 1/2, 2/3, 3/4 -> envelope 3/4 at every R.
    assert full.per_class[12] == pytest.approx(0.75)
    assert full.per_class[17] == full.per_class[74] == full.per_class[80] == 1.0
    assert full.per_class[1] is None and len(full.per_class) == 60
    excluded = ava_eval.evaluate(
        root / "mmaction2_ava_sample.csv",
        tmp_path / "det.csv",
        label_map,
        excluded=root / "mmaction2_ava_excluded_timestamps_sample.csv",
    )
    assert excluded.per_class[12] == 1.0 and excluded.per_class[74] is None
    assert excluded.map == 1.0 and excluded.counts["excluded_keys"] == 2
