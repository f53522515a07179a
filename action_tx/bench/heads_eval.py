"""Scoring of the heads suite's runs: every trained seed on every val split, in both box modes
(detections, ground-truth boxes), then each seed's pooled detections matched once
(`matching.match_run`) into matches_<mode>_<splits>.npz, what the results page's intervals read
(matched again when the splits' evidence files changed since: `matched_on`). The instrument's
blind runs are also scored on its extra val splits and matched on all of them pooled
(`score_instrument`).
"""

import os

from action_tx import config as C
from action_tx.bench import heads_runs as R
from action_tx.bench.runner import StageError, call_text

MODES = ("rpn", "gt")  # box modes of the evaluation: detections, ground-truth boxes


def split_config(config, spec: R.RunSpec, paths, split, gt_boxes: bool):
    """The trained run's config scored on val split `split` (`heads_data.SplitData`), on GT
    boxes when `gt_boxes`. The head keeps its size (memory tables) from `config`."""
    overrides = {"data.eval_tfrecords": split.shards, "eval.groundtruth": split.groundtruth}
    if spec.mode == R.FEATURES:
        overrides["data.eval_feature_dir"] = paths.feature_dir(
            spec.features_from, split.name, pixels=spec.pixels
        )
    if spec.bank_from:
        overrides["head.eval_bank_dir"] = paths.feature_dir(spec.bank_from, split.name, "acfb")
    if gt_boxes:
        overrides.update(R.GT_BOX_OVERRIDES[spec.mode])
    return C.with_overrides(config, overrides)


def checkpoint_path(run_dir: str, steps: int) -> str:
    return os.path.join(run_dir, f"ckpt-{steps}")


def evaluate(jobs, share_model: bool = True) -> None:
    """Scores checkpoints on val splits: jobs are (config, checkpoint, split, out_dir) of one
    run and box mode (`split_config`s: one model). With `share_model` the model is built once
    and every checkpoint restored into it (seeds and splits differ only in weights and input);
    ACAR's bank is set at build time, so bank runs build one per job. Writes each job's
    `ckpt-N_detections.csv` and `_results.json` into its out_dir."""
    from action_tx import eval_lib, precision
    from action_tx.tasks import make_task

    model = None
    for config, checkpoint, split, out in jobs:
        task = make_task(config)
        dataset = task.eval_dataset(config.eval.batch_size)
        if model is None or not share_model:
            with precision.policy(config.eval.precision):
                model = task.build_model()
                eval_lib.build_detector_on(model, dataset)
        eval_lib.evaluate_checkpoint(
            model,
            checkpoint,
            dataset,
            task.label_map,
            config.eval.groundtruth,
            excluded=split.excluded,
            evidence=split.evidence,
            out_dir=out,
            summary_writer=None,
            num_images=0,
            progress=False,
            total=task.eval_keyframes(),
        )


def match(out: str, splits, detections, label_map: str) -> None:
    """`matching.match_run` of the pooled splits' detections, saved at `out`."""
    from action_tx.bench import matching

    matches = matching.match_run(
        [s.groundtruth for s in splits],
        list(detections),
        label_map,
        excluded=[s.excluded for s in splits],
        evidence=[s.evidence for s in splits],
    )
    matching.save_matches(out, matches)


def matched_on(out: str, evidence: str) -> bool:
    """True when the matches archive `out` exists and was cut by the evidence rows of digest
    `evidence` (`matching.evidence_digest` of the val splits' evidence files now): a file made
    before the evidence changed (e.g. the generator's matched negatives were drawn again), or
    before archives kept the digest, is matched again."""
    from action_tx.bench import matching

    if not os.path.isfile(out):
        return False
    try:
        kept = matching.load_matches(out).evidence
    except (OSError, ValueError, EOFError, KeyError) as e:  # cut short, or not an archive
        print(f"{out}: unreadable ({type(e).__name__}); matching again")
        return False
    if kept != evidence:
        print(f"{out}: matched on other evidence rows (or before it kept them); matching again")
        return False
    return True


def splits_key(splits) -> str:
    """Names the pooled val set in file names: "data0-1" for generator seeds 0 and 1."""
    return "data" + "-".join(str(s.data_seed) for s in splits)


