"""Intervals of the heads suite: a two-level bootstrap of frame-AP over seeds and val keyframes.

Method
------
A run configuration (one row of the suite: head, mode, flags) is trained with S seeds, and
every seed's model is scored on the same val keyframes (one split or several pooled). Its
figure on an evidence type e is the mean over the seeds of the frame-mAP@0.5 on e: the
evaluator's `by_evidence[e]` (`object_detection_ext.ava_eval`), or its frame-mAP for e = "all".

The 95% interval is a two-level (hierarchical) percentile bootstrap over both sources of
variation that a rerun changes:
  1. seeds: draw S of the configuration's S seeds with replacement;
  2. val keyframes: draw K of the K keyframes with replacement (multiplicities w_k). The
     keyframe is the unit, with all its persons, labels and detections: the evaluator's
     matching and its per-keyframe cap act inside a keyframe.
A resample's statistic is the mean over the drawn seeds of their mAP on the drawn keyframes; the
interval is the 2.5 and 97.5 percentiles over R resamples (default 1000, seeded). Keyframes are
crossed with seeds (every seed scores the same keyframes), so one keyframe draw serves every
seed of a resample. With S = 1 only the keyframes vary.

Paired comparison of configurations A ("better": what the paper claims) and B ("other"): a
resample draws A's seeds and B's seeds independently (seeds of different configurations are
unrelated) and ONE keyframe draw that both arms use, so the difference mean_A - mean_B is
paired on keyframes (a hard keyframe lowers both arms and cancels). Verdict from the 95%
interval of the difference: holds (entirely > 0), fails (entirely < 0), undecided (contains 0).

AP from counts
--------------
Redrawing keyframes never changes which detection matches which box (matching is within a
keyframe), so each seed's detections are matched once (`matching.match_run`: the evaluator's own
preparation and VOC matching, `ava_eval_prepare.prepare`, `voc_ap.assign_to_groundtruth`,
`first_matches`, `label_detections`) into, per evidence type, the counted detections sorted by
class then descending score, with their class, true-positive flag and keyframe, and the
positives per (keyframe, class). A resample with multiplicities w is the data set in which
keyframe k appears w_k times: a detection of keyframe k counts w_k times at its rank (the copies
of one detection are adjacent and all TP or all FP, so the precision envelope is the one of the
spelled-out copies), class c has N_c = sum_k w_k n_kc positives, and

    AP_c = sum_i (w_i tp_i / N_c) * max_{j >= i, class c} TP_j / (TP_j + FP_j)

with TP_j, FP_j the weighted cumulative counts: the evaluator's VOC AP with the precision
envelope. With every w_k = 1 it is exactly the evaluator's AP (tests/bench/test_stats.py). The
mAP is the mean over the classes with N_c > 0, as the evaluator's. All resamples of a chunk are
one [R, D] NumPy computation.
"""

import dataclasses
import zlib
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import scipy.sparse


ALL = "all"  # the evidence name of the frame-mAP over every label
LOOKALIKE = "_lookalike"  # `<type>_lookalike`: AP on the type's positives + matched negatives


def lookalike(evidence: str) -> str:
    """The `by_evidence` name of `evidence`'s look-alike slice (`matching.match_run`)."""
    return evidence + LOOKALIKE


VERDICTS = ("holds", "fails", "undecided")
_CHUNK_ELEMENTS = 2_000_000  # resamples x true positives per NumPy pass (~16 MB of float64)


@dataclasses.dataclass(frozen=True, eq=False)
class Matches:
    """One seed's counted detections on one evidence type, matched once.

    det_class [D] int32 class index, det_tp [D] bool, det_key [D] int32 keyframe index,
    det_score [D] float64: the counted detections (those matched to a difficult box left out),
    sorted by class, then in the evaluator's order (descending score). positives [K, C] int32:
    the non-difficult ground-truth rows of each keyframe and class.
    """

    det_class: np.ndarray
    det_tp: np.ndarray
    det_key: np.ndarray
    det_score: np.ndarray
    positives: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "_counts", _Counts(self))

    @property
    def num_keys(self) -> int:
        return self.positives.shape[0]


class _Counts:
    """`Matches` arranged for weighted AP: only the true positives' precisions matter (the
    envelope peaks at them), so each TP t keeps its keyframe and a sparse row gaps[t, k] = the
    false positives of keyframe k ranked after the previous TP of its class and before t."""

    def __init__(self, m: "Matches"):
        tp = np.asarray(m.det_tp, dtype=bool)
        positions = np.flatnonzero(tp)
        self.tp_key = np.asarray(m.det_key)[positions]
        tp_class = np.asarray(m.det_class)[positions]
        num_classes = m.positives.shape[1]
        self.bounds = np.concatenate([[0], np.cumsum(np.bincount(tp_class, minlength=num_classes))])
        # The first TP at or after each detection; an FP belongs to its gap when that TP is of
        # its own class (FPs after a class's last TP change no precision that counts).
        following = np.searchsorted(positions, np.arange(len(tp)))
        inside = following < len(positions)
        same = np.zeros(len(tp), dtype=bool)
        same[inside] = tp_class[following[inside]] == np.asarray(m.det_class)[inside]
        fp = ~tp & same
        self.gaps = scipy.sparse.csr_matrix(
            (np.ones(int(fp.sum())), (following[fp], np.asarray(m.det_key)[fp])),
            shape=(len(positions), m.positives.shape[0]),
        )


