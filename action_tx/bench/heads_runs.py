"""The head comparison's run list and budgets (suite `heads`): plain data the lead can edit.

A run is `RunSpec(name, head, mode, overrides, ...)`:
  mode "end_to_end": `train_lib.train_task` on the TFRecords (trunk + RPN + head), fine-tuned
                     from the suite's pretrained trunk (`heads_pretrain`);
  mode "features":   on the frozen features that `feature_extraction.extract_split` takes from
                     the checkpoint of run `features_from`.
  overrides:         config fields of this run, "SECTION.FIELD" -> value
                     (`action_tx.config.with_overrides`; "head." is a field of the head's
                     options, e.g. AIAHeadConfig.memory_window).
  bank_from:         ACAR's second stage: `feature_extraction.extract_split_bank` on that run's
                     checkpoint gives its bank_dir / eval_bank_dir.
  pixels:            FEATURES: "frame" (the detector's pass over the whole frame) or "own_box"
                     (each ground-truth box's features from its own pixels alone, everything
                     else grey: `action_tx.own_box_features`); an own_box run trains and is
                     scored on ground-truth boxes only (those features hold no detections).
  budget_scale:      this run's steps are the preset's budget for its mode times this.
End to end only where a claim is about end-to-end training (VATX: linear, i3d, tx, tx_i3d);
every relational head (STAGE, HGRNN, ACAR with its bank, AIA) on the frozen features of the
`i3d` run, as STAGE and HGRNN's papers train theirs.
Every run's config is `BASE` (configs/bench.flags: i3d_tiny, 8 frames stride 2, 112 px,
batch 4, AdamW 1e-3), then the preset's `PRESET_OVERRIDES`, the run's head, data and step
budget, then its own overrides (later ones win). Which runs each paper's claim compares is
`action_tx.bench.claims` (the suite's run list is RUNS + claims.VARIANT_RUNS).
"""

import dataclasses
from typing import Any, Dict, Optional

from action_tx.config import OVERRIDE_SECTIONS

END_TO_END, FEATURES = "end_to_end", "features"
EVIDENCE = ("self", "context", "temporal", "long_term")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    name: str  # folder name under OUT/runs/ and row of the table
    head: str  # model.head
    mode: str = END_TO_END  # END_TO_END or FEATURES
    overrides: Dict[str, Any] = dataclasses.field(default_factory=dict)  # "SECTION.FIELD"
    features_from: Optional[str] = None  # FEATURES: run whose checkpoint gives the features
    bank_from: Optional[str] = None  # ACFB: run whose checkpoint gives the bank
    note: str = ""
    ablation: bool = False  # a variant that only a claim needs (claims.VARIANT_RUNS)
    budget_scale: float = 1.0  # steps = the preset's budget for `mode` x this
    pixels: str = "frame"  # FEATURES: "frame" or "own_box" (module docstring)


# configs/bench.flags as config fields (tests/bench/test_heads_config.py checks that the
# flagfile maps onto the same config): the base of every run.
BASE = {
    "model.trunk": "i3d_tiny",
    "model.freeze_bn": True,
    "model.head": "tx",
    "model.proposals": "rpn",
    "model.anchor_sizes": (16.0, 32.0, 64.0, 96.0),
    "model.rpn_filters": 64,
    "model.post_nms_top_k": 50,
    "model.num_roi_samples": 32,
    "model.seed": 0,
    "data.num_frames": 8,
    "data.frame_stride": 2,
    "data.image_size": 112,
    "data.max_boxes": 8,
    "train.batch_size": 4,
    "train.optimizer": "adamw",
    "train.learning_rate": 0.001,
    "train.warmup_learning_rate": 0.0001,
    "train.warmup_steps": 50,
    "train.weight_decay": 0.0001,
    "train.clip_norm": 10.0,
    "train.train_steps": 1500,
    "train.checkpoint_every": 200,
    "train.keep_checkpoints": 2,
    "train.log_every": 10,
}
# The runs also scored on ground-truth boxes: those a GT-box claim or a chance check reads
# (`heads.suite_runs` checks it). Every run is scored on its detections; GT boxes for every
# run doubled the evaluations (~18 min of a full pass, most of it the AIA and ACFB runs).
GT_BOX_RUNS = ("linear", "i3d", "tx", "linear_own_box")
# Ground-truth-box actors, for training and scoring: what an own_box run's features hold.
_GT_ACTORS = {"data.train_actors": "gt", "data.eval_actors": "gt"}
# What every evaluation sets (one pass over val, no pictures, no progress bar).
EVAL_OVERRIDES = {"eval.batch_size": 4, "eval.num_images": 0, "eval.progress": False}
# The GT-box evaluation of each mode: the classification-only bound.
GT_BOX_OVERRIDES = {END_TO_END: {"model.proposals": "gt"}, FEATURES: {"data.eval_actors": "gt"}}