def _eval_and_match(label, specs, trained, log, paths, steps, mode, scored, pooled, field):
    """Scores the trained seeds ((spec, result) pairs) on the splits of `scored` not yet scored
    in box mode `mode`, then matches each seed's detections on the pooled splits `pooled` into
    matches_<mode>_<splits_key>.npz, kept in result[field][mode]. -> the failures:
    [(None, text)] when the evaluation failed (every seed), else a (seed name, text) per seed
    whose matching failed ([] when none did)."""
    from action_tx.bench import heads_metrics as M
    from action_tx.bench import matching

    jobs = []
    for spec, r in trained:
        for split in scored:
            out = os.path.join(paths.run_dir(spec.name), f"eval_{mode}_{split.name}")
            if M.eval_results(out, steps) is None:
                config = split_config(r["config"], spec, paths, split, mode == "gt")
                ckpt = checkpoint_path(paths.run_dir(spec.name), steps)
                jobs.append((config, ckpt, split, out))
    call = f"heads_eval.evaluate({len(jobs)} (seed, val split) jobs, {mode} boxes)"
    names = ", ".join(sorted({os.path.basename(os.path.dirname(j[3])) for j in jobs}))
    try:
        if jobs:
            share = specs[0].bank_from is None
            log.run(f"eval {mode} {label}", f"{call}: {names}", evaluate, jobs, share)
        else:
            log.skip(f"eval {mode} {label}", call)
    except StageError as e:
        return [(None, f"failed at eval {mode}: {' '.join(str(e).split())[:300]}")]
    key = splits_key(pooled)
    evidence = matching.evidence_digest([s.evidence for s in pooled])
    failures = []
    for spec, r in trained:
        run_dir = paths.run_dir(spec.name)
        detections = [
            os.path.join(run_dir, f"eval_{mode}_{s.name}", f"ckpt-{steps}_detections.csv")
            for s in pooled
        ]
        out = os.path.join(run_dir, f"matches_{mode}_{key}.npz")
        call = call_text("matching.match_run", *(os.path.basename(d) for d in detections))
        call += f" -> {out}"
        stage = f"matches {mode} {spec.name}" + (" (instrument)" if field != "matches" else "")
        try:
            if matched_on(out, evidence):
                log.skip(stage, call)
            else:
                log.run(
                    stage, call, match, out, pooled, detections, paths.label_map, keras_state=False
                )
            r.setdefault(field, {})[mode] = out
        except StageError as e:
            failures.append((spec.name, f"failed at {stage}: {' '.join(str(e).split())[:300]}"))
    return failures


def _failed(trained, failures):
    """(result, text) of each seed that `_eval_and_match`'s failures name (None: every seed)."""
    for name, text in failures:
        for spec, r in trained:
            if name is None or spec.name == name:
                yield r, text


def score_seeds(run, specs, results, log, paths, steps, val, done, modes=MODES) -> None:
    """Scores the trained seeds of run `run` (specs and `train_seed` results, in order) on
    every val split in each box mode of `modes`, matches each seed's pooled detections, and
    completes each result (matches {mode: path}, head_params, trainable_params, step_time_s);
    a failing stage fails the seeds it scores. Seeds scored add their names to `done`."""
    from action_tx.bench import heads_metrics as M
    from action_tx.tasks import make_task

    trained = [(s, r) for s, r in zip(specs, results) if r["status"] == "ok"]
    for _, r in trained:
        r["matches"] = {}
    for mode in modes:
        failures = _eval_and_match(
            run, specs, trained, log, paths, steps, mode, val, val, "matches"
        )
        for r, text in _failed(trained, failures):
            r["status"] = text
        if failures and failures[0][0] is None:
            return
    for spec, r in trained:
        if r["status"] != "ok":
            continue
        path = checkpoint_path(paths.run_dir(spec.name), steps)
        r["head_params"], r["trainable_params"] = M.count_parameters(path)
        # The trainer's examples per step (feature mode counts the context keyframes too).
        batch = make_task(r["config"]).global_batch_size
        r["step_time_s"] = M.step_seconds(paths.run_dir(spec.name), batch)
        done.add(spec.name)


def score_instrument(run, specs, results, log, paths, steps, val, extra, mode) -> None:
    """Scores the blind run `run`'s seeds (`chance.CHANCE_CHECKS`; already scored on `val` by
    `score_seeds`) on the instrument's extra val splits `extra` in box mode `mode`, and matches
    each seed on val + extra pooled: result["instrument_matches"] = {mode: path}. A failure
    leaves the seed's claims alone: it is kept in result["instrument_status"]."""
    trained = [(s, r) for s, r in zip(specs, results) if r["status"] == "ok" and r.get("matches")]
    if not trained or not extra:
        return
    pooled = tuple(val) + tuple(extra)
    failures = _eval_and_match(
        run, specs, trained, log, paths, steps, mode, extra, pooled, "instrument_matches"
    )
    for r, text in _failed(trained, failures):
        r["instrument_status"] = text
        r.pop("instrument_matches", None)
