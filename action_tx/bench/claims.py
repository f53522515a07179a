"""The papers' own ablation claims that the synthetic evidence types can test, as data.

A claim is `Claim(id, better, other, evidence, proposals, paper, where, paper_figures, note)`:
run `better` beats run `other` on the frame-AP of `evidence` ("all": every label, the
frame-mAP; else an evidence type of the synthetic data, SYNTHETIC_DATA.md) with `proposals`
"rpn" (each run's own detections) or "gt" (ground-truth boxes: the classifier alone), as
`paper`'s `where` reports it (`paper_figures`: the paper's two numbers). `stats.summarize`
decides each: holds / fails / undecided from the 95% interval of the paired difference.

Runs are names of the heads suite's run list (`heads_runs.RUNS`) or of `VARIANT_RUNS` here:
the ablations that only a claim needs, each its base run with one option changed (`check_claims`
checks that every claim's runs are in a given list). Evidence per claim: the type the mechanism
is for (relations between people and objects: context; memory, neighbouring keyframes,
temporal edges, feature banks: long_term); the papers report AVA's overall mAP.
Table numbers are those of the texts in ../shared/papers/.
"""

import dataclasses
from typing import Any, Dict, Iterable, Sequence

from action_tx.bench import heads_runs as R

ALL = "all"
PROPOSALS = ("rpn", "gt")


@dataclasses.dataclass(frozen=True)
class Claim:
    id: str
    better: str  # run the paper says is better
    other: str  # run it beats
    evidence: str  # ALL or an evidence type of heads_runs.EVIDENCE
    proposals: str  # "rpn" (detections) or "gt" (ground-truth boxes)
    paper: str  # the paper's file under ../shared/papers/
    where: str  # table / section
    paper_figures: str = ""  # the paper's better vs other numbers (AVA val mAP %)
    note: str = ""


def _variant(base: str, name: str, overrides: Dict[str, Any], note: str) -> R.RunSpec:
    spec = {r.name: r for r in R.RUNS}[base]
    return dataclasses.replace(
        spec, name=name, overrides={**spec.overrides, **overrides}, note=note, ablation=True
    )


# Ablations only claims need (the heads list has the other runs): one option off per run.
VARIANT_RUNS = (
    _variant(
        "stage",
        "stage_no_temporal",
        {"head.temporal_extent": 0},
        "STAGE without temporal edges (Table 5 'w/o temporal extent')",
    ),
    _variant(
        "stage",
        "stage_no_objects",
        {"head.use_objects": False},
        "STAGE without object nodes (Table 5 'w/o objects features')",
    ),
    _variant(
        "stage",
        "stage_no_proximity",
        {"head.use_proximity": False},
        "STAGE with ones for the proximity adjacency (Table 5 'w/o boxes proximity')",
    ),
    _variant(
        "stage",
        "stage_transformer",
        {"head.attention": "transformer"},
        "STAGE with Transformer self-attention for GAT (Table 5)",
    ),
    _variant("hgrnn", "hgrnn_iter1", {"head.iterations": 1}, "l = 3, one iteration (Table 3)"),
    _variant(
        "acar",
        "acar_acrn",
        {"head.num_blocks": 0},
        "first-order actor-context relations only: 'Baseline + ACRN' (Table 1a)",
    ),
    _variant(
        "acar", "acar_rn", {"head.relation": "rn"}, "HR2O as a Relation Network (Table 1c 'RN')"
    ),
    _variant(
        "aia_features",
        "aia_serial_features",
        {"head.structure": "serial"},
        "serial IA on frozen features (Table 1d)",
    ),
    _variant(
        "aia_features",
        "aia_parallel_features",
        {"head.structure": "parallel"},
        "parallel IA on frozen features (Table 1d)",
    ),
)

_VATX, _STAGE = "action_transformer.txt", "stage_graph_attention.txt"
_HGRNN, _ACAR, _AIA = "hgrnn_graph_rnn.txt", "acar_net.txt", "aia_interaction_aggregation.txt"