# Head widths are scaled to the quarter-width trunk (Mixed_4f: 208 channels) the way tx runs at
# D=128: the papers' 512-wide ACAR/HGRNN layers would dominate a CPU step at this size.
_HGRNN = {
    "model.focal_gamma": 2.0,
    "model.class_specific_nms": True,
    "head.hidden_size": 128,
    "data.context_keyframes": 3,  # the scene BiGRU sees 2l+1 = 7 keyframes (l = 3)
}
_ACAR = {"head.hidden_size": 128, "model.pose_softmax": True}  # ACAR §4.1: softmax over poses
_AIA = {"data.box_jitter": 0.05}
# The synthetic data's long-term evidence lies 2-6 s back (SYNTHETIC_DATA.md): a window of 6
# keyframes spans exactly that, where the papers' L = 30 (AIA) and w = 10 (ACFB) are sized for
# AVA's 15-minute movies; at 6 an AIA step costs about half and an ACFB step ~0.4x (measured,
# bench preset: 0.20 vs 0.38 s and 0.31 vs 0.73 s), which the suite's 90 minutes need.
_SYNTHETIC_HORIZON = 6
_AIA_FEATURES = {**_AIA, "train.batch_size": 16, "head.memory_window": _SYNTHETIC_HORIZON}
_NO_MEMORY = {"head.blocks": ("P", "O", "P", "O"), "head.memory_window": 0}

RUNS = (
    RunSpec("linear", "linear", note="baseline: linear classifier on pooled RoI features"),
    RunSpec(
        "i3d",
        "i3d",
        note="I3D Mixed_5 tail on the RoI tube; its checkpoint gives the frozen features",
    ),
    RunSpec("tx", "tx"),
    RunSpec("tx_i3d", "tx_i3d"),
    RunSpec(
        "linear_features",
        "linear",
        FEATURES,
        features_from="i3d",
        note="baseline of the frozen-feature heads (STAGE's 'FC')",
        ablation=True,
    ),
    # The context check's blind run (action_tx.bench.chance): the trunk of the `i3d` run sees
    # each person's own box and nothing else, so no other person's state can reach it.
    RunSpec(
        "linear_own_box",
        "linear",
        FEATURES,
        _GT_ACTORS,
        features_from="i3d",
        pixels="own_box",
        note="blind run of the context check: linear on each GT box's own pixels (the rest "
        "grey), GT boxes only",
        ablation=True,
    ),
    RunSpec("stage", "stage", FEATURES, {"data.context_keyframes": 1}, features_from="i3d"),
    RunSpec("hgrnn", "hgrnn", FEATURES, _HGRNN, features_from="i3d", note="l = 3"),
    RunSpec(
        "hgrnn_l0",
        "hgrnn",
        FEATURES,
        {**_HGRNN, "head.window": 0},
        features_from="i3d",
        note="l = 0: no neighbouring keyframes (issue 7 check)",
        ablation=True,
    ),
    # ACAR and AIA on the same frozen features (their claims are about the relation and memory
    # blocks, not about training the trunk with them): STAGE and HGRNN's own protocol.
    RunSpec(
        "acar",
        "acar",
        FEATURES,
        _ACAR,
        features_from="i3d",
        budget_scale=0.5,
        note="HR2O on frozen features; ACFB stage 1: no bank",
    ),
    RunSpec(
        "acar_acfb",
        "acar",
        FEATURES,
        {**_ACAR, "head.bank_window": _SYNTHETIC_HORIZON},
        features_from="i3d",
        bank_from="acar",
        budget_scale=0.5,
        note="stage 2 with the Actor-Context Feature Bank of run 'acar' (same features), "
        "w = 6 (the synthetic long-term horizon; the paper's w = 10)",
    ),
    # The memory check wants many keyframes: on clean features the M-blocks find the
    # long-term rule only after ~10k (tests/heads/test_aia_memory_cue.py). On the frozen
    # features of the `i3d` run a step takes 16 keyframes (one video's); the suite's time
    # allows 225 steps (3,600 keyframes) per seed, so this claim may stay undecided.
    RunSpec(
        "aia_features",
        "aia",
        FEATURES,
        _AIA_FEATURES,
        features_from="i3d",
        budget_scale=0.3,
        note="memory L = 6 (the synthetic long-term horizon; the paper's L = 30) with AMU on "
        "frozen features, 16 keyframes a step (issue 8 check)",
    ),
    RunSpec(
        "aia_nomem_features",
        "aia",
        FEATURES,
        {**_AIA_FEATURES, **_NO_MEMORY},
        features_from="i3d",
        budget_scale=0.3,
        note="no M-blocks on the same features and budget (issue 8 check)",
        ablation=True,
    ),
)