@dataclasses.dataclass(frozen=True)
class RunMatches:
    """One trained model (one seed) matched on one val set: `by_evidence` maps "all", every
    evidence type with ground truth and, for a type with matched negatives, its look-alike
    slice `<type>_lookalike` (`lookalike`) to its `Matches`; `groundtruth` is a digest of the
    scored ground truth (runs are comparable only on the same one); class_ids [C] AVA ids;
    `evidence`: a digest of the evidence rows the slices were cut by
    (`matching.evidence_digest`; "" without evidence, or in a file written before it was kept).
    `matching.match_run` makes it."""

    groundtruth: str
    class_ids: np.ndarray
    by_evidence: Dict[str, Matches]
    evidence: str = ""


def weighted_map(matches: Matches, weights: np.ndarray) -> np.ndarray:
    """mAP of `matches` with keyframe multiplicities weights [R, K] -> [R] (NaN: no class has
    a positive). Formula in the module docstring; weights of ones give the evaluator's mAP."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 2 or weights.shape[1] != matches.num_keys:
        raise ValueError(
            f"weights {weights.shape}: expected [resamples, {matches.num_keys} keyframes]"
        )
    counts = matches._counts
    bounds = counts.bounds
    chunk = max(1, _CHUNK_ELEMENTS // max(len(counts.tp_key), 1))
    out = np.empty(len(weights))
    for lo in range(0, len(weights), chunk):
        w_keys = weights[lo : lo + chunk]
        positives = w_keys @ matches.positives  # [r, C]
        w_tp = w_keys[:, counts.tp_key]  # [r, T] weight of each true positive
        w_fp = np.asarray(counts.gaps @ w_keys.T).T  # [r, T] weighted FPs in each gap
        ap_sum = np.zeros_like(positives)
        for c in np.flatnonzero(bounds[1:] > bounds[:-1]):
            part = slice(bounds[c], bounds[c + 1])
            cum_tp = np.cumsum(w_tp[:, part], axis=1)
            cum_all = cum_tp + np.cumsum(w_fp[:, part], axis=1)
            precision = np.divide(cum_tp, cum_all, out=np.zeros_like(cum_tp), where=cum_all > 0)
            envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
            ap_sum[:, c] = (w_tp[:, part] * envelope).sum(axis=1)
        scored = positives > 0
        ap = np.divide(ap_sum, positives, out=np.zeros_like(ap_sum), where=scored)
        counted = scored.sum(axis=1)
        out[lo : lo + chunk] = np.where(
            counted > 0, (ap * scored).sum(axis=1) / np.maximum(counted, 1), np.nan
        )
    return out


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate (mean over seeds, all keyframes) and its percentile interval."""

    mean: float
    low: float
    high: float

    def to_json(self) -> dict:
        return {k: (None if np.isnan(v) else float(v)) for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class Arm:
    """One configuration on one evidence type: per_seed [S] mAP on all keyframes, samples [R]
    the bootstrap statistic (mean over drawn seeds on drawn keyframes)."""

    per_seed: np.ndarray
    samples: np.ndarray

    @property
    def mean(self) -> float:
        return float(np.mean(self.per_seed))


def verdict(low: float, high: float) -> str:
    """'holds' (interval > 0), 'fails' (< 0) or 'undecided' (contains 0, or unknown)."""
    if low > 0:
        return "holds"
    if high < 0:
        return "fails"
    return "undecided"


class Bootstrap:
    """One keyframe draw matrix [R, K] shared by every arm scored with it (so any two arms
    form a paired comparison); each arm's seed draws come from (seed, the arm's name) alone,
    so an arm's interval does not depend on which arms were drawn before it (adding an
    evidence slice once moved every claim's interval by up to 0.006 through a shared stream)."""

    def __init__(self, num_keys: int, resamples: int = 1000, seed: int = 1000, level: float = 0.95):
        if num_keys < 1 or resamples < 1 or not 0 < level < 1:
            raise ValueError(
                f"Bootstrap: need num_keys >= 1, resamples >= 1, 0 < level < 1; got "
                f"{num_keys}, {resamples}, {level}"
            )
        self.num_keys, self.resamples, self.level, self.seed = num_keys, resamples, level, seed
        rng = np.random.default_rng(seed)
        self.weights = rng.multinomial(
            num_keys, np.full(num_keys, 1.0 / num_keys), size=resamples
        ).astype(np.float64)

    def arm(self, seeds: Sequence[Matches], name: str = "") -> Arm:
        """The bootstrap of a configuration from its seeds' matches (one per seed); name
        (e.g. "run/proposals/evidence") seeds its seed draws."""
        if not seeds:
            raise ValueError("Bootstrap.arm: no seed")
        rng = np.random.default_rng([self.seed, zlib.crc32(name.encode())])
        ones = np.ones((1, self.num_keys))
        per_seed = np.array([weighted_map(m, ones)[0] for m in seeds])
        ap = np.stack([weighted_map(m, self.weights) for m in seeds], axis=1)  # [R, S]
        n = len(seeds)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=self.resamples)
        samples = np.where(counts > 0, ap, 0.0) * counts
        return Arm(per_seed, samples.sum(axis=1) / n)

    def _bounds(self, samples: np.ndarray):
        tail = 100 * (1 - self.level) / 2
        if np.isnan(samples).all():
            return float("nan"), float("nan")
        low, high = np.nanpercentile(samples, [tail, 100 - tail])
        return float(low), float(high)

    def interval(self, arm: Arm) -> Interval:
        return Interval(arm.mean, *self._bounds(arm.samples))

    def compare(self, better: Arm, other: Arm) -> dict:
        """{better, other, difference: Interval, verdict} of the paired difference."""
        difference = Interval(
            better.mean - other.mean, *self._bounds(better.samples - other.samples)
        )
        return dict(
            better=self.interval(better),
            other=self.interval(other),
            difference=difference,
            verdict=verdict(difference.low, difference.high),
        )


