"""What a pass of the heads suite costs: measured seconds per part (`COSTS`) and the projection
printed at the start of a pass (`projected_seconds`). Plain data the lead can edit, as the run
list (`heads_runs`)."""

from action_tx.bench.chance import CHANCE_CHECKS
from action_tx.bench.heads_runs import (
    END_TO_END,
    FEATURES,
    PRETRAIN_BUDGETS,
    RunSpec,
    box_modes,
    run_steps,
)

# The projection (`projected_seconds`, printed at the start of a pass) is
#   pretrain   = PRETRAIN_BUDGETS x step[e2e][i3d] + start[e2e] + pretrain_eval
#   extraction = S x (extract.train + V x extract.val)   per run whose features others read
#              + S x (own_box.train + V x own_box.val)   per run whose own-box features are read
#              + S x (bank.train + V x bank.val)         per run whose ACFB bank others read
#   train      = sum over runs of S x (start[mode] + steps(run) x step[mode][kind])
#   eval       = sum over runs of boxes x (eval_build[mode] + S x V x eval_job[mode][kind])
#   instrument = per blind run (chance.CHANCE_CHECKS): S x I x eval_job[mode][kind] + eval_build
#              + S x I x own_box.val when it reads own-box features
#   overhead   = stage_overhead x Keras stages run (2 + per run S + boxes, + S x (1 + V) per
#                extracted source, + 1 (+ S x I own-box) per blind run): Keras state cleared,
#                garbage collected, configs built between stages (matching stages: ~0)
# (S seeds, V val splits, I instrument splits; boxes = the number of the run's box modes,
# `heads_runs.box_modes`; kind = the head, "acar+bank" for ACFB, "acar+rn" for its Relation
# Network). Inputs
# (COSTS["bench"]) from the first full pass (2026-12-06, heads.json of `--out=/work/heads_p1`,
# load average ~2: the pass alone on the 2-core machine): seconds per step = the trainer's
# median (heads.json step_time_s); start = a training's seconds beyond its steps; eval_job =
# (a box mode's eval stage - eval_build) / (S x V); extraction and bank = their stages'
# seconds; stage_overhead = the seconds between stages (heads.json between_s) of the fourth
# pass, from scratch (2026-12-06, `--out=/work/heads_p4 --seed_offset=6 --data_seed=200`): 25.5 s
# between all its 241 stages (the first stage's 3.4 s import of TensorFlow left out), counted
# against its 153 Keras stages
# (docs/notes/2026-12-06-heads-suite-time.md; 1.69 s a stage before `runner.fresh_state`
# stopped scanning the whole heap). With these budgets: pretrain 5.9, extraction 6.7, train
# 52.6, eval 16.0, instrument 3.4, overhead 0.4: 85.0 min; the fourth pass took 84.6 min.
# The first pass (docs/notes/2026-12-06-heads-suite-first-pass.md) gave the other inputs.

# Measured seconds of each part of a pass, per preset (the formula above).
COSTS = {
    "bench": dict(
        step={
            END_TO_END: {"linear": 0.085, "i3d": 0.110, "tx": 0.124, "tx_i3d": 0.165},
            FEATURES: {
                "linear": 0.0014,
                "stage": 0.018,
                "hgrnn": 0.021,
                "acar": 0.088,
                "acar+bank": 0.36,
                "acar+rn": 0.60,
                "aia": 0.215,
            },
        },
        start={END_TO_END: 15.0, FEATURES: 4.0},
        eval_job={
            END_TO_END: {"linear": 2.9, "i3d": 3.6, "tx": 4.1, "tx_i3d": 5.4},
            FEATURES: {
                "linear": 0.33,
                "stage": 1.15,
                "hgrnn": 1.14,
                "acar": 2.5,
                "acar+bank": 10.9,
                "acar+rn": 10.3,
                "aia": 4.1,
            },
        },
        eval_build={END_TO_END: 5.0, FEATURES: 3.0},
        extract=dict(train=24.0, val=11.0),
        # pixels=own_box of the `i3d` run's checkpoints (2026-12-06, pass 1's seeds 1-2):
        # train 22.6-26.9 s, val splits 6.3-7.0 s (one at 11.7 s).
        own_box=dict(train=24.0, val=7.0),
        bank=dict(train=5.2, val=2.0),
        pretrain_eval=7.0,
        stage_overhead=0.17,
    ),
    # --quick's runs, from the first --quick pass after the trace cache (heads.json of
    # 2026-12-06: 2 seeds x 2 val splits, load average 1.6-1.9): 236 s, of which data 5 s;
    # projected without the data: 221 s.
    "tiny": dict(
        step={
            END_TO_END: {"linear": 0.07, "i3d": 0.082, "tx": 0.1},
            FEATURES: {"linear": 0.0026, "stage": 0.026},
        },
        start={END_TO_END: 11.0, FEATURES: 1.5},
        eval_job={
            END_TO_END: {"linear": 0.66, "i3d": 0.74, "tx": 1.7},
            FEATURES: {"linear": 0.15, "stage": 0.55},
        },
        eval_build={END_TO_END: 3.0, FEATURES: 1.0},
        extract=dict(train=10.1, val=6.9),
        own_box=dict(train=4.5, val=3.3),  # --quick of 2026-12-06: 4.2-4.8 s, 3.1-3.4 s
        bank=dict(train=5.0, val=2.0),
        pretrain_eval=4.7,
        # 4.3 s between the stages of a --quick pass (2026-12-06, the first stage's 3.5 s
        # import of TensorFlow left out), counted against its 35 Keras stages.
        stage_overhead=0.12,
    ),
}


