"""The heads suite's runs are data that validates: every run's ExperimentConfig builds from
`heads_runs` alone, and `heads_runs.BASE` is configs/bench.flags as the tools read it."""

import dataclasses
import pathlib

import pytest

from action_tx import config as C
from action_tx.bench import heads, heads_runs

REPO = pathlib.Path(__file__).resolve().parents[2]


def _sized(model, data):
    """AIA's memory sized as for 100 keyframes (the suite reads the count from the shards)."""
    del data
    return dataclasses.replace(model, head_options=model.head_options.with_keyframes(100))


@pytest.mark.parametrize("quick", [True, False])
def test_every_run_of_the_list_is_a_valid_config(tmp_path, quick):
    preset = "tiny" if quick else "bench"
    runs = [r for r in heads_runs.RUNS if not (quick and r.ablation)]
    heads_runs.check_runs(heads_runs.RUNS)
    paths = heads.Paths(str(tmp_path), preset)
    for spec in runs:
        steps = heads_runs.run_steps(spec, preset)
        config = heads.run_config(spec, paths, preset, steps, resolve=_sized)
        assert config.model.head == spec.head and config.train.train_steps == steps
        assert (config.data.input == "features") == (spec.mode == heads_runs.FEATURES)
        # Each override is in the config (head.* in the head's options).
        for key, value in spec.overrides.items():
            section, field = key.split(".")
            owner = config.model.head_options if section == "head" else getattr(config, section)
            assert getattr(owner, field) == value, (spec.name, key)
        for extra in heads_runs.GT_BOX_OVERRIDES.values():
            C.with_overrides(config, extra)  # the GT-box evaluation's config validates too
    assert {r.name for r in runs} >= {
        "i3d",
        "tx",
        "stage",
        "hgrnn",
        "acar",
        "aia_features",
    }


def test_a_bad_override_names_the_field(tmp_path):
    paths = heads.Paths(str(tmp_path), "tiny")
    spec = heads_runs.RunSpec("x", "hgrnn", overrides={"head.windw": 2})
    with pytest.raises(C.ConfigError, match="windw"):
        heads.run_config(spec, paths, "tiny", 5)
    spec = heads_runs.RunSpec("y", "linear", overrides={"train.batch_size": 0})
    with pytest.raises(C.ConfigError, match="batch_size must be >= 1"):
        heads.run_config(spec, paths, "tiny", 5)


def test_base_is_configs_bench_flags():
    import model_flags
    import train  # noqa: F401  (the trainer's flags, which the flagfile sets)

    flags = model_flags.FLAGS
    flags.unparse_flags()
    try:
        flags(["prog", f"--flagfile={REPO / 'configs' / 'bench.flags'}"])
        from_flags = model_flags.experiment_config(resolve=False)
    finally:
        flags.unparse_flags()
    paths = {
        "train.model_dir": from_flags.train.model_dir,
        "data.train_tfrecords": from_flags.data.train_tfrecords,
        "data.label_map": from_flags.data.label_map,
    }
    base = C.with_overrides(C.ExperimentConfig(), {**heads_runs.BASE, **paths})
    assert base.to_json() == from_flags.to_json()