# Measured seconds of each part of a pass on the bench preset (the projection below).
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
        stage_overhead=0.74,
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
        stage_overhead=0.74,
    ),
}
# Steps per run: the preset's budget for the run's mode x its budget_scale (ACAR 0.5, AIA 0.3),
# chosen so that a full pass (3 seeds x 4 val splits, data made) is projected at <= 90 min on
# this 2-core CPU. The projection (`projected_seconds`, printed at the start of a pass) is
#   pretrain   = PRETRAIN_BUDGETS x step[e2e][i3d] + start[e2e] + pretrain_eval
#   extraction = S x (extract.train + V x extract.val)   per run whose features others read
#              + S x (bank.train + V x bank.val)         per run whose ACFB bank others read
#   train      = sum over runs of S x (start[mode] + steps(run) x step[mode][kind])
#   eval       = sum over runs of boxes x (eval_build[mode] + S x V x eval_job[mode][kind])
#   overhead   = stage_overhead x stages run (2 + per run S + boxes x (1 + S), + S x (1 + V)
#                per extracted source): Keras state cleared, configs built between stages
# (S seeds, V val splits; boxes = 2 for GT_BOX_RUNS, else 1; kind = the head, "acar+bank" for
# ACFB, "acar+rn" for its Relation Network). Inputs (COSTS["bench"]) from the first full pass
# (2026-12-06, heads.json of `--out=/work/heads_p1`, load average ~2: the pass alone on the
# 2-core machine): seconds per step = the trainer's median (heads.json step_time_s); start =
# a training's seconds beyond its steps; eval_job = (a box mode's eval stage - eval_build) /
# (S x V); extraction and bank = their stages' seconds; stage_overhead = the --quick pass's
# wall time beyond its stages' (36.8 s over 50 stages). With these budgets: pretrain 5.9,
# extraction 4.1, train 55.3, eval 17.2, overhead 2.4: 84.7 min. That pass took 79.5 min plus
# the pretraining's 6.8 min (run beside other jobs): 86.3 min, in three invocations
# (docs/notes/2026-12-06-heads-suite-first-pass.md).
# Feature runs get more steps than end-to-end ones (the papers train heads on frozen features
# longer; a step costs 2-300 ms instead of 90-260 ms).
BUDGETS = {
    "bench": dict(end_to_end=500, features=750),
    "demo": dict(end_to_end=500, features=750),
    "tiny": dict(end_to_end=10, features=10),
}
# On top of BASE per preset: the tiny preset's 64 px frames at 64 px, with anchors scaled to
# match (BASE: 16..96 at 112 px).
PRESET_OVERRIDES = {
    "bench": {},
    "demo": {},
    "tiny": {
        "data.image_size": 64,
        "model.anchor_sizes": (8.0, 16.0, 32.0, 48.0),
        "train.warmup_steps": 5,
        "train.log_every": 5,
    },
}

# The pretraining of the trunk every end-to-end run fine-tunes (`heads_pretrain`): the `i3d`
# detector's steps per preset on the pretraining data. The issue asks for a person localization
# AP@0.5 >= 0.85 (reported in heads.json and on the results page). Measured on the bench
# pretraining data (2026-12-06, cosine to the last step): 2000 steps gave AP@0.5 0.836
# (frame-mAP 0.413, 234 s), 3000 steps 0.880 (0.551, 407 s at load average ~2).
PRETRAIN_BUDGETS = {"bench": 3000, "demo": 3000, "tiny": 10}

