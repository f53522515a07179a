"""The suite's interval code (action_tx/bench/stats.py): AP from counts against the project's
evaluator, and the bootstrap's verdicts on known cases."""

import numpy as np
import pytest

from action_tx.bench import matching, stats
from object_detection_ext import ava_eval

LABELS = {1: "a", 2: "b", 3: "c"}
EVIDENCE = ("self", "context", "long_term")


def _case(rng, videos=4, seconds=6, skill=1.0, tag="v"):
    """Ground truth, evidence and detections (arrays) of a small random val set. skill in
    [0, 1]: how much a positive's score exceeds the others'."""
    gt = {k: [] for k in ("video_id", "timestamp", "boxes", "action_id", "person_id")}
    ev = {k: [] for k in ("video_id", "timestamp", "person_id", "action_id", "evidence")}
    det = {k: [] for k in ("video_id", "timestamp", "boxes", "action_id", "score")}
    truth = []  # per detection: its person has that label
    for v in range(videos):
        vid = f"{tag}{v}"
        for t in range(900, 900 + seconds):
            for p in range(int(rng.integers(1, 4))):
                y, x = rng.uniform(0.0, 0.5, size=2)
                box = np.array([y, x, y + 0.4, x + 0.4])
                labels = [a for a in LABELS if rng.random() < 0.4]
                for a in labels:
                    gt["video_id"].append(vid)
                    gt["timestamp"].append(t)
                    gt["boxes"].append(box)
                    gt["action_id"].append(a)
                    gt["person_id"].append(p)
                    ev["video_id"].append(vid)
                    ev["timestamp"].append(t)
                    ev["person_id"].append(p)
                    ev["action_id"].append(a)
                    ev["evidence"].append(EVIDENCE[int(rng.integers(0, 3))])
                if not labels:  # a key-only row keeps the keyframe in the ground truth
                    gt["video_id"].append(vid)
                    gt["timestamp"].append(t)
                    gt["boxes"].append(np.full(4, np.nan))
                    gt["action_id"].append(-1)
                    gt["person_id"].append(-1)
                # A detection of this person (jittered: some miss IoU 0.5) per class.
                jitter = np.clip(box + rng.normal(0, 0.06, size=4), 0, 0.99)
                for a in LABELS:
                    det["video_id"].append(vid)
                    det["timestamp"].append(t)
                    det["boxes"].append(jitter)
                    det["action_id"].append(a)
                    det["score"].append(float(rng.random() + skill * (a in labels)))
                    truth.append(a in labels)
    as_arrays = lambda d: {  # noqa: E731
        k: (np.array(v, dtype=object) if k in ("video_id", "evidence") else np.array(v))
        for k, v in d.items()
    }
    return as_arrays(gt), as_arrays(ev), as_arrays(det), np.array(truth)


def _fix_boxes(det):
    """yxyx boxes with y1 < y2 and x1 < x2 (the jitter may swap them)."""
    b = det["boxes"]
    det["boxes"] = np.stack(
        [
            np.minimum(b[:, 0], b[:, 2]),
            np.minimum(b[:, 1], b[:, 3]),
            np.maximum(b[:, 0], b[:, 2]) + 1e-3,
            np.maximum(b[:, 1], b[:, 3]) + 1e-3,
        ],
        axis=1,
    )
    return det


def test_ap_from_counts_equals_the_evaluator_on_a_small_known_case():
    # Keyframe A: class 1 person found (TP, 0.9), a false detection (0.8); keyframe B: a
    # class-1 person with a context label found late (0.3), a long_term one missed.
    gt = dict(
        video_id=np.array(["v", "v", "v"], dtype=object),
        timestamp=np.array([900, 901, 901]),
        boxes=np.array([[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 0.9, 0.9]]),
        action_id=np.array([1, 1, 1]),
        person_id=np.array([0, 0, 1]),
    )
    evidence = dict(
        video_id=np.array(["v", "v", "v"], dtype=object),
        timestamp=np.array([900, 901, 901]),
        person_id=np.array([0, 0, 1]),
        action_id=np.array([1, 1, 1]),
        evidence=np.array(["self", "context", "long_term"], dtype=object),
    )
    det = dict(
        video_id=np.array(["v", "v", "v"], dtype=object),
        timestamp=np.array([900, 900, 901]),
        boxes=np.array([[0.1, 0.1, 0.5, 0.5], [0.6, 0.0, 0.9, 0.3], [0.1, 0.1, 0.5, 0.5]]),
        action_id=np.array([1, 1, 1]),
        score=np.array([0.9, 0.8, 0.3]),
    )
    matches = matching.match_run(gt, det, LABELS, evidence=evidence)
    ones = np.ones((1, 2))
    # all: TP, FP, TP of 3 positives: AP = 1/3 * 1 + 1/3 * 2/3 = 5/9.
    assert stats.weighted_map(matches.by_evidence["all"], ones)[0] == pytest.approx(5 / 9)
    # context: only the 0.3 detection's box counts; the 0.9 TP is ignored (difficult), the
    # 0.8 FP stays: FP then TP -> AP = 1/2.
    assert stats.weighted_map(matches.by_evidence["context"], ones)[0] == pytest.approx(0.5)
    assert stats.weighted_map(matches.by_evidence["long_term"], ones)[0] == 0.0
    result = ava_eval.evaluate(gt, det, LABELS, evidence=evidence, breakdowns=False)
    assert result.map == pytest.approx(5 / 9)
    assert result.by_evidence["context"].map == pytest.approx(0.5)
    # Keyframe 901 twice: TP, FP, then the 0.3 TP twice, of 1 + 2 x 2 positives:
    # 1/5 * 1 + 2/5 * 3/4 = 1/2.
    assert stats.weighted_map(matches.by_evidence["all"], [[1, 2]])[0] == pytest.approx(0.5)


