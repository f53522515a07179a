"""Benchmark suite `heads`: the papers' claims decided over seeds and pooled val splits.

    python tools/benchmark.py --suite=heads --preset=bench --out=DIR [--quick] \
        [--seeds=3 --seed_offset=0 --data_seed=0 --val_splits=4 --instrument_splits=6]

A pass first prints its projected time ("projected: N min", `heads_costs.projected_seconds`
of the measured `heads_costs.COSTS`). Every stage is a library call in this process, printed
before it runs and timed (`runner.StageLog`; the seeds are set before each, and Keras' state
cleared before each that builds a model: all but data, conversion and matching):
  1. data      the training data, and the val split of each of the plan's generator seeds
               and of its instrument splits (`heads_data.prepare_data`,
               `prepare_instrument_splits`), converted into DIR/P/;
  2. pretrain  the `i3d` detector on data of a disjoint generator seed, its I3D weights
               exported (`heads_pretrain`): every end-to-end run fine-tunes from them;
  3. per run of `suite_runs()` (heads_runs.RUNS + claims.VARIANT_RUNS; --quick:
     heads_runs.QUICK_RUNS of them) and per training seed (`heads_seeds.expand_runs`):
       features  `feature_extraction.extract_split` of the same seed's `features_from` run for
                 train and every val split (or `extract_split_bank`: ACAR's bank);
       train     `train_lib.train_task(make_task(config))` into DIR/P/runs/<run>-seed<N>;
       eval      every seed on every val split, on detections, and on GT boxes for the
                 runs a GT-box claim or chance check reads (heads_runs.GT_BOX_RUNS); one
                 model per run and box mode, each checkpoint restored into it (`heads_eval`;
                 its inference traced once: `eval_lib.predict_function`);
       matches   `matching.match_run` of the pooled splits per box mode -> matches_*.npz;
       instrument  a blind run of `chance.CHANCE_CHECKS` also on the instrument's extra val
                 splits, matched on val + those pooled (`heads_features.score_blind_run`):
                 the instrument check's narrower interval; the claims read the val splits;
  4. DIR/heads.json (rewritten after every run, all at once: `output_files.write_texts`)
     and, at the end, the results page
     DIR/results.md (`results_page.write_page`: claims with verdicts, runs with intervals).
Frozen-feature runs read the features of the `i3d` run of their own seed (not one shared
extraction): a rerun with other seeds (--seed_offset) draws a new extractor too, so the
intervals include the extractor's variation that such a rerun would see.
Every stage is skipped when its output exists, so an interrupted suite continues where it
stopped; a failing stage fails only its run's seed. heads.json keeps every invocation of the
pass ("invocations": started, seconds; `earlier_invocations`) and their sum ("seconds_total"),
so a resumed pass reports what the whole pass cost, not only its last invocation.
"""

import datetime
import json
import os
import time

from action_tx import config as C
from action_tx import output_files
from action_tx.bench import chance
from action_tx.bench import claims as claims_lib
from action_tx.bench import heads_data as D
from action_tx.bench import heads_features as F
from action_tx.bench.heads_eval import MODES, checkpoint_path, score_seeds, split_config
from action_tx.bench.heads_features import extract
from action_tx.bench import heads_costs, heads_pretrain
from action_tx.bench import heads_runs as R
from action_tx.bench import heads_seeds as S
from action_tx.bench.heads_data import Paths
from action_tx.bench.runner import StageError, StageLog, machine_info, merge_commands
from action_tx.bench.runner import earlier_invocations, same_pass

__all__ = [
    "MODES",
    "Paths",
    "earlier_invocations",
    "extract",
    "run",
    "run_config",
    "same_pass",
    "score_seeds",
    "split_config",
    "suite_runs",
]


