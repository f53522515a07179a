"""Benchmark suite `heads`: every head on one trunk, one data set, one step budget, one table.

    python tools/benchmark.py --suite=heads --preset=bench --out=DIR [--quick]

Every stage is a library call in this process, printed before it runs and timed
(`runner.StageLog`; Keras' state is cleared and the seeds set before each):
  1. data       `synthetic.generate` (when data/synthetic_P/annotations is absent) and
                `convert.convert_split` for train and val into DIR/P/tfrecords;
  2. per run of `heads_runs.RUNS`, in order, with the run's `ExperimentConfig` (`run_config`:
     the run list's overrides over configs/bench.flags' fields):
       features   `feature_extraction.extract_split` of the checkpoint of run
                  `features_from` for train and val (frozen-feature runs), or
                  `extract_split_bank` (ACAR stage 2's bank);
       train      `train_lib.train_task(make_task(config))` into DIR/P/runs/<run>, which
                  holds the run's config.json (`python tools/train.py` reads the same);
       eval       `eval_task.TaskEvaluator` on the val split (detections), and with the
                  mode's GT boxes (`heads_runs.GT_BOX_OVERRIDES`): the GT-box mAP;
  3. DIR/heads.md and DIR/heads.json (rewritten after every run, so a partial table exists).
--quick uses the tiny preset (64 px), a few steps, and leaves the ablation runs and the
GT-box evaluations out.
Every stage is skipped when its output exists (data, shards, features, the checkpoint of the
final step, the results JSON), so an interrupted suite continues where it stopped. A run
whose head is not in `HEADS` yet is listed as "not run" with the reason; a failing stage fails
only its run.
"""

import json
import os
import time

from action_tx import config as C
from action_tx.bench import heads_runs as R
from action_tx.bench import heads_table
from action_tx.bench.runner import ROOT, StageError, StageLog, call_text, machine_info