def test_the_lookalike_slice_counts_only_positives_and_matched_negatives():
    """One keyframe: A (class 1, context) is a positive, B a matched negative of class 1
    (evidence context_negative), C neither. Class-1 detections on C (0.9), B (0.8), A (0.7).
    The evaluator's context AP counts C and B as false positives (1/3); the look-alike slice
    leaves C out (FP then TP: 1/2), which is what the positive rate 1/(1+1) describes."""
    a, b, c = [0.0, 0.0, 0.3, 0.3], [0.0, 0.5, 0.3, 0.8], [0.6, 0.6, 0.9, 0.9]
    gt = dict(
        video_id=np.array(["v"] * 3, dtype=object),
        timestamp=np.array([900] * 3),
        boxes=np.array([a, b, c]),
        action_id=np.array([1, 2, 2]),
        person_id=np.array([0, 1, 2]),
    )
    evidence = dict(
        video_id=np.array(["v"] * 4, dtype=object),
        timestamp=np.array([900] * 4),
        person_id=np.array([0, 1, 2, 1]),
        action_id=np.array([1, 2, 2, 1]),
        evidence=np.array(["context", "self", "self", "context_negative"], dtype=object),
    )
    det = dict(
        video_id=np.array(["v"] * 5, dtype=object),
        timestamp=np.array([900] * 5),
        boxes=np.array([c, b, a, b, [0.4, 0.0, 0.5, 0.1]]),
        action_id=np.array([1, 1, 1, 2, 1]),
        score=np.array([0.9, 0.8, 0.7, 0.6, 0.5]),
    )
    matches = matching.match_run(gt, det, LABELS, evidence=evidence)
    ones = np.ones((1, 1))
    assert stats.weighted_map(matches.by_evidence["context"], ones)[0] == pytest.approx(1 / 3)
    lookalike = matches.by_evidence[stats.lookalike("context")]
    assert stats.weighted_map(lookalike, ones)[0] == pytest.approx(0.5)
    # Counted: the class-1 detections on B (false) and A (true); not C's, not B's class-2
    # one (B imitates class 1 only), not the one on nobody.
    assert lookalike.det_score.tolist() == [0.8, 0.7]
    assert lookalike.det_tp.tolist() == [False, True]
    assert set(matches.by_evidence) == {"all", "self", "context", "context_lookalike"}
    assert _slices_equal_the_evaluator(gt, det, evidence, matches)


def _slices_equal_the_evaluator(gt, det, evidence, matches) -> bool:
    """The look-alike slice leaves the evaluator's own slices as they were."""
    result = ava_eval.evaluate(gt, det, LABELS, evidence=evidence, breakdowns=False)
    ones = np.ones((1, 1))
    return all(
        stats.weighted_map(matches.by_evidence[e], ones)[0] == pytest.approx(r.map)
        for e, r in result.by_evidence.items()
    )


def test_ap_from_counts_equals_the_evaluator_on_random_data_and_duplicated_keyframes():
    rng = np.random.default_rng(3)
    gt, ev, det, _ = _case(rng, skill=0.5)
    det = _fix_boxes(det)
    matches = matching.match_run(gt, det, LABELS, evidence=ev)
    result = ava_eval.evaluate(gt, det, LABELS, evidence=ev, breakdowns=False)
    num_keys = matches.by_evidence["all"].num_keys
    ones = np.ones((1, num_keys))
    assert stats.weighted_map(matches.by_evidence["all"], ones)[0] == pytest.approx(result.map)
    for e in EVIDENCE:
        expected = result.by_evidence[e].map
        assert stats.weighted_map(matches.by_evidence[e], ones)[0] == pytest.approx(expected)
    # Integer weights = the evaluator on a val set where keyframe k appears w_k times.
    keys = sorted({(v, t) for v, t in zip(gt["video_id"], gt["timestamp"])})
    weights = rng.multinomial(num_keys, np.full(num_keys, 1 / num_keys))
    copies = {key: int(w) for key, w in zip(keys, weights)}

    def repeat(rows):
        out = {k: [] for k in rows}
        for i in range(len(rows["video_id"])):
            key = (rows["video_id"][i], rows["timestamp"][i])
            for c in range(copies[key]):
                for k in rows:
                    out[k].append(f"{rows[k][i]}#{c}" if k == "video_id" else rows[k][i])
        return {
            k: np.array(v, dtype=object if k in ("video_id", "evidence") else None)
            for k, v in out.items()
        }

    dup = ava_eval.evaluate(repeat(gt), repeat(det), LABELS, evidence=repeat(ev), breakdowns=False)
    got = stats.weighted_map(matches.by_evidence["all"], weights[None].astype(float))[0]
    assert got == pytest.approx(dup.map)
    got = stats.weighted_map(matches.by_evidence["context"], weights[None].astype(float))[0]
    assert got == pytest.approx(dup.by_evidence["context"].map)