def suite_runs(quick: bool = False) -> tuple:
    """heads_runs.RUNS + claims.VARIANT_RUNS, with the claims checked against it and every
    run that a GT-box claim or a chance check reads in heads_runs.GT_BOX_RUNS; --quick: only
    heads_runs.QUICK_RUNS of them."""
    runs = tuple(R.RUNS) + tuple(claims_lib.VARIANT_RUNS)
    claims_lib.check_claims(claims_lib.CLAIMS, [r.name for r in runs])
    R.check_runs(runs)
    needed = {n for c in claims_lib.CLAIMS if c.proposals == "gt" for n in (c.better, c.other)}
    needed |= {c.run for c in chance.CHANCE_CHECKS if c.proposals == "gt"}
    if not needed <= set(R.GT_BOX_RUNS):
        raise ValueError(
            f"heads_runs.GT_BOX_RUNS lacks {sorted(needed - set(R.GT_BOX_RUNS))}, which a "
            "GT-box claim or chance check reads"
        )
    return tuple(r for r in runs if r.name in R.QUICK_RUNS) if quick else runs


def run_config(
    spec: R.RunSpec,
    paths: Paths,
    preset: str,
    steps: int,
    resolve=None,
    extra=None,
    eval_split=None,
) -> C.ExperimentConfig:
    """The run's validated config: `R.BASE`, the preset's overrides, the run's head, data and
    budget, `extra` (e.g. train.init_checkpoint), then its own overrides. Its eval fields
    (TFRecords, ground truth, features, ACAR's eval bank) name `eval_split` (a
    `heads_data.SplitData`; default the training data's val split, generator seed 0): the
    suite passes its plan's first, whose features and bank it extracts (with --data_seed=100
    there are none of seed 0, and ACAR loads its eval bank when built). `split_config` points
    them at another. `resolve(model, data) -> model`: default `tasks.resolve_keyframe_counts`."""
    split = eval_split or paths.val_split(D.TRAIN_DATA_SEED)
    overrides = {
        **R.BASE,
        **R.PRESET_OVERRIDES.get(preset, {}),
        "model.head": spec.head,
        "data.label_map": paths.label_map,
        "data.train_tfrecords": paths.shards("train"),
        "data.eval_tfrecords": split.shards,
        "train.model_dir": paths.run_dir(spec.name),
        "train.train_steps": steps,
        "eval.groundtruth": split.groundtruth,
        **R.EVAL_OVERRIDES,
    }
    first_val = split.name
    if spec.mode == R.FEATURES:
        overrides["data.input"] = "features"
        source, pixels = spec.features_from, spec.pixels
        overrides["data.feature_dir"] = paths.feature_dir(source, "train", pixels=pixels)
        overrides["data.eval_feature_dir"] = paths.feature_dir(source, first_val, pixels=pixels)
    if spec.bank_from:
        overrides["head.bank_dir"] = paths.feature_dir(spec.bank_from, "train", "acfb")
        overrides["head.eval_bank_dir"] = paths.feature_dir(spec.bank_from, first_val, "acfb")
    overrides.update(extra or {})
    overrides.update(spec.overrides)
    if resolve is None:
        from action_tx.tasks import resolve_keyframe_counts as resolve
    return C.with_overrides(C.ExperimentConfig(), overrides, resolve)


def train(config: C.ExperimentConfig) -> dict:
    """Trains (or resumes) the run of `config` with its model_dir locked -> train_task's dict."""
    from action_tx import model_dir_lock, train_lib
    from action_tx.tasks import make_task

    task = make_task(config)
    task.check_train_data()
    lock = model_dir_lock.acquire(config.train.model_dir, log=lambda m: print(f"warning: {m}"))
    try:
        return train_lib.train_task(task)
    finally:
        lock.release()