# --quick's run list: one end-to-end claim (vatx-tx / vatx-tx-gt: tx > i3d), one on frozen
# features (stage-fc: stage > linear_features), and the instrument's blind runs (linear_own_box,
# i3d; linear: its GT-box scores show what a RoI reads of the others through the trunk).
# One pass (QUICK_PLAN: 2 seeds x 2 val splits, data made, 2-core CPU at load average 5-10 from
# other jobs) took 17 min 30 s when every evaluation re-traced the model (8 per end-to-end
# run at ~17 s). With the trace cached and GT boxes only for GT_BOX_RUNS, from scratch (data
# made too), load average 1.6-1.9: 4 min 3 s wall, 236 s of CPU; end-to-end runs 38-58 s.
# With linear_own_box added (2026-12-06, from scratch): 238 s wall, the run 33 s of it.
QUICK_RUNS = ("linear", "i3d", "tx", "linear_features", "linear_own_box", "stage")


def box_modes(spec: RunSpec, gt_runs) -> tuple:
    """The box modes a run is scored in (`heads_eval.MODES`): an own_box run on ground-truth
    boxes only, a run of `gt_runs` on its detections and on ground-truth boxes, any other
    on its detections."""
    if spec.pixels == "own_box":
        return ("gt",)
    return ("rpn", "gt") if spec.name in gt_runs else ("rpn",)


def run_kind(spec: RunSpec) -> str:
    """The key of a run's costs in `COSTS`: its head, "+bank" for ACAR with a feature bank,
    "+rn" for ACAR's Relation Network (N^2 actor pairs: several times HR2O's step)."""
    rn = spec.head == "acar" and spec.overrides.get("head.relation") == "rn"
    return spec.head + ("+bank" if spec.bank_from else "") + ("+rn" if rn else "")


def projected_seconds(runs, preset: str, seeds: int, val_splits: int, gt_runs=None) -> dict:
    """The pass's projected wall time from `COSTS[preset]` (see the formula beside BUDGETS),
    data already made -> {"total": s, "pretrain": s, "extraction": s, "train": s, "eval": s,
    "overhead": s}; None when the preset has no measured costs or a run's kind has none.
    gt_runs: the runs also scored on ground-truth boxes (None: all)."""
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
    # Stages run: pretrain (2); per run S trains, an eval per box mode, S matches per mode;
    # per extracted source S x (1 + V).
    stages = 2 + sum(s + boxes[r.name] * (1 + s) for r in runs) + len(sources) * s * (1 + v)
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
        overhead=stages * cost["stage_overhead"],
    )
    return {"total": sum(parts.values()), **parts}


def budget(preset: str, mode: str) -> int:
    """Training steps of a run of `mode` on `preset` (unknown presets: the bench budget)."""
    return BUDGETS.get(preset, BUDGETS["bench"])[mode]


def run_steps(spec: RunSpec, preset: str) -> int:
    """Training steps of run `spec` on `preset`: its mode's budget x its budget_scale."""
    return max(1, int(round(budget(preset, spec.mode) * spec.budget_scale)))


def check_runs(runs=RUNS) -> None:
    """Raises ValueError when the run list is inconsistent (duplicate names, unknown mode,
    an override key that names no config section, a dependency on a run that is absent or
    comes later). `heads.run_config` validates each run's whole config."""
    seen = set()
    for spec in runs:
        if spec.name in seen:
            raise ValueError(f"run list: duplicate run name {spec.name!r}")
        if spec.mode not in (END_TO_END, FEATURES):
            raise ValueError(f"run {spec.name!r}: unknown mode {spec.mode!r}")
        if not spec.budget_scale > 0:
            raise ValueError(
                f"run {spec.name!r}: budget_scale must be > 0, got {spec.budget_scale!r}"
            )
        for key in spec.overrides:
            section, _, field = key.partition(".")
            if section not in OVERRIDE_SECTIONS or not field:
                raise ValueError(
                    f"run {spec.name!r}: override {key!r} is not SECTION.FIELD with SECTION "
                    f"one of {', '.join(OVERRIDE_SECTIONS)}"
                )
        if (spec.mode == FEATURES) != (spec.features_from is not None):
            raise ValueError(f"run {spec.name!r}: a features run needs features_from, and only it")
        if spec.pixels not in ("frame", "own_box"):
            raise ValueError(f"run {spec.name!r}: pixels must be frame or own_box")
        if spec.pixels == "own_box" and not (
            spec.mode == FEATURES and _GT_ACTORS.items() <= spec.overrides.items()
        ):
            raise ValueError(
                f"run {spec.name!r}: an own_box run is a features run on ground-truth actors "
                f"(overrides {_GT_ACTORS})"
            )
        for dep in (spec.features_from, spec.bank_from):
            if dep is not None and dep not in seen:
                raise ValueError(
                    f"run {spec.name!r} depends on {dep!r}, which is not an earlier run"
                )
        seen.add(spec.name)
