"""The heads suite's first stage: a pretrained trunk, the stand-in for the papers' Kinetics one.

The `i3d` detector (trunk + RPN + I3D head) trains on the pretraining data
(`heads_data.PRETRAIN_DATA_SEED`: videos none of the benchmark's train or val splits holds) for
`heads_runs.PRETRAIN_BUDGETS[preset]` steps, is scored on that data's val split (its person
localization AP@0.5, class-agnostic), and its Inception-I3D weights (trunk and Mixed_5 tail) are
written as OUT/<preset>/pretrain/i3d_trunk, what `tools/export_saved_model.py --trunk_only`
writes (`i3d_checkpoint.save_trunk(detector_i3d_parts(detector))`). Every end-to-end run then
fine-tunes from it (`train.init_checkpoint`). Each stage is skipped when its output exists.
"""

import json
import os

from action_tx import config as C
from action_tx.bench import heads_runs as R
from action_tx.bench.runner import StageLog, call_text

NAME = "pretrain"  # the run's folder under OUT/<preset>/pretrain/


def _export_path(paths) -> str:
    return os.path.join(paths.pretrain, "i3d_trunk")


def _summary_path(paths) -> str:
    return os.path.join(paths.pretrain, "pretrain.json")


def score_and_export(config: C.ExperimentConfig, eval_dir: str, split, prefix: str) -> dict:
    """Scores the newest checkpoint of the run on `split` (a `heads_data.SplitData`) and writes
    its I3D weights at `prefix` -> {localization_ap50, frame_map, checkpoint}."""
    from action_tx import checkpointing
    from action_tx.eval_task import TaskEvaluator
    from action_tx.tasks import make_task
    from action_tx.trunks.i3d_checkpoint import detector_i3d_parts, save_trunk

    evaluator = TaskEvaluator(make_task(config), eval_dir, summaries=False)
    model_dir = config.train.model_dir
    path = evaluator.restore_newest(checkpointing.find_checkpoints(model_dir, log=None))
    if path is None:
        raise FileNotFoundError(f"no checkpoint in {model_dir}")
    result = evaluator.score(path, excluded=split.excluded, evidence=split.evidence)
    save_trunk(detector_i3d_parts(evaluator.model), prefix)
    return dict(
        localization_ap50=result.localization.get(0.5),
        frame_map=result.map,
        checkpoint=prefix,
    )


def pretrain(log: StageLog, paths, preset: str, splits, config_of, train_fn) -> dict:
    """Runs the pretraining stages -> {checkpoint (the init_checkpoint prefix), steps,
    seconds (training wall time), localization_ap50, frame_map}.

    splits: (train, val) `SplitData` of the pretraining data; config_of(spec, steps,
    overrides) -> the run's ExperimentConfig (`heads.run_config`); train_fn(config) trains."""
    summary_path = _summary_path(paths)
    prefix = _export_path(paths)
    if os.path.isfile(summary_path) and os.path.isfile(prefix + ".index"):
        with open(summary_path) as f:
            summary = json.load(f)
        log.skip("pretrain", f"{prefix} ({summary['steps']} steps)")
        return summary
    steps = R.PRETRAIN_BUDGETS.get(preset, R.PRETRAIN_BUDGETS["bench"])
    train, val = splits
    model_dir = os.path.join(paths.pretrain, NAME)
    config = config_of(
        R.RunSpec(NAME, "i3d"),
        steps,
        {
            "data.train_tfrecords": train.shards,
            "data.eval_tfrecords": val.shards,
            "data.label_map": os.path.join(train.ann, "action_list.pbtxt"),
            "eval.groundtruth": val.groundtruth,
            "train.model_dir": model_dir,
        },
    )
    call = f"train_lib.train_task(make_task(run_config('pretrain': i3d))) -> {model_dir}"
    seconds, _ = log.run("pretrain train", f"{call}, {steps} steps", train_fn, config)
    eval_dir = os.path.join(model_dir, "eval")
    call = call_text("score_and_export", model_dir, val.name, prefix)
    _, scored = log.run(
        "pretrain eval+export", call, score_and_export, config, eval_dir, val, prefix
    )
    summary = dict(steps=steps, seconds=seconds, data_seed=train.data_seed, **scored)
    with open(summary_path, "w") as f:
        json.dump(summary, f, indent=1)
    return summary