def train_seed(spec, log, paths, preset, steps, data, init, done, failed) -> dict:
    """Trains one concrete run (one seed; skipping what exists) -> its result: status,
    config (the ExperimentConfig; dropped from heads.json), train_seconds. data: (train
    SplitData, val SplitData tuple); init: the pretrained trunk's prefix."""
    train_split, val = data
    result = dict(name=spec.name, status="ok")
    for dep in (spec.features_from, spec.bank_from):
        if dep is not None and dep not in done:
            result["status"] = f"not run: needs run '{dep}', which has no result"
            return result
    if spec.mode == R.END_TO_END and init is None:
        result["status"] = "not run: no pretrained trunk (the pretraining failed)"
        return result
    run_dir, stage = paths.run_dir(spec.name), "?"
    try:
        splits = (train_split, *val)
        if spec.features_from:
            stage = "features"
            source = spec.features_from
            F.ensure_features(log, paths, source, "none", splits, failed, pixels=spec.pixels)
        if spec.bank_from:
            stage = "bank"
            F.ensure_features(
                log, paths, spec.bank_from, "acfb", splits, failed, spec.features_from
            )
        stage = "config"
        extra = {"train.init_checkpoint": init} if spec.mode == R.END_TO_END else {}
        result["config"] = config = run_config(
            spec, paths, preset, steps, extra=extra, eval_split=val[0]
        )
        stage = "train"
        items = ", ".join(f"{k}={v!r}" for k, v in {"mode": spec.mode, **spec.overrides}.items())
        call = f"train_lib.train_task(make_task(run_config({spec.name!r}: {items}))) -> {run_dir}"
        if os.path.isfile(checkpoint_path(run_dir, steps) + ".index"):
            log.skip(f"train {spec.name}", call)
        else:
            result["train_seconds"], _ = log.run(f"train {spec.name}", call, train, config)
        result["train_seconds"] = _train_seconds(run_dir, result.get("train_seconds"))
    except (StageError, OSError, ValueError, AttributeError) as e:
        result["status"] = f"failed at {stage}: {' '.join(str(e).split())[:300]}"
    return result


def _train_seconds(run_dir, seconds):
    """The train stage's wall time: this call's, else the one recorded when it ran."""
    path = os.path.join(run_dir, "bench_train_seconds.json")
    if seconds is not None and not os.path.isfile(path):
        output_files.write_texts({path: json.dumps({"seconds": seconds})})
    elif seconds is None and os.path.isfile(path):
        with open(path) as f:
            seconds = json.load(f).get("seconds")
    return seconds


def run_row(spec: R.RunSpec, steps: int, seeds: list, out_dir: str, modes=MODES) -> dict:
    """heads.json's row of a run from its seeds' results: `seeds` (those with matches in every
    box mode of `modes`) and `matches` {mode: [path relative to heads.json, one per seed]}."""
    ok = [s for s in seeds if s["status"] == "ok"]
    bad = [s for s in seeds if s["status"] != "ok"]
    status = "ok" if not bad else f"{len(ok)}/{len(seeds)} seeds ok; {bad[0]['status']}"
    # A blind run's matches on the val + instrument splits (`score_instrument`), every seed's.
    instrument = [s.get("instrument_matches") or {} for s in ok]
    extra = {}
    if ok and all(instrument):
        extra["instrument_matches"] = {
            m: [os.path.relpath(i[m], out_dir) for i in instrument] for m in instrument[0]
        }
    return dict(
        name=spec.name,
        head=spec.head,
        mode=spec.mode,
        steps=steps,
        note=spec.note,
        status=status,
        seeds=[s["seed"] for s in ok],
        modes=list(modes),
        matches={m: [os.path.relpath(s["matches"][m], out_dir) for s in ok] for m in modes},
        per_seed=[
            {k: v for k, v in s.items() if k not in ("matches", "instrument_matches", "config")}
            for s in seeds
        ],
        **extra,
    )


