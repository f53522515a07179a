"""Benchmark suite `heads`: every head on one trunk, one data set, one step budget, one table.

    python tools/benchmark.py --suite=heads --preset=bench --out=DIR [--quick]

Drives the project's own tools, printing each command before it runs (each runs in a fork of
this process, which imports TensorFlow once: `runner.ToolRunner(fork=True)`; the printed
command does the same work in a new process):
  1. data       tools/make_synthetic_ava.py --preset=P (when data/synthetic_P/annotations is
                absent) and tools/create_ava_tfrecords.py for train and val into DIR/P/tfrecords;
  2. per run of `heads_runs.RUNS`, in order:
       features   tools/extract_features.py --checkpoint_dir=<run features_from> for train and
                  val (frozen-feature runs), or --bank=acfb (ACAR stage 2's bank);
       train      tools/train.py --flagfile=configs/bench.flags --head=H --train_steps=N
                  [--input=features ...] [run flags] into DIR/P/runs/<run>;
       eval       tools/eval.py on the val split (detections), and with --proposals=gt
                  (end to end) or --eval_actors=gt (features): the GT-box mAP;
  3. DIR/heads.md and DIR/heads.json (rewritten after every run, so a partial table exists).
--quick uses the tiny preset (64 px), a few steps, and leaves the ablation runs and the
GT-box evaluations out.
Every stage is skipped when its output exists (data, shards, features, the checkpoint of the
final step, the results JSON), so an interrupted suite continues where it stopped. A run
whose head is not in `HEADS` yet, or whose tool is missing, is listed as "not run" with the
reason; a failing tool fails only its run.
"""

import json
import os
import time

from action_tx.bench import heads_runs as R
from action_tx.bench import heads_table
from action_tx.bench.runner import ROOT, TOOLS, ToolError, ToolRunner, machine_info

CONFIG = os.path.join(ROOT, "configs", "bench.flags")


