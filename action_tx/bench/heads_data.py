"""Data of the heads suite: the training data, the pooled val splits and the pretraining data.

Three kinds of synthetic data sets (`synthetic.generate` with a generator seed, then
`convert.convert_split` into TFRecords under OUT/<preset>/):
  training      generator seed `TRAIN_DATA_SEED` (0), data/synthetic_<preset>: its train split
                trains every run; its val split is val split j when the plan's data_seed + j is
                0 (the data made once serves both);
  val splits    one data set per `heads_seeds.val_splits(plan)` entry, generator seed
                data_seed + j, data/synthetic_<preset>_seed<d>: only its val split is converted
                (OUT/<preset>/tfrecords_data<d>/); the splits are scored as one pooled set;
                the instrument's extra splits alike (`prepare_instrument_splits`);
  pretraining   generator seed `PRETRAIN_DATA_SEED`, disjoint from both (`check_seeds`): the
                stand-in for Kinetics on which the `i3d` detector pretrains the trunk that every
                end-to-end run fine-tunes (`heads_pretrain`).
Every stage is skipped when its output exists.
"""

import os
from typing import NamedTuple, Optional, Sequence, Tuple

from action_tx.bench.runner import ROOT, StageLog, call_text
from action_tx.config import ConfigError

TRAIN_DATA_SEED = 0  # the generator seed of the training data (its val half: split data_seed 0)
PRETRAIN_DATA_SEED = 10_000  # the pretraining data's generator seed: none of the benchmark's


