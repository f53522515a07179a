"""The heads suite's data (action_tx/bench/heads_data.py): the instrument's extra val splits
pass over a generator seed whose data fails the balance check, and remember it."""

import os

import pytest

from action_tx.bench import heads_data, runner
from action_tx.config import ConfigError
from action_tx.data import synthetic


@pytest.fixture
def fake(monkeypatch):
    """synthetic.generate that refuses the seeds in `refuse` (as its balance check does:
    nothing of the annotations written) and makes an annotations folder for the others;
    conversions recorded instead of run."""
    state = dict(refuse={3}, generated=[], converted=[])

    def generate(out, preset, seed, **kwargs):
        state["generated"].append(seed)
        os.makedirs(os.path.join(out, "frames"), exist_ok=True)
        if seed in state["refuse"]:
            raise synthetic.UnbalancedDataError(f"seed {seed}: 66 matched negatives < 70")
        os.makedirs(os.path.join(out, "annotations"))

    monkeypatch.setattr(synthetic, "generate", generate)
    monkeypatch.setattr(
        heads_data, "_convert", lambda log, data_dir, split: state["converted"].append(split.name)
    )
    return state


def test_instrument_splits_pass_over_a_refused_seed_and_remember_it(tmp_path, fake):
    paths = heads_data.Paths(str(tmp_path / "out"), "tiny", str(tmp_path / "data"))
    log = runner.StageLog()
    splits, refused = heads_data.prepare_instrument_splits(log, paths, 2, 2)
    assert [s.data_seed for s in splits] == [2, 4] and refused == (3,)
    assert fake["converted"] == ["data2", "data4"] and fake["generated"] == [2, 3, 4]
    marker = os.path.join(paths.data_dir(3), heads_data.UNBALANCED)
    with open(marker) as f:
        assert "66 matched negatives < 70" in f.read()
    # A resumed pass: made sets are skipped, the refused one is not generated again.
    log = runner.StageLog()
    again = heads_data.prepare_instrument_splits(log, paths, 2, 2)
    assert again == (splits, refused) and fake["generated"] == [2, 3, 4]
    statuses = [c["status"] for c in log.commands if c["stage"].startswith("data seed")]
    assert statuses[1].startswith("skipped (refused earlier")
    # Not enough balanced seeds within 3 x count: a clear error naming the refused ones.
    fake["refuse"] = set(range(100, 200))
    with pytest.raises(ConfigError, match=r"0 of 2 balanced data sets .* 100\.\.105"):
        heads_data.prepare_instrument_splits(runner.StageLog(), paths, 100, 2)


def test_a_val_split_that_fails_the_balance_check_fails_its_stage(tmp_path, fake):
    paths = heads_data.Paths(str(tmp_path / "out"), "tiny", str(tmp_path / "data"))
    with pytest.raises(runner.StageError, match="data seed 3: UnbalancedDataError"):
        heads_data.prepare_val_splits(runner.StageLog(), paths, [2, 3])
