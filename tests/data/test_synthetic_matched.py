"""Synthetic AVA's context look-alikes: matched negatives drawn to the positives' own crops
(synthetic_labels.select_matched), checked on a hand case and, from the scene state, on the
tiny preset."""

import collections
import os

import numpy as np
import pytest

from action_tx.data import synthetic
from action_tx.data import synthetic_labels as L
from action_tx.data.synthetic_story import ARM_DOWN, SIT, WALK

SEED = 0


def _rows(spec):
    """[(action, evidence, signature)] -> (evidence rows, signatures), one keyframe each."""
    rows = [("v", t, 0, a, e) for t, (a, e, _) in enumerate(spec)]
    return rows, [s for _, _, s in spec]


def test_select_matched_keeps_look_alikes_of_each_signature_in_proportion():
    # Class 74: positives of signatures A (2) and B (1); candidates A x5, B x1, C x4 (no
    # positive looks like C). ratio 1.5: A keeps ceil(3) = 3, B its 1, C none; 4 >= 3 positives.
    spec = [(74, "context", "A")] * 2 + [(74, "context", "B")]
    spec += [(74, "context_negative", "A")] * 5 + [(74, "context_negative", "B")]
    spec += [(74, "context_negative", "C")] * 4
    spec += [(12, "self", None), (74, "long_term_negative", None), (80, "long_term", None)]
    rows, sigs = _rows(spec)
    keep = L.select_matched(rows, sigs, np.random.default_rng(0), ratio=1.5)
    kept = collections.Counter((s, e) for (_, e, s), k in zip(spec, keep) if k)
    assert kept[("A", "context_negative")] == 3
    assert kept[("B", "context_negative")] == 1
    assert kept[("C", "context_negative")] == 0
    assert all(k for (_, e, _), k in zip(spec, keep) if e != "context_negative")
    # Seeded: the same generator state draws the same rows, another may draw other A rows.
    assert keep == L.select_matched(rows, sigs, np.random.default_rng(0), ratio=1.5)


def test_select_matched_tops_a_short_class_up_to_its_positives():
    # Two positives of A but one look-alike of A: one C candidate is added back so the class
    # keeps as many negatives as positives (SYNTHETIC_DATA.md), and no more.
    spec = [(49, "context", "A")] * 2 + [(49, "context_negative", "A")]
    spec += [(49, "context_negative", "C")] * 3
    rows, sigs = _rows(spec)
    keep = L.select_matched(rows, sigs, np.random.default_rng(1), ratio=1.5)
    kept = collections.Counter(s for (_, e, s), k in zip(spec, keep) if k and e.endswith("ve"))
    assert kept == {"A": 1, "C": 1}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("syn_tiny_matched"))
    return out, synthetic.generate(out, preset="tiny", seed=SEED, check=True)


def _own_crop(s, p, k, C):
    """What p's own box shows over its +-C frame window, recomputed from the scene state:
    sits, sits in a vehicle, talks, moves (place or pose), turns, uses an arm (holds, phone,
    reaches, wheel), shakes hands (fractions of the window, so a mean compares them)."""
    w = slice(max(0, k - C), min(s.num_frames, k + C + 1))
    return np.array(
        [
            np.mean(s.pose[p, w] == SIT),
            np.mean(s.vehicle[p, w] >= 0),
            np.mean(s.talking[p, w]),
            float(np.ptp(s.x[p, w]) > 0 or (s.pose[p, w] >= WALK).any()),
            float(np.ptp(s.facing[p, w]) > 0),
            np.mean(s.arm[p, w] != ARM_DOWN),
            np.mean(s.handshake[p, w] >= 0),
        ]
    )


def test_context_matched_negatives_look_like_the_positives_in_their_own_crop(tiny):
    """SYNTHETIC_DATA.md "Clean evidence": a context look-alike's own crop is drawn from the
    positives' distribution. Per class (both splits pooled), the means of what the person's
    box shows over the clip window agree within 0.1 between positives and matched negatives.
    Before the draw the gaps reached 0.21-0.29 (listen negatives sat in vehicles and held cups,
    which no listener does). One gap is left, bounded at 0.2: 30 % of the listeners turn inside
    their window (back to the talker after a burst they faced away from) and fewer look-alikes
    do; the draw keeps every such look-alike, and only new scenarios can stage more."""
    root, summary = tiny
    fps = summary["params"]["fps"]
    C = int(round(L.CLIP_HALF_S * fps))
    states = {
        f"syn{i:04d}": synthetic.simulate_video(summary["params"], SEED, i)
        for i in range(summary["params"]["videos"])
    }
    crops = collections.defaultdict(list)
    for split in ("train", "val"):
        with open(os.path.join(root, "annotations", f"evidence_{split}.csv")) as f:
            next(f)
            for line in f:
                vid, t, p, a, e = line.strip().split(",")
                if e in ("context", "context_negative"):
                    crops[int(a), e].append(_own_crop(states[vid], int(p), int(t) * fps, C))
    for a in (49, 74, 80):
        pos, neg = np.array(crops[a, "context"]), np.array(crops[a, "context_negative"])
        assert len(pos) >= 10 and len(neg) >= len(pos), (a, len(pos), len(neg))
        gap = np.abs(pos.mean(0) - neg.mean(0))
        bound = np.full(len(gap), 0.1)
        bound[4] = 0.2 if a == 74 else 0.1  # turns (the docstring's one gap)
        assert np.all(gap < bound), (a, pos.mean(0).round(2), neg.mean(0).round(2))