CLAIMS = (
    Claim(
        "vatx-tx-gt",
        "tx",
        "i3d",
        "context",
        "gt",
        _VATX,
        "Table 1, §4.2",
        "Tx head 'a significant 5% boost' over the I3D head on GT boxes",
    ),
    Claim("vatx-tx", "tx", "i3d", "context", "rpn", _VATX, "Table 3, §4.4", "24.4 vs 20.5"),
    Claim(
        "vatx-txi3d-tx",
        "tx_i3d",
        "tx",
        ALL,
        "rpn",
        _VATX,
        "Table 3, §4.4",
        "24.9 vs 24.4",
        "I3D regresses the boxes, Tx classifies: a detection-level (frame-mAP) claim",
    ),
    Claim("vatx-txi3d-i3d", "tx_i3d", "i3d", ALL, "rpn", _VATX, "Table 3, §4.4", "24.9 vs 20.5"),
    Claim(
        "stage-fc",
        "stage",
        "linear_features",
        "context",
        "rpn",
        _STAGE,
        "Table 2 (I3D features)",
        "23.0 vs 19.7",
    ),
    Claim(
        "stage-temporal",
        "stage",
        "stage_no_temporal",
        "long_term",
        "rpn",
        _STAGE,
        "Table 5, §4.2",
        "23.0 vs 22.1",
    ),
    Claim(
        "stage-objects",
        "stage",
        "stage_no_objects",
        "context",
        "rpn",
        _STAGE,
        "Table 5, §4.2",
        "23.0 vs 22.2",
    ),
    Claim(
        "stage-proximity",
        "stage",
        "stage_no_proximity",
        "context",
        "rpn",
        _STAGE,
        "Table 5, §4.2",
        "23.0 vs 21.5",
    ),
    Claim(
        "stage-gat",
        "stage",
        "stage_transformer",
        "context",
        "rpn",
        _STAGE,
        "Table 5, §4.2",
        "23.0 vs 21.6",
        "GAT attention (Eq. 4) beats Transformer self-attention",
    ),
    Claim(
        "hgrnn-window",
        "hgrnn",
        "hgrnn_l0",
        "long_term",
        "rpn",
        _HGRNN,
        "Table 1",
        "l = 3: 20.9 vs l = 0: 19.0",
    ),
    Claim(
        "hgrnn-iterations",
        "hgrnn",
        "hgrnn_iter1",
        "context",
        "rpn",
        _HGRNN,
        "Table 3",
        "2 iterations: 20.9 vs 1: 20.6",
        "iterations pass messages between persons",
    ),
    Claim(
        "acar-hr2o-acrn",
        "acar",
        "acar_acrn",
        "context",
        "rpn",
        _ACAR,
        "Table 1a",
        "Baseline + HR2O 27.83 vs Baseline + ACRN 26.71",
    ),
    Claim(
        "acar-acrn-none",
        "acar_acrn",
        "linear_features",
        "context",
        "rpn",
        _ACAR,
        "Tables 1a, 1b",
        "Baseline + ACRN 26.71 vs Baseline 25.39",
        "the paper's Baseline is backbone + detector + one-layer classifier: our "
        "`linear_features`, on the same frozen features as the ACAR runs",
    ),
    Claim(
        "acar-nl-rn",
        "acar",
        "acar_rn",
        "context",
        "rpn",
        _ACAR,
        "Table 1c",
        "NL 27.83 vs RN 27.18",
    ),
    Claim(
        "acar-acfb",
        "acar_acfb",
        "acar",
        "long_term",
        "rpn",
        _ACAR,
        "Tables 1b, 1f",
        "HR2O + ACFB 28.84 vs HR2O 27.83",
    ),
    Claim(
        "aia-memory",
        "aia_features",
        "aia_nomem_features",
        "long_term",
        "rpn",
        _AIA,
        "Table 1a",
        "P+O+M 29.26, the best row; every row without M is lower",
        "no M-blocks (P,O,P,O), as the paper's ablation",
    ),
    Claim(
        "aia-serial-parallel",
        "aia_serial_features",
        "aia_parallel_features",
        "context",
        "rpn",
        _AIA,
        "Table 1d",
        "Serial 29.64 vs Parallel 28.85",
    ),
    Claim(
        "aia-dense-serial",
        "aia_features",
        "aia_serial_features",
        "context",
        "rpn",
        _AIA,
        "Table 1d",
        "Dense Serial 29.80 vs Serial 29.64",
    ),
    Claim(
        "aia-dense-parallel",
        "aia_features",
        "aia_parallel_features",
        "context",
        "rpn",
        _AIA,
        "Table 1d",
        "Dense Serial 29.80 vs Parallel 28.85",
    ),
)


def check_claims(claims: Sequence[Claim], run_names: Iterable[str]) -> None:
    """Raises ValueError naming every problem: a claim's run absent from `run_names`, an
    unknown evidence type or proposals mode, a run compared with itself, a repeated id."""
    names = set(run_names)
    problems, seen = [], set()
    for c in claims:
        if c.id in seen:
            problems.append(f"claim {c.id!r} appears twice")
        seen.add(c.id)
        for role, run in (("better", c.better), ("other", c.other)):
            if run not in names:
                problems.append(f"claim {c.id!r}: {role} run {run!r} is not in the run list")
        if c.better == c.other:
            problems.append(f"claim {c.id!r} compares run {c.better!r} with itself")
        if c.evidence not in (ALL,) + tuple(R.EVIDENCE):
            problems.append(f"claim {c.id!r}: unknown evidence {c.evidence!r}")
        if c.proposals not in PROPOSALS:
            problems.append(f"claim {c.id!r}: proposals {c.proposals!r} not in {PROPOSALS}")
    if problems:
        raise ValueError("claims: " + "; ".join(problems))
