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
GT_BOX_RUNS = ("i3d", "tx", "linear_own_box")
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

# No end-to-end `linear` run: no claim reads it, and the blind run it was (context on GT
# boxes) reads the other people through the trunk (docs/notes/2026-12-06-context-instrument.md);
# its ~4 min pay for the instrument splits (docs/notes/2026-12-06-instrument-splits.md).
RUNS = (
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

# Steps per run: the preset's budget for the run's mode x its budget_scale (ACAR 0.5, AIA 0.3),
# chosen so that a full pass (3 seeds x 4 val splits, data made) is projected at <= 90 min on
# this 2-core CPU (`heads_costs.projected_seconds`: the formula and the measured costs).
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
# i3d). Timings below are of the list with the end-to-end `linear` run it had then.
# One pass (QUICK_PLAN: 2 seeds x 2 val splits, data made, 2-core CPU at load average 5-10 from
# other jobs) took 17 min 30 s when every evaluation re-traced the model (8 per end-to-end
# run at ~17 s). With the trace cached and GT boxes only for GT_BOX_RUNS, from scratch (data
# made too), load average 1.6-1.9: 4 min 3 s wall, 236 s of CPU; end-to-end runs 38-58 s.
# With linear_own_box added (2026-12-06, from scratch): 238 s wall, the run 33 s of it.
QUICK_RUNS = ("i3d", "tx", "linear_features", "linear_own_box", "stage")


def box_modes(spec: RunSpec, gt_runs) -> tuple:
    """The box modes a run is scored in (`heads_eval.MODES`): an own_box run on ground-truth
    boxes only, a run of `gt_runs` on its detections and on ground-truth boxes, any other
    on its detections."""
    if spec.pixels == "own_box":
        return ("gt",)
    return ("rpn", "gt") if spec.name in gt_runs else ("rpn",)


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
