"""The clean-instrument check (action_tx/bench/chance.py): positive rates from matched
negatives, and a blind model's AP against them."""

import numpy as np
import pytest

from action_tx.bench import chance, matching, stats


def _evidence(rows):
    video, stamp, person, action, kind = zip(*rows)
    return dict(
        video_id=np.array(video, dtype=object),
        timestamp=np.array(stamp),
        person_id=np.array(person),
        action_id=np.array(action),
        evidence=np.array(kind, dtype=object),
    )


def test_positive_rates_count_labels_against_their_matched_negatives():
    rows = [
        ("v", 900, 0, 11, "context"),
        ("v", 901, 0, 11, "context"),
        ("v", 902, 1, 11, "context_negative"),
        ("v", 903, 1, 11, "context_negative"),
        ("v", 900, 1, 12, "context"),
        ("v", 901, 1, 12, "context_negative"),
        ("v", 902, 0, 12, "context_negative"),
        ("v", 903, 0, 12, "context_negative"),
        ("v", 904, 0, 11, "long_term"),
        ("v", 905, 0, 11, "long_term_negative"),
        ("v", 906, 0, 11, "long_term_negative"),  # excluded below
        ("v", 900, 0, 1, "self"),  # no matched negatives: no chance level
        ("v", 907, 0, 99, "context_negative"),  # not in the label map
    ]
    rates = chance.positive_rates(_evidence(rows), label_ids=[1, 11, 12], excluded=[("v", 906)])
    assert set(rates) == {"context", "long_term"}
    assert rates["context"]["per_class"] == {11: [2, 2], 12: [1, 3]}
    assert rates["context"]["rate"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert rates["long_term"]["rate"] == pytest.approx(0.5)
    pooled = chance.positive_rates([_evidence(rows), _evidence(rows)], label_ids=[1, 11, 12])
    assert pooled["long_term"]["per_class"] == {11: [2, 4]}


def test_random_ranking_ap_is_the_chance_level_of_the_check():
    # One positive, one negative: first (AP 1) or second (AP 1/2) with equal odds -> 0.75.
    one = chance.random_ranking_ap({11: [1, 1]}, draws=4000, seed=0)
    assert one["mean"] == pytest.approx(0.75, abs=0.02) and one["low"] == 0.5 and one["high"] == 1
    # Many look-alikes: a little above the rate 0.5, the same for the same seed, and classes
    # without positives do not count.
    many = chance.random_ranking_ap({11: [300, 300], 12: [0, 5]}, draws=100, seed=3)
    assert 0.5 < many["low"] < many["mean"] < many["high"] < 0.56
    assert many == chance.random_ranking_ap({"11": [300, 300], "12": [0, 5]}, draws=100, seed=3)
    assert chance.random_ranking_ap({12: [0, 5]}) is None


def test_chance_verdict():
    assert chance.chance_verdict(dict(mean=0.5, low=0.45, high=0.58), 0.5) == "holds"
    assert chance.chance_verdict(dict(mean=0.8, low=0.7, high=0.9), 0.5) == "fails"
    assert chance.chance_verdict(dict(mean=0.55, low=0.45, high=0.65), 0.5) == "undecided"
    assert chance.chance_verdict(dict(mean=0.52, low=None, high=None), 0.5) == "holds"


def _val_and_scores(blind: bool, n=1500, seed=0):
    """One person a keyframe: a third positive for class 11 (context), a third its matched
    negative, a third unrelated. Blind: it finds the look-alikes (positive or matched negative)
    but ranks them at random; seeing: it also sees the cue."""
    rng = np.random.default_rng(seed)
    kind = np.arange(n) % 3  # 0 positive, 1 matched negative, 2 unrelated
    box = np.tile([0.2, 0.2, 0.7, 0.7], (n, 1))
    video = np.array(["v"] * n, dtype=object)
    stamp = np.arange(1000, 1000 + n)
    positive = kind == 0
    gt = dict(
        video_id=video,
        timestamp=stamp,
        boxes=np.where(positive[:, None], box, np.nan),  # unlabelled persons: key-only rows
        action_id=np.where(positive, 11, -1),
        person_id=np.where(positive, 0, -1),
    )
    look_alike = kind < 2
    evidence = _evidence(
        [
            ("v", t, 0, 11, "context" if k == 0 else "context_negative")
            for t, k in zip(stamp[look_alike], kind[look_alike])
        ]
    )
    score = 0.5 * rng.random(n) + 0.5 * look_alike + (1.0 * positive if not blind else 0.0)
    det = dict(video_id=video, timestamp=stamp, boxes=box, action_id=np.full(n, 11), score=score)
    return gt, det, evidence


@pytest.mark.parametrize("blind,expected", [(True, "holds"), (False, "fails")])
def test_a_blind_model_scores_near_the_positive_rate_and_a_seeing_one_does_not(blind, expected):
    gt, det, evidence = _val_and_scores(blind)
    rate = chance.positive_rates(evidence)["context"]["rate"]
    assert rate == 0.5  # 500 positives, 500 matched negatives: the pooled splits' size
    matches = matching.match_run(gt, det, {11: "listen to"}, evidence=evidence)
    boot = stats.Bootstrap(matches.by_evidence["context"].num_keys, resamples=200, seed=1)
    ap = boot.interval(boot.arm([matches.by_evidence["context"]])).to_json()
    assert chance.chance_verdict(ap, rate) == expected
    if blind:
        assert abs(ap["mean"] - rate) < 0.1
    else:
        assert ap["mean"] == pytest.approx(1.0)