def _seeds_of(matches: Sequence[RunMatches], evidence: str) -> Optional[list]:
    out = [m.by_evidence.get(evidence) for m in matches]
    return None if not out or any(m is None for m in out) else out


def summarize(
    matches: Mapping[str, Mapping[str, Sequence[RunMatches]]],
    claims: Sequence = (),
    *,
    resamples: int = 1000,
    seed: int = 1000,
    level: float = 0.95,
) -> dict:
    """The suite's statistics as a JSON-ready dict.

    Args:
      matches: {run: {proposals ("rpn" | "gt"): [RunMatches, one per seed]}}.
      claims: records with id, better, other, evidence, proposals (`claims.CLAIMS`).
    Returns:
      {method, resamples, bootstrap_seed, level,
       runs: {run: {proposals: {evidence: {mean, low, high, per_seed}}}},
       claims: {claim id: {better, other, difference: {mean, low, high}, verdict} or
                {verdict: "not measured", missing: reason}}}.
    Raises:
      ValueError: the runs of one comparison were scored on different ground truth.
    """
    boots: Dict[tuple, Bootstrap] = {}
    arms: Dict[tuple, Arm] = {}

    def arm_of(run, proposals, evidence):
        found = (matches.get(run) or {}).get(proposals) or []
        seeds = _seeds_of(found, evidence)
        if seeds is None:
            return None, None
        digests = {m.groundtruth for m in found}
        if len(digests) > 1:
            raise ValueError(f"run {run!r} ({proposals}): seeds scored on different ground truth")
        key = (digests.pop(), seeds[0].num_keys)
        if key not in boots:  # one keyframe draw per val set: any two arms are paired
            boots[key] = Bootstrap(key[1], resamples, seed, level)
        if (run, proposals, evidence) not in arms:
            arms[(run, proposals, evidence)] = boots[key].arm(
                seeds, f"{run}/{proposals}/{evidence}"
            )
        return boots[key], arms[(run, proposals, evidence)]

    runs_out: dict = {}
    for run, by_proposals in matches.items():
        for proposals, found in by_proposals.items():
            names = sorted({e for m in found for e in m.by_evidence})
            for evidence in [ALL] + [e for e in names if e != ALL]:
                boot, arm = arm_of(run, proposals, evidence)
                if arm is None:
                    continue
                cell = boot.interval(arm).to_json()
                cell["per_seed"] = [None if np.isnan(v) else float(v) for v in arm.per_seed]
                runs_out.setdefault(run, {}).setdefault(proposals, {})[evidence] = cell
    claims_out = {}
    for claim in claims:
        boot_a, a = arm_of(claim.better, claim.proposals, claim.evidence)
        boot_b, b = arm_of(claim.other, claim.proposals, claim.evidence)
        missing = [r for r, x in ((claim.better, a), (claim.other, b)) if x is None]
        if missing:
            claims_out[claim.id] = dict(
                verdict="not measured",
                missing=f"no {claim.proposals} matches on {claim.evidence} of "
                + ", ".join(missing),
            )
            continue
        if boot_a is not boot_b:
            raise ValueError(
                f"claim {claim.id}: {claim.better} and {claim.other} were scored on different "
                "ground truth"
            )
        result = boot_a.compare(a, b)
        claims_out[claim.id] = {
            k: (v.to_json() if isinstance(v, Interval) else v) for k, v in result.items()
        }
    return dict(
        method="two-level bootstrap over seeds and val keyframes (action_tx/bench/stats.py)",
        resamples=resamples,
        bootstrap_seed=seed,
        level=level,
        runs=runs_out,
        claims=claims_out,
    )