def run(
    out_dir: str,
    preset: str = "bench",
    quick: bool = False,
    runs=None,
    data_root: str = None,
    seed_plan: S.SeedPlan = None,
    generator: dict = None,
    gt_runs=None,
) -> str:
    """Runs the suite; writes out_dir/heads.json and out_dir/results.md; returns the page.

    runs: default `suite_runs(quick)`; seed_plan: default `heads_seeds.QUICK_PLAN` with
    --quick, else `SeedPlan()`; data_root: the parent folder of data/synthetic_<preset>
    (default the repository's); generator: extra `synthetic.generate` options; gt_runs: the
    runs also scored on ground-truth boxes (default heads_runs.GT_BOX_RUNS)."""
    from action_tx.bench import results_page

    runs = suite_runs(quick) if runs is None else tuple(runs)
    plan = seed_plan or (S.QUICK_PLAN if quick else S.SeedPlan())
    concrete = S.expand_runs(runs, plan)  # checks the run list and the seeded one
    start = time.perf_counter()
    preset = "tiny" if quick else preset
    gt_runs = set(R.GT_BOX_RUNS if gt_runs is None else gt_runs)
    projected = heads_costs.projected_seconds(
        runs, preset, plan.seeds, plan.val_splits, gt_runs, plan.instrument_splits
    )
    print(
        f"projected: {projected['total'] / 60:.0f} min ("
        + ", ".join(f"{k} {v / 60:.1f}" for k, v in projected.items() if k != "total")
        + f" min; heads_costs.COSTS[{preset!r}], {plan.seeds} seeds x {plan.val_splits} val "
        f"splits, {plan.instrument_splits} instrument splits)"
        if projected
        else f"projected: n/a (heads_costs.COSTS has no measured costs for preset {preset!r})",
        flush=True,
    )
    machine = machine_info()
    machine["load_average_start"] = machine.pop("load_average")
    paths, log = Paths(out_dir, preset, data_root), StageLog()
    val_seeds = [v.data_seed for v in S.val_splits(plan)]
    data = D.prepare_data(log, paths, val_seeds, generator)
    extra, refused = D.prepare_instrument_splits(
        log, paths, plan.first_instrument_seed, plan.instrument_splits, generator
    )
    rates = D.positive_rates(data[1] + extra, paths.label_map)  # the instrument's look-alikes
    pretrain_splits = D.prepare_pretrain_data(log, paths, generator)
    try:
        pretrained = heads_pretrain.pretrain(
            log,
            paths,
            preset,
            pretrain_splits,
            lambda spec, steps, extra: run_config(spec, paths, preset, steps, extra=extra),
            train,
        )
    except StageError as e:
        pretrained = dict(status=f"failed: {' '.join(str(e).split())[:300]}")
    init = pretrained.get("checkpoint")
    budgets = {m: R.budget(preset, m) for m in (R.END_TO_END, R.FEATURES)}
    rows, done, failed = [], set(), set()
    heads_json = os.path.join(out_dir, "heads.json")
    earlier = same_pass(heads_json, preset, quick, plan.pass_key())
    invocations = earlier_invocations(earlier)
    this = dict(started=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    invocations.append(this)

    def write():
        this["seconds"] = round(time.perf_counter() - start, 1)
        machine["load_average"] = [round(x, 2) for x in os.getloadavg()]
        summary = dict(
            preset=preset,
            quick=quick,
            seed_plan=plan.to_json(),
            val_splits=[dict(name=s.name, data_seed=s.data_seed) for s in data[1]],
            instrument_splits=[dict(name=s.name, data_seed=s.data_seed) for s in extra],
            instrument_refused=list(refused),
            budgets=budgets,
            pretrain=pretrained,
            positive_rates=rates,
            machine=machine,
            seconds=this["seconds"],
            invocations=invocations,
            seconds_total=round(sum(i["seconds"] for i in invocations), 1),
            projected_seconds=projected and round(projected["total"], 1),
            runs=rows,
            commands=merge_commands(earlier.get("commands") or [], log.commands),
        )
        output_files.write_texts({heads_json: json.dumps(summary, indent=1)})

    for i, spec in enumerate(runs):
        steps, run_start = R.run_steps(spec, preset), time.perf_counter()
        mine = [c for c in concrete if c.run == spec.name]
        seeds = [
            dict(
                seed=c.seed,
                **train_seed(c.spec, log, paths, preset, steps, data, init, done, failed),
            )
            for c in mine
        ]
        modes = R.box_modes(spec, gt_runs)
        specs = [c.spec for c in mine]
        score_seeds(spec.name, specs, seeds, log, paths, steps, data[1], done, modes)
        for check in chance.CHANCE_CHECKS if extra else ():
            if check.run == spec.name and check.proposals in modes:
                F.score_blind_run(
                    spec, specs, seeds, log, paths, steps, data[1], extra, failed, check
                )
        for s in seeds:
            print(f"--- {s['name']}: {s['status']}", flush=True)
        rows.append(run_row(spec, steps, seeds, out_dir, modes))
        print(
            f"--- run {spec.name} [{i + 1}/{len(runs)}]: {rows[-1]['status']} "
            f"({time.perf_counter() - run_start:.0f} s; suite {time.perf_counter() - start:.0f} s)",
            flush=True,
        )
        write()
    write()
    return results_page.write_page(heads_json, os.path.join(out_dir, "results.md"))