def _rel(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


class Paths:
    """Where the suite reads and writes for one preset (`data_root`: the synthetic data's
    parent folder, default the repository's data/)."""

    def __init__(self, out_dir: str, preset: str, data_root: str = None):
        self.data = _rel(
            os.path.join(data_root or os.path.join(ROOT, "data"), f"synthetic_{preset}")
        )
        self.ann = os.path.join(self.data, "annotations")
        self.label_map = os.path.join(self.ann, "action_list.pbtxt")
        self.base = os.path.join(out_dir, preset)
        self.tfrecords = os.path.join(self.base, "tfrecords")
        self.runs = os.path.join(self.base, "runs")
        self.features = os.path.join(self.base, "features")

    def shards(self, split: str) -> str:
        return os.path.join(self.tfrecords, f"{split}.tfrecord-*")

    def run_dir(self, name: str) -> str:
        return os.path.join(self.runs, name)

    def feature_dir(self, run: str, split: str, bank: str = "none") -> str:
        kind = "features" if bank == "none" else bank
        return os.path.join(self.features, f"{run}_{kind}_{split}")


def prepare_data(log: StageLog, paths: Paths, preset: str) -> None:
    from action_tx.data import convert, synthetic

    kwargs = dict(preset=preset, seed=0, progress=True, write_videos=False)
    call = call_text("synthetic.generate", paths.data, **kwargs)
    if os.path.isdir(paths.ann):
        log.skip("data", call, reason=f"{paths.ann} exists")
    else:
        log.run("data", call, synthetic.generate, paths.data, **kwargs)
    for split in ("train", "val"):
        out = f"{paths.tfrecords}/{split}.tfrecord@4"
        call = call_text("convert.convert_split", paths.data, split, out)
        if os.path.isfile(os.path.join(paths.tfrecords, f"{split}_manifest.json")):
            log.skip(f"tfrecords {split}", call)
        else:
            log.run(f"tfrecords {split}", call, convert.convert_split, paths.data, split, out)


def run_config(
    spec: R.RunSpec, paths: Paths, preset: str, steps: int, resolve=None
) -> C.ExperimentConfig:
    """The run's validated config: `R.BASE`, the preset's overrides, the run's head, data and
    budget, then its own overrides. `resolve(model, data) -> model`: default
    `tasks.resolve_keyframe_counts` (the keyframe counts of the data's manifests)."""
    overrides = {
        **R.BASE,
        **R.PRESET_OVERRIDES.get(preset, {}),
        "model.head": spec.head,
        "data.label_map": paths.label_map,
        "data.train_tfrecords": paths.shards("train"),
        "data.eval_tfrecords": paths.shards("val"),
        "train.model_dir": paths.run_dir(spec.name),
        "train.train_steps": steps,
        "eval.groundtruth": f"{paths.ann}/ava_val.csv",
        **R.EVAL_OVERRIDES,
    }
    if spec.mode == R.FEATURES:
        overrides["data.input"] = "features"
        overrides["data.feature_dir"] = paths.feature_dir(spec.features_from, "train")
        overrides["data.eval_feature_dir"] = paths.feature_dir(spec.features_from, "val")
    if spec.bank_from:
        overrides["head.bank_dir"] = paths.feature_dir(spec.bank_from, "train", "acfb")
        overrides["head.eval_bank_dir"] = paths.feature_dir(spec.bank_from, "val", "acfb")
    overrides.update(spec.overrides)
    if resolve is None:
        from action_tx.tasks import resolve_keyframe_counts as resolve
    return C.with_overrides(C.ExperimentConfig(), overrides, resolve)


def _checkpoint(run_dir: str, steps: int) -> str:
    return os.path.join(run_dir, f"ckpt-{steps}")


def extract(paths: Paths, source: str, split: str, bank: str = "none") -> dict:
    """Features (or with bank="acfb" ACAR's bank) of run `source`'s checkpoint over `split`,
    with the config of its config.json."""
    import tensorflow as tf

    from action_tx import feature_extraction
    from action_tx.data import tfrecords
    from action_tx.tasks import make_task

    run_dir = paths.run_dir(source)
    config = C.load(run_dir)
    checkpoint = tf.train.latest_checkpoint(run_dir)
    if config is None or checkpoint is None:
        raise FileNotFoundError(f"{run_dir}: no config.json or no checkpoint")
    task = make_task(config)
    files = tfrecords.match_files(paths.shards(split))
    out = paths.feature_dir(source, split, bank)
    if bank == "none":
        return feature_extraction.extract_split(task, checkpoint, files, out, split=split)
    return feature_extraction.extract_split_bank(
        task, checkpoint, out, split=split, batch_size=4, files=files
    )


def _ensure_features(log, paths, source, bank, failed) -> None:
    """Extracts the features (or ACFB bank) of run `source` for both splits unless present;
    remembers a failed extraction in `failed` so later runs do not retry it."""
    if (source, bank) in failed:
        raise StageError(
            f"the {bank if bank != 'none' else 'feature'} extraction of run "
            f"'{source}' failed earlier"
        )
    for split in ("train", "val"):
        out = paths.feature_dir(source, split, bank)
        stage = f"features {source} {split}" + (f" --bank={bank}" if bank != "none" else "")
        name = "extract_split" if bank == "none" else "extract_split_bank"
        call = call_text(f"feature_extraction.{name}", f"runs/{source}", split=split, out=out)
        # Written last by the extractor: features manifest.json, bank acfb.json.
        marker = "manifest.json" if bank == "none" else f"{bank}.json"
        if os.path.isfile(os.path.join(out, marker)):
            log.skip(stage, call)
            continue
        try:
            log.run(stage, call, extract, paths, source, split, bank)
        except StageError:
            failed.add((source, bank))
            raise


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


def evaluate(config: C.ExperimentConfig, out_dir: str, paths: Paths) -> float:
    """Scores the newest checkpoint of the run's model_dir on val into `out_dir` -> mAP."""
    from action_tx import checkpointing
    from action_tx.eval_task import TaskEvaluator
    from action_tx.tasks import make_task

    evaluator = TaskEvaluator(make_task(config), out_dir)
    model_dir = config.train.model_dir
    path = evaluator.restore_newest(checkpointing.find_checkpoints(model_dir, log=None))
    if path is None:
        raise FileNotFoundError(f"no checkpoint in {model_dir}")
    result = evaluator.score(
        path,
        excluded=f"{paths.ann}/ava_val_excluded_timestamps.csv",
        evidence=f"{paths.ann}/evidence_val.csv",
    )
    return result.map


def _overrides_text(spec: R.RunSpec) -> str:
    """The run's head, mode and own overrides, as printed in its train stage."""
    items = {"model.head": spec.head, "mode": spec.mode, **spec.overrides}
    return ", ".join(f"{k}={v!r}" for k, v in items.items())


def run_one(spec, log, paths, preset, steps, available, keyframes, done, failed, gt_eval=True):
    """Trains and evaluates one run (skipping what exists) -> its result dict. `done`: names
    of runs with results; `failed`: (run, bank) extractions that failed; `gt_eval`: also the
    GT-box evaluation (left out with --quick)."""
    result = dict(
        name=spec.name, head=spec.head, mode=spec.mode, steps=steps, note=spec.note, status="ok"
    )
    if spec.head not in available:
        result["status"] = f"not run: head '{spec.head}' not in action_tx.heads.HEADS yet"
        return result
    for dep in (spec.features_from, spec.bank_from):
        if dep is not None and dep not in done:
            result["status"] = f"not run: needs run '{dep}', which has no result"
            return result
    run_dir = paths.run_dir(spec.name)
    stage = "?"
    try:
        if spec.features_from:
            stage = "features"
            _ensure_features(log, paths, spec.features_from, "none", failed)
        if spec.bank_from:
            stage = "bank"
            _ensure_features(log, paths, spec.bank_from, "acfb", failed)
        stage = "config"
        config = run_config(spec, paths, preset, steps)
        stage = "train"
        call = (
            f"train_lib.train_task(make_task(run_config({spec.name!r}: {_overrides_text(spec)})))"
            f" -> {run_dir}, {steps} steps"
        )
        if os.path.isfile(_checkpoint(run_dir, steps) + ".index"):
            log.skip(f"train {spec.name}", call)
        else:
            result["train_seconds"], _ = log.run(f"train {spec.name}", call, train, config)
        from action_tx.bench import heads_metrics as M

        for gt_boxes in (False, True) if gt_eval else (False,):
            stage = "eval" + (" gt boxes" if gt_boxes else "")
            extra = R.GT_BOX_OVERRIDES[spec.mode] if gt_boxes else {}
            out = os.path.join(run_dir, "eval_gt_boxes" if gt_boxes else "eval")
            call = call_text("TaskEvaluator(...).score", f"runs/{spec.name}", **extra)
            call += f" -> {out}"
            label = f"{stage} {spec.name}"
            if M.eval_results(out, steps) is not None:
                log.skip(label, call)
            else:
                log.run(label, call, evaluate, C.with_overrides(config, extra), out, paths)
        stage = "collect"
        result.update(
            M.summarize_eval(M.eval_results(os.path.join(run_dir, "eval"), steps), keyframes)
        )
        gt_results = M.eval_results(os.path.join(run_dir, "eval_gt_boxes"), steps)
        result["gt_box_map"] = gt_results.get("mAP@0.5IOU") if gt_results else None
        result["gt_by_evidence"] = (
            M.summarize_eval(gt_results)["by_evidence"] if gt_results else None
        )
        result["head_params"], result["trainable_params"] = M.count_parameters(
            _checkpoint(run_dir, steps)
        )
        from action_tx.tasks import make_task

        # The trainer's examples per step (feature mode counts the context keyframes too).
        result["step_time_s"] = M.step_seconds(run_dir, make_task(config).global_batch_size)
        if result.get("train_seconds") is None:
            result["train_seconds"] = _recorded_train_seconds(run_dir)
        _record_train_seconds(run_dir, result.get("train_seconds"))
        done.add(spec.name)
    except (StageError, OSError, ValueError, AttributeError) as e:
        result["status"] = f"failed at {stage}: {' '.join(str(e).split())[:300]}"
    return result


def _record_train_seconds(run_dir, seconds):
    path = os.path.join(run_dir, "bench_train_seconds.json")
    if seconds is not None and not os.path.isfile(path):
        with open(path, "w") as f:
            json.dump({"seconds": seconds}, f)


def _recorded_train_seconds(run_dir):
    path = os.path.join(run_dir, "bench_train_seconds.json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f).get("seconds")
    return None


def _available_heads() -> set:
    from action_tx.heads import HEADS

    return set(HEADS)


def run(
    out_dir: str, preset: str = "bench", quick: bool = False, runs=R.RUNS, data_root: str = None
) -> str:
    """Runs the comparison; writes out_dir/heads.json (and heads.md); returns the Markdown.
    `data_root`: the parent folder of data/synthetic_<preset> (default the repository's)."""
    R.check_runs(runs)
    start = time.perf_counter()
    preset = "tiny" if quick else preset
    machine = machine_info()
    machine["load_average_start"] = machine.pop("load_average")
    paths = Paths(out_dir, preset, data_root)
    log = StageLog()
    prepare_data(log, paths, preset)
    with open(os.path.join(paths.tfrecords, "val_manifest.json")) as f:
        keyframes = json.load(f)["keyframes"]["written"]
    available = _available_heads()
    budgets = {m: R.budget(preset, m) for m in (R.END_TO_END, R.FEATURES)}
    results, done, failed = [], set(), set()

    def write():
        machine["load_average"] = [round(x, 2) for x in os.getloadavg()]
        checks = heads_table.evaluate_checks(results, R.CHECKS)
        kwargs = dict(
            preset=preset,
            quick=quick,
            budgets=budgets,
            machine=machine,
            commands=log.commands,
            checks=checks,
            seconds=time.perf_counter() - start,
        )
        report = heads_table.to_markdown(results, **kwargs)
        with open(os.path.join(out_dir, "heads.md"), "w") as f:
            f.write(report)
        with open(os.path.join(out_dir, "heads.json"), "w") as f:
            f.write(heads_table.to_json(results, **kwargs))
        return report

    for spec in runs:
        steps = R.run_steps(spec, preset)
        trained = os.path.isfile(_checkpoint(paths.run_dir(spec.name), steps) + ".index")
        if quick and spec.ablation and not trained:  # one that exists is still reported
            results.append(
                dict(
                    name=spec.name,
                    head=spec.head,
                    mode=spec.mode,
                    steps=steps,
                    note=spec.note,
                    status="not run: ablation, left out with --quick",
                )
            )
            continue
        results.append(
            run_one(
                spec,
                log,
                paths,
                preset,
                steps,
                available,
                keyframes,
                done,
                failed,
                gt_eval=not quick,
            )
        )
        print(f"--- run {spec.name}: {results[-1]['status']}", flush=True)
        write()
    return write()
