"""Seeds of the heads suite: a run list x S training seeds -> concrete runs, and the val splits.

    plan = SeedPlan(seeds=3, seed_offset=0, data_seed=0, val_splits=4)
    concrete = expand_runs(heads_runs.RUNS, plan)   # tx-seed0, tx-seed1, tx-seed2, ...
    splits = val_splits(plan)                       # (ValSplit("val0", 0), ...)

Every run is trained S times, with training seeds seed_offset + 0 .. S-1 (`tools/train.py
--seed`: weights, samplers, input shuffling). A concrete run is the `RunSpec` of its run with
the name `<run>-seed<N>`, `model.seed` = N in its overrides, and its dependencies (the run whose
checkpoint gives frozen features, or ACAR's bank) renamed to the same seed: seed N of `stage`
reads the features of seed N of `i3d`, so the variation of the feature extractor is part of
each seed's result. Concrete runs come seed-major per run (all seeds of a run, then the next
run), which keeps every dependency earlier in the list (`heads_runs.check_runs`).

The val splits are the val halves of V synthetic data sets made with generator seeds
data_seed + 0 .. V-1 (`tools/make_synthetic_ava.py --seed`), scored as one pooled set
(`tools/eval.py`'s comma-separated lists, `object_detection_ext.ava_eval_pool`). With
data_seed = 0 the first is the val split of the training data's generator run (seed 0); a
rerun on data nobody tuned to takes another base (e.g. --data_seed=100).

The instrument splits are I more val splits, generator seeds from data_seed + V on
(`SeedPlan.first_instrument_seed`; a seed whose data the generator's balance check refuses is
passed over for the next: `heads_data.prepare_instrument_splits`), scored only by the
instrument's blind runs (`chance.CHANCE_CHECKS`): the check pools them with the V val splits.
Its question (is the blind run's AP within 0.1 of the rate?) needs a narrower interval than V
splits give: on the 4 bench splits even a random ranking's 95% bootstrap interval reaches about
rate + 0.09 on context (docs/notes/2026-12-06-instrument-splits.md); the claims compare heads on
the V splits alone, so the extra splits cost only the blind runs' scoring.
"""

import dataclasses
from typing import NamedTuple, Sequence, Tuple

from action_tx.bench import heads_runs as R
from action_tx.config import ConfigError


@dataclasses.dataclass(frozen=True)
class SeedPlan:
    """How many training seeds, from which, and which val splits (see module docstring)."""

    seeds: int = 3  # S: training seeds per run
    seed_offset: int = 0  # training seeds are seed_offset + 0 .. S-1
    data_seed: int = 0  # generator seed of the first val split
    val_splits: int = 4  # V: val splits pooled (bench: 4 x ~147 long_term labels >= 500)
    instrument_splits: int = 6  # I: more val splits for the blind runs only (module docstring)

    def __post_init__(self):
        problems = []
        lows = (
            ("seeds", 1),
            ("seed_offset", 0),
            ("data_seed", 0),
            ("val_splits", 1),
            ("instrument_splits", 0),
        )
        for name, low in lows:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                problems.append(f"{name} must be an integer >= {low}, got {value!r}")
        if problems:
            raise ConfigError("SeedPlan: " + "; ".join(problems))

    @property
    def training_seeds(self) -> Tuple[int, ...]:
        return tuple(self.seed_offset + i for i in range(self.seeds))

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def first_instrument_seed(self) -> int:
        """The generator seed the instrument splits start from: the one after the val splits'."""
        return self.data_seed + self.val_splits

    def pass_key(self) -> dict:
        """What makes two invocations one pass (`heads.same_pass`): everything but the
        instrument splits, which add scoring of the blind runs and train nothing."""
        return {k: v for k, v in self.to_json().items() if k != "instrument_splits"}


# --quick's plan (tools/benchmark.py's defaults with --quick): two seeds, two val splits, one
# instrument split.
QUICK_PLAN = SeedPlan(seeds=2, val_splits=2, instrument_splits=1)


class ConcreteRun(NamedTuple):
    spec: R.RunSpec  # name "<run>-seed<N>", overrides + model.seed N, dependencies of seed N
    run: str  # the run list's name (the row of the table)
    seed: int  # the training seed N


class ValSplit(NamedTuple):
    name: str  # "val<j>": folder name of the split's data and of its evaluation
    data_seed: int  # tools/make_synthetic_ava.py --seed


def seeded_name(run: str, seed: int) -> str:
    return f"{run}-seed{seed}"


def _seeded(dependency, seed: int):
    return None if dependency is None else seeded_name(dependency, seed)


def expand_runs(
    runs: Sequence[R.RunSpec], plan: SeedPlan, shared_dependencies: bool = False
) -> Tuple[ConcreteRun, ...]:
    """The run list x the plan's training seeds, dependencies renamed to the same seed (with
    `shared_dependencies`: to the first seed, so every seed of a frozen-feature run reads one
    feature extraction: cheaper, but its variation is then left out of the intervals).

    Raises ValueError (`heads_runs.check_runs`) when `runs` is inconsistent."""
    R.check_runs(runs)
    out = []
    for spec in runs:
        for seed in plan.training_seeds:
            source = plan.seed_offset if shared_dependencies else seed
            concrete = dataclasses.replace(
                spec,
                name=seeded_name(spec.name, seed),
                overrides={**spec.overrides, "model.seed": seed},
                features_from=_seeded(spec.features_from, source),
                bank_from=_seeded(spec.bank_from, source),
            )
            out.append(ConcreteRun(concrete, spec.name, seed))
    R.check_runs([c.spec for c in out])
    return tuple(out)


def val_splits(plan: SeedPlan) -> Tuple[ValSplit, ...]:
    """The pooled val splits: ValSplit("val<j>", data_seed + j) for j < V."""
    return tuple(ValSplit(f"val{j}", plan.data_seed + j) for j in range(plan.val_splits))