def _rel(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def flag_value(args, name: str, flagfile: str = None):
    """The value of --name in `args` (last one wins), else in `flagfile`, else None."""
    value = None
    lines = []
    if flagfile and os.path.isfile(flagfile):
        with open(flagfile) as f:
            lines = [line.strip() for line in f]
    for arg in [*lines, *args]:
        if arg.startswith(f"--{name}="):
            value = arg.split("=", 1)[1]
    return value


class Paths:
    """Where the suite reads and writes for one preset."""

    def __init__(self, out_dir: str, preset: str):
        self.data = _rel(os.path.join(ROOT, "data", f"synthetic_{preset}"))
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


def prepare_data(runner: ToolRunner, paths: Paths, preset: str) -> None:
    args = (f"--preset={preset}", "--seed=0", f"--out={paths.data}")
    if os.path.isdir(paths.ann):
        runner.skip("data", "make_synthetic_ava.py", *args, reason=f"{paths.ann} exists")
    else:
        runner.run("data", "make_synthetic_ava.py", *args)
    for split in ("train", "val"):
        args = (
            f"--ava_dir={paths.data}",
            f"--split={split}",
            f"--out={paths.tfrecords}/{split}.tfrecord@4",
        )
        if os.path.isfile(os.path.join(paths.tfrecords, f"{split}_manifest.json")):
            runner.skip(f"tfrecords {split}", "create_ava_tfrecords.py", *args)
        else:
            runner.run(f"tfrecords {split}", "create_ava_tfrecords.py", *args)


def extract_args(paths: Paths, source: str, split: str, bank: str = "none") -> list:
    """tools/extract_features.py arguments (issue 7 spec): model flags come from the source
    run's model_flags.json."""
    args = [
        f"--checkpoint_dir={paths.run_dir(source)}",
        f"--split={split}",
        f"--out={paths.feature_dir(source, split, bank)}",
        f"--train_tfrecords={paths.shards('train')}",
        f"--eval_tfrecords={paths.shards('val')}",
        f"--label_map={paths.label_map}",
    ]
    return args + ([f"--bank={bank}"] if bank != "none" else [])


def train_args(spec: R.RunSpec, paths: Paths, preset: str, steps: int) -> list:
    args = [
        f"--flagfile={_rel(CONFIG)}",
        f"--model_dir={paths.run_dir(spec.name)}",
        f"--train_tfrecords={paths.shards('train')}",
        f"--label_map={paths.label_map}",
        f"--head={spec.head}",
        f"--train_steps={steps}",
        *R.PRESET_FLAGS.get(preset, ()),
    ]
    if spec.mode == R.FEATURES:
        args += [
            "--input=features",
            f"--feature_dir={paths.feature_dir(spec.features_from, 'train')}",
            f"--eval_feature_dir={paths.feature_dir(spec.features_from, 'val')}",
        ]
    if spec.bank_from:
        args += [
            f"--acfb_bank_dir={paths.feature_dir(spec.bank_from, 'train', 'acfb')}",
            f"--eval_acfb_bank_dir={paths.feature_dir(spec.bank_from, 'val', 'acfb')}",
        ]
    return args + list(spec.flags)


def eval_args(spec: R.RunSpec, paths: Paths, gt_boxes: bool) -> list:
    """tools/eval.py arguments; model flags from the run's model_flags.json."""
    run_dir = paths.run_dir(spec.name)
    args = [
        f"--model_dir={run_dir}",
        f"--eval_tfrecords={paths.shards('val')}",
        f"--groundtruth={paths.ann}/ava_val.csv",
        f"--evidence={paths.ann}/evidence_val.csv",
        f"--excluded={paths.ann}/ava_val_excluded_timestamps.csv",
        f"--label_map={paths.label_map}",
        "--eval_batch_size=4",
        "--num_images=0",
        "--progress=false",
        f"--output_dir={os.path.join(run_dir, 'eval_gt_boxes' if gt_boxes else 'eval')}",
    ]
    if spec.mode == R.FEATURES:
        args += [
            "--input=features",
            f"--eval_feature_dir={paths.feature_dir(spec.features_from, 'val')}",
        ]
        return args + (["--eval_actors=gt"] if gt_boxes else [])
    return args + (["--proposals=gt"] if gt_boxes else [])


def _checkpoint(run_dir: str, steps: int) -> str:
    return os.path.join(run_dir, f"ckpt-{steps}")


def _ensure_features(runner, paths, source, bank, failed) -> None:
    """Extracts the features (or ACFB bank) of run `source` for both splits unless present;
    remembers a failed extraction in `failed` so later runs do not retry it."""
    if (source, bank) in failed:
        raise ToolError(
            f"the {bank if bank != 'none' else 'feature'} extraction of run "
            f"'{source}' failed earlier"
        )
    for split in ("train", "val"):
        out = paths.feature_dir(source, split, bank)
        stage = f"features {source} {split}" + (f" --bank={bank}" if bank != "none" else "")
        args = extract_args(paths, source, split, bank)
        # Written last by the extractor: features manifest.json, bank acfb.json.
        marker = "manifest.json" if bank == "none" else f"{bank}.json"
        if os.path.isfile(os.path.join(out, marker)):
            runner.skip(stage, "extract_features.py", *args)
            continue
        try:
            runner.run(stage, "extract_features.py", *args)
        except ToolError:
            failed.add((source, bank))
            raise


def run_one(
    spec, runner, paths, preset, steps, available, keyframes, done, failed, gt_eval: bool = True
) -> dict:
    """Trains and evaluates one run (skipping what exists) -> its result dict. `done`: names
    of runs with results; `failed`: (run, bank) extractions that failed; `gt_eval`: also the
    GT-box evaluation (left out with --quick: one process start fewer per run)."""
    result = dict(
        name=spec.name, head=spec.head, mode=spec.mode, steps=steps, note=spec.note, status="ok"
    )
    if spec.head not in available:
        result["status"] = f"not run: head '{spec.head}' not in action_tx.heads.HEADS yet"
        return result
    needs_tool = spec.mode == R.FEATURES or spec.bank_from
    if needs_tool and not os.path.isfile(os.path.join(TOOLS, "extract_features.py")):
        result["status"] = "not run: tools/extract_features.py not there yet"
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
            _ensure_features(runner, paths, spec.features_from, "none", failed)
        if spec.bank_from:
            stage = "bank"
            _ensure_features(runner, paths, spec.bank_from, "acfb", failed)
        stage = "train"
        args = train_args(spec, paths, preset, steps)
        if os.path.isfile(_checkpoint(run_dir, steps) + ".index"):
            runner.skip(f"train {spec.name}", "train.py", *args)
        else:
            result["train_seconds"] = runner.run(f"train {spec.name}", "train.py", *args)
        from action_tx.bench import heads_metrics as M  # TensorFlow only from here

        for gt_boxes in (False, True) if gt_eval else (False,):
            stage = "eval" + (" gt boxes" if gt_boxes else "")
            args = eval_args(spec, paths, gt_boxes)
            out = os.path.join(run_dir, "eval_gt_boxes" if gt_boxes else "eval")
            label = f"{stage} {spec.name}"
            if M.eval_results(out, steps) is not None:
                runner.skip(label, "eval.py", *args)
            else:
                runner.run(label, "eval.py", *args)
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
        args = train_args(spec, paths, preset, steps)
        batch = int(flag_value(args, "batch_size", CONFIG) or 4)
        if spec.mode == R.FEATURES:  # the trainer counts the context keyframes as examples
            batch += 2 * int(flag_value(args, "context_keyframes", CONFIG) or 0)
        result["step_time_s"] = M.step_seconds(run_dir, batch)
        if result.get("train_seconds") is None:
            result["train_seconds"] = _recorded_train_seconds(run_dir)
        _record_train_seconds(run_dir, result.get("train_seconds"))
        done.add(spec.name)
    except (ToolError, OSError, ValueError, AttributeError) as e:
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


def run(out_dir: str, preset: str = "bench", quick: bool = False, runs=R.RUNS) -> str:
    """Runs the comparison; writes out_dir/heads.json (and heads.md); returns the Markdown."""
    R.check_runs(runs)
    start = time.perf_counter()
    preset = "tiny" if quick else preset
    machine = machine_info()
    machine["load_average_start"] = machine.pop("load_average")
    paths = Paths(out_dir, preset)
    runner = ToolRunner(fork=True)  # one TensorFlow import for the ~25 tool runs
    prepare_data(runner, paths, preset)
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
            commands=runner.commands,
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
                runner,
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