def _seeds(skill, seeds=3, seed=0):
    """Matches of `seeds` models of one configuration on the same val set."""
    out = []
    for s in range(seeds):
        gt, ev, det, truth = _case(np.random.default_rng(100), skill=0.0)  # same val set
        det = _fix_boxes(det)
        scores = np.random.default_rng([seed, s]).random(len(det["score"]))
        det["score"] = scores + skill * truth
        out.append(matching.match_run(gt, det, LABELS, evidence=ev))
    return out


def test_identical_runs_give_an_interval_around_zero_and_undecided():
    runs = _seeds(0.3)
    summary = stats.summarize(
        {"a": {"rpn": runs}, "b": {"rpn": list(runs)}},
        [_Claim("same", "a", "b", "context", "rpn")],
        resamples=300,
        seed=7,
    )
    claim = summary["claims"]["same"]
    assert claim["difference"]["mean"] == 0.0
    assert claim["difference"]["low"] < 0 < claim["difference"]["high"]
    assert claim["verdict"] == "undecided"
    cell = summary["runs"]["a"]["rpn"]["context"]
    assert cell["low"] <= cell["mean"] <= cell["high"] and len(cell["per_seed"]) == 3


def test_an_arms_interval_does_not_depend_on_the_arms_drawn_before_it():
    """Seed draws come from (bootstrap seed, arm name): summarizing another run beside it, or
    a new evidence slice, leaves a claim's interval exactly as it was."""
    a, b, c = _seeds(0.3, seed=1), _seeds(0.2, seed=2), _seeds(0.1, seed=3)
    claim = [_Claim("ab", "a", "b", "context", "rpn")]
    alone = stats.summarize({"a": {"rpn": a}, "b": {"rpn": b}}, claim, resamples=200, seed=5)
    beside = stats.summarize(
        {"c": {"rpn": c}, "a": {"rpn": a}, "b": {"rpn": b}}, claim, resamples=200, seed=5
    )
    assert beside["claims"]["ab"] == alone["claims"]["ab"]
    assert beside["runs"]["a"] == alone["runs"]["a"]


def test_clearly_better_holds_and_clearly_worse_fails():
    good, poor = _seeds(2.0, seed=1), _seeds(0.0, seed=2)
    claims = [
        _Claim("better", "good", "poor", "all", "rpn"),
        _Claim("worse", "poor", "good", "long_term", "rpn"),
        _Claim("absent", "good", "missing", "all", "rpn"),
    ]
    summary = stats.summarize(
        {"good": {"rpn": good}, "poor": {"rpn": poor}}, claims, resamples=200, seed=3
    )
    assert summary["claims"]["better"]["verdict"] == "holds"
    assert summary["claims"]["better"]["difference"]["low"] > 0.05
    assert summary["claims"]["worse"]["verdict"] == "fails"
    assert summary["claims"]["absent"]["verdict"] == "not measured"
    assert "missing" in summary["claims"]["absent"]["missing"]
    again = stats.summarize(
        {"good": {"rpn": good}, "poor": {"rpn": poor}}, claims, resamples=200, seed=3
    )
    assert again == summary  # seeded


def test_verdict_and_matches_round_trip(tmp_path):
    assert stats.verdict(0.01, 0.2) == "holds"
    assert stats.verdict(-0.2, -0.01) == "fails"
    assert stats.verdict(-0.1, 0.1) == "undecided"
    run = _seeds(0.5, seeds=1)[0]
    matching.save_matches(str(tmp_path / "m.npz"), run)
    back = matching.load_matches(str(tmp_path / "m.npz"))
    assert back.groundtruth == run.groundtruth and set(back.by_evidence) == set(run.by_evidence)
    ones = np.ones((1, run.by_evidence["all"].num_keys))
    for e, m in run.by_evidence.items():
        assert stats.weighted_map(back.by_evidence[e], ones) == pytest.approx(
            stats.weighted_map(m, ones)
        )


class _Claim:
    def __init__(self, id, better, other, evidence, proposals):
        self.id, self.better, self.other = id, better, other
        self.evidence, self.proposals = evidence, proposals