def run_kind(spec: RunSpec) -> str:
    """The key of a run's costs in `COSTS`: its head, "+bank" for ACAR with a feature bank,
    "+rn" for ACAR's Relation Network (N^2 actor pairs: several times HR2O's step)."""
    rn = spec.head == "acar" and spec.overrides.get("head.relation") == "rn"
    return spec.head + ("+bank" if spec.bank_from else "") + ("+rn" if rn else "")


def projected_seconds(
    runs, preset: str, seeds: int, val_splits: int, gt_runs=None, instrument_splits: int = 0
) -> dict:
    """The pass's projected wall time from `COSTS[preset]` (the formula above `COSTS`),
    data already made -> {"total": s, "pretrain": s, "extraction": s, "train": s, "eval": s,
    "instrument": s, "overhead": s}; None when the preset has no measured costs or a run's
    kind has none. gt_runs: the runs also scored on ground-truth boxes (None: all)."""
    cost = COSTS.get(preset)
    if cost is None:
        return None
    s, v = seeds, val_splits
    step, job = cost["step"], cost["eval_job"]
    if any(run_kind(r) not in step[r.mode] or run_kind(r) not in job[r.mode] for r in runs):
        return None
    boxes = {r.name: len(box_modes(r, {r.name} if gt_runs is None else gt_runs)) for r in runs}
    sources = [
        key
        for key, names in (
            ("extract", {r.features_from for r in runs if r.pixels == "frame" and r.features_from}),
            ("own_box", {r.features_from for r in runs if r.pixels == "own_box"}),
            ("bank", {r.bank_from for r in runs if r.bank_from}),
        )
        for _ in names
    ]
    # Keras stages run (matching builds no model: `runner.fresh_state` clears nothing before
    # it): pretrain (2); per run S trains and an eval per box mode; per extracted source
    # S x (1 + V).
    stages = 2 + sum(s + boxes[r.name] for r in runs) + len(sources) * s * (1 + v)
    blind = [r for r in runs if instrument_splits and r.name in {c.run for c in CHANCE_CHECKS}]
    own_box = sum(r.pixels == "own_box" for r in blind)
    stages += len(blind) + own_box * s * instrument_splits
    parts = dict(
        pretrain=PRETRAIN_BUDGETS.get(preset, PRETRAIN_BUDGETS["bench"]) * step[END_TO_END]["i3d"]
        + cost["start"][END_TO_END]
        + cost["pretrain_eval"],
        extraction=sum(s * (cost[key]["train"] + v * cost[key]["val"]) for key in sources),
        train=sum(
            s * (cost["start"][r.mode] + run_steps(r, preset) * step[r.mode][run_kind(r)])
            for r in runs
        ),
        eval=sum(
            boxes[r.name] * (cost["eval_build"][r.mode] + s * v * job[r.mode][run_kind(r)])
            for r in runs
        ),
        instrument=sum(
            cost["eval_build"][r.mode] + s * instrument_splits * job[r.mode][run_kind(r)]
            for r in blind
        )
        + (own_box * s * instrument_splits * cost["own_box"]["val"] if own_box else 0.0),
        overhead=stages * cost["stage_overhead"],
    )
    return {"total": sum(parts.values()), **parts}
