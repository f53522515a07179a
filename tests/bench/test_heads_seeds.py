"""The heads suite's seeds (action_tx/bench/heads_seeds.py): run list x seeds -> concrete runs
with their seeds and dependencies, the val splits' generator seeds, the plan's validation."""

import os

import pytest

from action_tx.bench import claims, heads_runs, heads_seeds
from action_tx.config import ConfigError


def test_every_run_gets_each_training_seed_and_its_dependencies_of_that_seed():
    plan = heads_seeds.SeedPlan(seeds=2, seed_offset=10)
    concrete = heads_seeds.expand_runs(heads_runs.RUNS, plan)
    assert len(concrete) == 2 * len(heads_runs.RUNS)
    by_name = {c.spec.name: c for c in concrete}
    stage = by_name["stage-seed11"]
    assert (stage.run, stage.seed) == ("stage", 11)
    assert stage.spec.features_from == "i3d-seed11"
    assert stage.spec.overrides["model.seed"] == 11
    base = {r.name: r for r in heads_runs.RUNS}["stage"].overrides
    assert {k: v for k, v in stage.spec.overrides.items() if k != "model.seed"} == base
    acfb = by_name["acar_acfb-seed10"].spec
    assert acfb.bank_from == "acar-seed10" and acfb.overrides["model.seed"] == 10
    assert by_name["tx-seed10"].spec.features_from is None
    # Seed-major per run, in the run list's order.
    assert [c.spec.name for c in concrete[:4]] == [
        "i3d-seed10",
        "i3d-seed11",
        "tx-seed10",
        "tx-seed11",
    ]


def test_shared_dependencies_read_the_first_seed():
    plan = heads_seeds.SeedPlan(seeds=2, seed_offset=10)
    concrete = heads_seeds.expand_runs(heads_runs.RUNS, plan, shared_dependencies=True)
    by_name = {c.spec.name: c.spec for c in concrete}
    assert by_name["stage-seed11"].features_from == "i3d-seed10"
    assert by_name["acar_acfb-seed11"].bank_from == "acar-seed10"
    assert by_name["stage-seed11"].overrides["model.seed"] == 11


def test_the_claims_variants_expand_too():
    concrete = heads_seeds.expand_runs(
        heads_runs.RUNS + claims.VARIANT_RUNS, heads_seeds.SeedPlan()
    )
    names = {c.spec.name for c in concrete}
    assert {"aia_parallel_features-seed0", "aia_parallel_features-seed2"} <= names
    assert "aia_parallel_features-seed3" not in names


def test_val_splits_use_fresh_generator_seeds_from_the_base():
    assert heads_seeds.val_splits(heads_seeds.SeedPlan()) == (
        ("val0", 0),
        ("val1", 1),
        ("val2", 2),
        ("val3", 3),
    )
    plan = heads_seeds.SeedPlan(data_seed=100, val_splits=2)
    assert heads_seeds.val_splits(plan) == (("val0", 100), ("val1", 101))
    assert plan.to_json() == dict(
        seeds=3, seed_offset=0, data_seed=100, val_splits=2, instrument_splits=6
    )
    # The instrument's extra splits start after the val splits, from the same base.
    assert plan.first_instrument_seed == 102
    # They add scoring only: the pass is the same whatever their number.
    assert plan.pass_key() == dict(seeds=3, seed_offset=0, data_seed=100, val_splits=2)


def test_a_bad_plan_names_every_problem():
    with pytest.raises(ConfigError) as e:
        heads_seeds.SeedPlan(
            seeds=0, seed_offset=-1, data_seed=1.5, val_splits=True, instrument_splits=-1
        )
    for part in (
        "seeds must be",
        "seed_offset must be",
        "data_seed must be",
        "val_splits must",
        "instrument_splits must be an integer >= 0",
    ):
        assert part in str(e.value)


def test_an_inconsistent_run_list_is_refused():
    bad = (heads_runs.RUNS[5],)  # stage without the i3d run it reads
    with pytest.raises(ValueError, match="depends on 'i3d'"):
        heads_seeds.expand_runs(bad, heads_seeds.SeedPlan(seeds=1))


def test_the_quick_plan_on_the_quick_list_and_the_data_of_its_val_splits(tmp_path):
    from action_tx.bench import heads, heads_data

    plan = heads_seeds.QUICK_PLAN
    concrete = heads_seeds.expand_runs(heads.suite_runs(quick=True), plan)
    assert [c.spec.name for c in concrete] == [
        f"{run}-seed{s}" for run in heads_runs.QUICK_RUNS for s in (0, 1)
    ]
    assert {c.spec.name: c.spec.features_from for c in concrete}["stage-seed1"] == "i3d-seed1"
    # Val split data: seed 0 is the training data's val half, another seed its own data set.
    paths = heads_data.Paths(str(tmp_path / "out"), "tiny", str(tmp_path / "data"))
    rerun = heads_seeds.SeedPlan(data_seed=100, val_splits=2)
    splits = [paths.val_split(v.data_seed) for v in heads_seeds.val_splits(rerun)]
    assert [(s.name, s.data_seed) for s in splits] == [("data100", 100), ("data101", 101)]
    assert splits[0].ann == str(tmp_path / "data" / "synthetic_tiny_seed100" / "annotations")
    assert splits[0].shards == str(
        tmp_path / "out" / "tiny" / "tfrecords_data100" / "val.tfrecord-*"
    )
    first = paths.val_split(0)
    assert (first.ann, first.shards) == (paths.ann, paths.shards("val"))
    assert first.groundtruth.endswith(os.path.join("synthetic_tiny", "annotations", "ava_val.csv"))
    heads_data.check_seeds([0, 1, 2, 3])
    # --quick scores its blind runs on one instrument split, after its two val splits.
    assert (plan.instrument_splits, plan.first_instrument_seed) == (1, 2)
    with pytest.raises(ConfigError, match="pretraining data"):
        heads_data.check_seeds([heads_data.PRETRAIN_DATA_SEED - 1, heads_data.PRETRAIN_DATA_SEED])


def test_the_seed_flags_are_validated_by_the_tool():
    import subprocess
    import sys

    tool = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "benchmark.py")
    for args, message in (
        (["--suite=heads", "--quick", "--seeds=0"], "seeds must be an integer >= 1, got 0"),
        (["--suite=params", "--val_splits=2"], "--val_splits: only for --suite=heads"),
    ):
        done = subprocess.run([sys.executable, tool, *args], capture_output=True, text=True)
        assert done.returncode == 2 and message in done.stderr, done.stderr
