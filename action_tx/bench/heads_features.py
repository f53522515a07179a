"""Frozen inputs of the heads suite's runs: features (or ACAR's feature bank) of a run's
checkpoints over a split, extracted once and skipped when present, and the blind runs' scoring
on the instrument's extra val splits (which needs their features first)."""

import os

from action_tx import config as C
from action_tx.bench.heads_data import Paths
from action_tx.bench.heads_eval import score_instrument
from action_tx.bench.runner import StageError, call_text


def extract(
    paths: Paths, source: str, split, bank: str = "none", features_from=None, pixels="frame"
) -> dict:
    """Features (or with bank="acfb" ACAR's bank) of run `source`'s checkpoint over `split`
    (`heads_data.SplitData`), with the config of its config.json; `pixels`: what the trunk
    sees (`feature_extraction.Extractor`). A bank of a run on frozen features reads the
    features of run `features_from` for `split` (its config names the first val split's)."""
    import tensorflow as tf

    from action_tx import feature_extraction
    from action_tx.data import tfrecords
    from action_tx.tasks import make_task

    run_dir = paths.run_dir(source)
    config = C.load(run_dir)
    checkpoint = tf.train.latest_checkpoint(run_dir)
    if config is None or checkpoint is None:
        raise FileNotFoundError(f"{run_dir}: no config.json or no checkpoint")
    out = paths.feature_dir(source, split.name, bank, pixels)
    kind = "train" if split.split == "train" else "val"
    if bank == "none":
        files = tfrecords.match_files(split.shards)
        return feature_extraction.extract_split(
            make_task(config), checkpoint, files, out, split=kind, pixels=pixels
        )
    files = None  # on features the bank reads the feature folder of `kind`, not TFRecords
    if config.data.input == "features":
        folder = paths.feature_dir(features_from, split.name)
        field = "data.feature_dir" if kind == "train" else "data.eval_feature_dir"
        config = C.with_overrides(config, {field: folder})
    else:
        files = tfrecords.match_files(split.shards)
    return feature_extraction.extract_split_bank(
        make_task(config), checkpoint, out, split=kind, batch_size=4, files=files
    )


def ensure_features(
    log, paths, source, bank, splits, failed, features_from=None, pixels="frame"
) -> None:
    """Extracts the features (or ACFB bank) of run `source` for `splits` unless present;
    remembers a failed extraction in `failed` so later runs do not retry it. features_from:
    the run whose features a bank of a frozen-feature `source` reads; pixels: what the trunk
    sees (`extract`)."""
    if (source, bank, pixels) in failed:
        raise StageError(f"the {bank} {pixels} extraction of run '{source}' failed earlier")
    for split in splits:
        out = paths.feature_dir(source, split.name, bank, pixels)
        stage = f"features {source} {split.name}" + (f" --bank={bank}" if bank != "none" else "")
        stage += f" --pixels={pixels}" if pixels != "frame" else ""
        name = "extract_split" if bank == "none" else "extract_split_bank"
        kwargs = dict(out=out, **({"pixels": pixels} if pixels != "frame" else {}))
        call = call_text(f"feature_extraction.{name}", f"runs/{source}", split.shards, **kwargs)
        # Written last by the extractor: features manifest.json, bank acfb.json.
        marker = "manifest.json" if bank == "none" else f"{bank}.json"
        if os.path.isfile(os.path.join(out, marker)):
            log.skip(stage, call)
            continue
        try:
            log.run(stage, call, extract, paths, source, split, bank, features_from, pixels)
        except StageError:
            failed.add((source, bank, pixels))
            raise


def score_blind_run(spec, specs, seeds, log, paths, steps, val, extra, failed, check) -> None:
    """The blind run `spec` of `check` (`chance.CHANCE_CHECKS`) on the instrument's extra
    splits `extra` (`heads_eval.score_instrument`), the frozen features of them extracted
    first; specs: its seeds' concrete specs, seeds: their results."""
    if spec.features_from:
        try:
            for c in specs:
                source, pixels = c.features_from, c.pixels
                ensure_features(log, paths, source, "none", extra, failed, pixels=pixels)
        except StageError as e:
            for s in seeds:
                s["instrument_status"] = f"failed at features: {' '.join(str(e).split())[:300]}"
            return
    score_instrument(spec.name, specs, seeds, log, paths, steps, val, extra, check.proposals)
