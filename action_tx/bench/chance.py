"""Is the instrument clean? A model blind to an evidence type's deciding cue scores near chance.

SYNTHETIC_DATA.md ("Clean evidence: matched negatives"): for every `context` and `long_term`
positive the generator stages matched negatives, look-alikes that differ only in the deciding
cue (another person's state; an event 2-6 s back), written to the evidence file with evidence
`context_negative` / `long_term_negative` and the class they imitate. A model that cannot see
the cue ranks the look-alike set (positives + matched negatives) at random, so its AP on that
set is near the type's positive rate

    rate_c = P_c / (P_c + N_c),  rate = mean over the classes with P_c > 0

(P_c: labels of class c with that evidence, N_c: matched negatives of c; the mean over classes
as the evaluator's mAP). The AP is the look-alike slice of `matching.match_run`
(`<type>_lookalike`): only detections on the type's positives and on matched negatives of
their class count. The evaluator's AP on the type also counts every other person as a false
positive, so a blind model scores below the rate there unless it also tells the look-alikes
from everyone else (the first passes' "fails" for long_term: 0.27 there, 0.52 on the set,
against 0.46). The check (issue 29, item 0): the blind run's AP is within `tolerance`
(0.1) of the rate: `holds` when the whole 95% interval of its AP is inside rate +- tolerance,
`fails` when it is entirely outside, `undecided` otherwise. An AP far above the rate means the
cheaper cues leak the label (the instrument cannot measure the mechanism); far below, the
blind run ranks the look-alikes above the positives. A random ranking's AP lies a little
above the rate (the precision envelope keeps early lucky hits): ~0.03 at 500 positives and a
rate of 0.5 (tests/bench/test_chance.py), so the check needs the pooled val splits' >= 500
labels of the type. Its interval needs more: on the 4 bench val splits (~640 context labels,
51 of them ride) the bootstrap interval of a random ranking itself reaches rate + 0.095, so
the suite scores the blind runs on `heads_seeds.instrument_splits` more val splits too and
checks them on all pooled (docs/notes/2026-12-06-instrument-splits.md).

Blind runs (`CHANCE_CHECKS`, on ground-truth boxes so the detector's recall does not enter):
`linear_own_box` for context (a linear classifier on the features of each person's own pixels,
everything outside its box grey before the trunk: `action_tx.own_box_features`), `i3d` for
long_term (one clip of +-1.6 s, no memory or neighbouring keyframes). A linear head on the
whole frame's RoI features is no blind run for context: they read the other people through the
trunk's receptive field, and it scored the look-alikes far above chance
(docs/notes/2026-12-06-context-instrument.md).
"""

from typing import Dict, NamedTuple, Optional, Sequence

import numpy as np

from object_detection_ext import ava_eval_io, voc_ap


class ChanceCheck(NamedTuple):
    evidence: str  # evidence type with matched negatives
    run: str  # a run that cannot see its deciding cue
    proposals: str  # "gt": ground-truth boxes
    why: str


CHANCE_CHECKS = (
    ChanceCheck(
        "context",
        "linear_own_box",
        "gt",
        "its own box's pixels only (the rest grey): no other person or object",
    ),
    ChanceCheck("long_term", "i3d", "gt", "one clip (+-1.6 s): no memory, no other keyframe"),
)


def positive_rates(evidence, label_ids: Optional[Sequence[int]] = None, excluded=None) -> Dict:
    """Per evidence type with matched negatives: {type: {"rate": float, "per_class":
    {AVA id: [P, N]}}}.

    evidence: an evidence CSV path or arrays (`ava_eval.evaluate`'s `evidence`), or a list of
    them (pooled val splits, counted together); label_ids: only these classes count (the label
    map's, as the evaluator's); excluded: excluded keyframes whose rows do not count (a CSV path
    or (video_id, timestamp) pairs; with a list of evidence, one such entry per split)."""
    pooled = isinstance(evidence, (list, tuple))
    sources = list(evidence) if pooled else [evidence]
    excluded_per = list(excluded) if pooled and excluded is not None else [excluded]
    if pooled and excluded is None:
        excluded_per = [None] * len(sources)
    if len(excluded_per) != len(sources):
        raise ValueError(f"{len(sources)} evidence files but {len(excluded_per)} excluded entries")
    counts: Dict[str, Dict[int, list]] = {}
    for source, skip in zip(sources, excluded_per):
        frame = ava_eval_io.as_evidence(source)
        gone = set(zip(*ava_eval_io.as_excluded(skip)))
        keep = np.array(
            [(str(v), int(t)) not in gone for v, t in zip(frame["video_id"], frame["timestamp"])],
            dtype=bool,
        )
        if label_ids is not None:
            keep &= np.isin(frame["action_id"].to_numpy(), list(label_ids))
        actions, kinds = frame["action_id"].to_numpy()[keep], frame["evidence"].to_numpy()[keep]
        for action, kind in zip(actions, kinds):
            kind = str(kind)
            negative = kind.endswith("_negative")
            per_class = counts.setdefault(kind.removesuffix("_negative"), {})
            per_class.setdefault(int(action), [0, 0])[int(negative)] += 1
    out = {}
    for kind, per_class in counts.items():
        if not any(n for _, n in per_class.values()):
            continue  # no matched negatives: no chance level defined
        rates = [p / (p + n) for p, n in per_class.values() if p > 0]
        if rates:
            out[kind] = dict(rate=float(np.mean(rates)), per_class=per_class)
    return out


def chance_verdict(ap: dict, rate: float, tolerance: float = 0.1) -> str:
    """'holds' / 'fails' / 'undecided' for an AP cell {mean, low, high} (low/high None: the
    mean alone decides) against rate +- tolerance."""
    low = ap["mean"] if ap.get("low") is None else ap["low"]
    high = ap["mean"] if ap.get("high") is None else ap["high"]
    if rate - tolerance <= low and high <= rate + tolerance:
        return "holds"
    if high < rate - tolerance or low > rate + tolerance:
        return "fails"
    return "undecided"


def random_ranking_ap(per_class: Dict, draws: int = 200, seed: int = 0) -> Optional[dict]:
    """The AP of a ranking at random on a look-alike set, the chance level made exact:
    {"mean", "low", "high"} over `draws` random orders (low, high: 2.5 and 97.5 percentiles)
    of the mean over classes of each class's VOC AP (`voc_ap.average_precision`, the
    evaluator's). per_class: {class: [P, N]} (`positive_rates`); classes with P = 0 do not
    count; None when none is left. It lies above the rate, the more so the fewer the
    positives: the precision envelope keeps early lucky hits (P = N = 1: 0.75, rate 0.5)."""
    counts = [(int(p), int(n)) for p, n in per_class.values() if int(p) > 0]
    if not counts:
        return None
    rng = np.random.default_rng(seed)
    means = [
        np.mean(
            [voc_ap.average_precision(rng.permutation(np.arange(p + n) < p), p) for p, n in counts]
        )
        for _ in range(draws)
    ]
    low, high = np.percentile(means, [2.5, 97.5])
    return dict(mean=float(np.mean(means)), low=float(low), high=float(high))