def _rel(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


class SplitData(NamedTuple):
    """One data set's split as the suite reads it."""

    name: str  # "train", "data<d>" (val split of generator seed d), "pretrain_train", ...
    data_seed: int  # the generator seed of the data set it comes from
    ann: str  # the data set's annotations folder
    shards: str  # TFRecord pattern of the split
    split: str  # "train" or "val": which CSVs of `ann` hold its ground truth

    @property
    def groundtruth(self) -> str:
        return os.path.join(self.ann, f"ava_{self.split}.csv")

    @property
    def excluded(self) -> str:
        return os.path.join(self.ann, f"ava_{self.split}_excluded_timestamps.csv")

    @property
    def evidence(self) -> str:
        return os.path.join(self.ann, f"evidence_{self.split}.csv")


class Paths:
    """Where the suite reads and writes for one preset (`data_root`: the synthetic data's
    parent folder, default the repository's data/)."""

    def __init__(self, out_dir: str, preset: str, data_root: str = None):
        self.data_root = data_root or os.path.join(ROOT, "data")
        self.preset = preset
        self.data = self.data_dir(TRAIN_DATA_SEED)
        self.ann = os.path.join(self.data, "annotations")
        self.label_map = os.path.join(self.ann, "action_list.pbtxt")
        self.base = os.path.join(out_dir, preset)
        self.tfrecords = os.path.join(self.base, "tfrecords")
        self.runs = os.path.join(self.base, "runs")
        self.features = os.path.join(self.base, "features")
        self.pretrain = os.path.join(self.base, "pretrain")

    def data_dir(self, seed: int) -> str:
        name = f"synthetic_{self.preset}" + ("" if seed == TRAIN_DATA_SEED else f"_seed{seed}")
        return _rel(os.path.join(self.data_root, name))

    def shards(self, split: str) -> str:
        return os.path.join(self.tfrecords, f"{split}.tfrecord-*")

    def run_dir(self, name: str) -> str:
        return os.path.join(self.runs, name)

    def feature_dir(self, run: str, split: str, bank: str = "none", pixels: str = "frame") -> str:
        """`split`: "train" or a val split's name (`SplitData.name`, e.g. "data0"); a bank
        ("acfb") or, for features, `pixels` ("own_box": `heads_runs.RunSpec.pixels`)."""
        kind = bank if bank != "none" else ("features" if pixels == "frame" else pixels)
        return os.path.join(self.features, f"{run}_{kind}_{split}")

    def train_split(self) -> SplitData:
        return SplitData("train", TRAIN_DATA_SEED, self.ann, self.shards("train"), "train")

    def val_split(self, data_seed: int) -> SplitData:
        """The val split of generator seed `data_seed` (seed 0: the training data's)."""
        if data_seed == TRAIN_DATA_SEED:
            return SplitData(f"data{data_seed}", data_seed, self.ann, self.shards("val"), "val")
        ann = os.path.join(self.data_dir(data_seed), "annotations")
        shards = os.path.join(self.base, f"tfrecords_data{data_seed}", "val.tfrecord-*")
        return SplitData(f"data{data_seed}", data_seed, ann, shards, "val")

    def pretrain_split(self, split: str) -> SplitData:
        ann = os.path.join(self.data_dir(PRETRAIN_DATA_SEED), "annotations")
        shards = os.path.join(self.pretrain, "tfrecords", f"{split}.tfrecord-*")
        return SplitData(f"pretrain_{split}", PRETRAIN_DATA_SEED, ann, shards, split)


def check_seeds(val_seeds: Sequence[int]) -> None:
    """Raises ConfigError when a val split's generator seed is the pretraining data's (the
    pretrained trunk would have seen the val videos)."""
    if PRETRAIN_DATA_SEED in val_seeds:
        raise ConfigError(
            f"val split generator seeds {list(val_seeds)} include {PRETRAIN_DATA_SEED}, the "
            "pretraining data's: choose another data_seed"
        )


UNBALANCED = "unbalanced.txt"  # left in a data set whose balance check refused it (instrument)


def _generate(log: StageLog, paths: Paths, seed: int, generator: dict, refusable=False) -> bool:
    """Makes the data set of generator seed `seed` unless made -> False when the generator's
    balance check refused it and `refusable` (else its UnbalancedDataError fails the stage),
    True otherwise. A refused set is marked (`UNBALANCED`) and not generated again."""
    from action_tx.data import synthetic

    out = paths.data_dir(seed)
    kwargs = dict(preset=paths.preset, seed=seed, progress=True, write_videos=False, **generator)
    call = call_text("synthetic.generate", out, **kwargs)
    stage = f"data seed {seed}"
    if os.path.isdir(os.path.join(out, "annotations")):
        log.skip(stage, call, reason=f"{out}/annotations exists")
        return True
    if not refusable:
        log.run(stage, call, synthetic.generate, out, keras_state=False, **kwargs)
        return True
    if os.path.isfile(os.path.join(out, UNBALANCED)):
        log.skip(stage, call, reason=f"refused earlier: {out}/{UNBALANCED}")
        return False
    return log.run(stage, call, _generate_or_refuse, out, kwargs, keras_state=False)[1]


def _generate_or_refuse(out: str, kwargs: dict) -> bool:
    from action_tx import output_files
    from action_tx.data import synthetic

    try:
        synthetic.generate(out, **kwargs)
        return True
    except synthetic.UnbalancedDataError as e:
        print(f"refused: {e}")
        output_files.write_texts({os.path.join(out, UNBALANCED): f"{e}\n"})
        return False


def _convert(log: StageLog, data_dir: str, split: SplitData) -> None:
    from action_tx.data import convert

    folder = os.path.dirname(split.shards)
    out = os.path.join(folder, f"{split.split}.tfrecord@4")
    call = call_text("convert.convert_split", data_dir, split.split, out)
    stage = f"tfrecords {split.name}" if split.name != "train" else "tfrecords train"
    if os.path.isfile(os.path.join(folder, f"{split.split}_manifest.json")):
        log.skip(stage, call)
    else:
        log.run(stage, call, convert.convert_split, data_dir, split.split, out, keras_state=False)


def prepare_data(
    log: StageLog, paths: Paths, val_seeds: Sequence[int], generator: dict = None
) -> Tuple[SplitData, Tuple[SplitData, ...]]:
    """Makes and converts the training data and every val split -> (train, val splits).
    `generator`: extra `synthetic.generate` options (tests: fewer, shorter videos)."""
    check_seeds(val_seeds)
    generator = dict(generator or {})
    _generate(log, paths, TRAIN_DATA_SEED, generator)
    train = paths.train_split()
    _convert(log, paths.data, train)
    return train, prepare_val_splits(log, paths, val_seeds, generator)


def prepare_val_splits(
    log: StageLog, paths: Paths, val_seeds: Sequence[int], generator: dict = None
) -> Tuple[SplitData, ...]:
    """Makes and converts the val split of each generator seed -> their SplitData (a data
    set that fails the generator's balance check fails its stage)."""
    check_seeds(val_seeds)
    return tuple(_val_split(log, paths, seed, generator) for seed in val_seeds)


def _val_split(log, paths, seed, generator, refusable=False) -> Optional[SplitData]:
    """The val split of generator seed `seed`, made (`_generate`) and converted; None when the
    balance check refused its data set and `refusable`."""
    if seed != TRAIN_DATA_SEED and not _generate(
        log, paths, seed, dict(generator or {}), refusable
    ):
        return None
    split = paths.val_split(seed)
    _convert(log, paths.data_dir(seed), split)
    return split


def prepare_instrument_splits(
    log: StageLog, paths: Paths, first_seed: int, count: int, generator: dict = None
) -> Tuple[Tuple[SplitData, ...], Tuple[int, ...]]:
    """The instrument's `count` extra val splits (`heads_seeds` module docstring), made and
    converted: generator seeds first_seed, first_seed + 1, ..., passing over a seed whose data
    the generator's balance check refuses (SYNTHETIC_DATA.md: e.g. bench seed 106, one class's
    long_term look-alikes short of its positives): any fresh seed serves the check as well,
    and the choice depends on the generator alone, never on a score. -> (splits, refused
    seeds). Raises ConfigError when 3 x count seeds give fewer than count."""
    splits, refused = [], []
    for seed in range(first_seed, first_seed + 3 * count):
        if len(splits) == count:
            break
        if seed == PRETRAIN_DATA_SEED:
            continue
        split = _val_split(log, paths, seed, generator, refusable=True)
        if split is None:
            refused.append(seed)
        else:
            splits.append(split)
    if len(splits) < count:
        raise ConfigError(
            f"instrument splits: {len(splits)} of {count} balanced data sets among generator "
            f"seeds {first_seed}..{first_seed + 3 * count - 1} (refused: {refused})"
        )
    return tuple(splits), tuple(refused)


def prepare_pretrain_data(
    log: StageLog, paths: Paths, generator: dict = None
) -> Tuple[SplitData, SplitData]:
    """Makes and converts the pretraining data set (both splits) -> (train, val)."""
    _generate(log, paths, PRETRAIN_DATA_SEED, dict(generator or {}))
    out = []
    for split in ("train", "val"):
        data = paths.pretrain_split(split)
        _convert(log, paths.data_dir(PRETRAIN_DATA_SEED), data)
        out.append(data)
    return tuple(out)


def positive_rates(splits: Sequence[SplitData], label_map: str) -> dict:
    """`chance.positive_rates` of the pooled val splits (the instrument check's chance
    levels: the suite passes the val splits with the instrument's), for the label map's
    classes."""
    from action_tx.bench import chance
    from object_detection_ext import ava_eval_io

    ids = ava_eval_io.as_label_map(label_map).ids
    rates = chance.positive_rates(
        [s.evidence for s in splits], ids, excluded=[s.excluded for s in splits]
    )
    # JSON keys are strings; per_class counts stay as [positives, matched negatives].
    return {
        kind: dict(rate=v["rate"], per_class={str(c): pn for c, pn in v["per_class"].items()})
        for kind, v in rates.items()
    }
