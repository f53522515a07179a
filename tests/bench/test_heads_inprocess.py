"""The heads suite end to end on a tiny data set, in this process: data conversion, one run
trained and scored by library calls (no tool process), its mAP in heads.json; a second call
skips every stage."""

import json
import os

import pytest

from action_tx.bench import heads, heads_runs


@pytest.fixture(scope="module")
def tiny_suite(tmp_path_factory):
    """heads.run(quick=True) with one 2-step linear run on 3 synthetic videos x 8 s."""
    from action_tx.data import synthetic

    root = tmp_path_factory.mktemp("heads_suite")
    data_root, out = str(root / "data"), str(root / "out")
    os.makedirs(out)
    synthetic.generate(
        os.path.join(data_root, "synthetic_tiny"), preset="tiny", check=False, videos=3, seconds=8
    )
    # 10 x 0.2: two steps, one of warmup.
    runs = (
        heads_runs.RunSpec(
            "lin",
            "linear",
            overrides={"train.warmup_steps": 1, "train.batch_size": 2, "data.num_frames": 4},
            budget_scale=0.2,
        ),
    )
    report = heads.run(out, quick=True, runs=runs, data_root=data_root)
    with open(os.path.join(out, "heads.json")) as f:
        return dict(out=out, data_root=data_root, runs=runs, report=report, json=json.load(f))


def test_one_run_trains_and_scores_in_process(tiny_suite):
    summary = tiny_suite["json"]
    (run,) = summary["runs"]
    assert run["status"] == "ok", run["status"]
    assert (run["name"], run["head"], run["steps"]) == ("lin", "linear", 2)
    # The mAP is the evaluator's, as written next to the checkpoint.
    run_dir = os.path.join(tiny_suite["out"], "tiny", "runs", "lin")
    with open(os.path.join(run_dir, "eval", "ckpt-2_results.json")) as f:
        scored = json.load(f)
    assert 0.0 <= run["frame_map"] <= 1.0
    assert run["frame_map"] == scored["mAP@0.5IOU"]
    assert run["gt_box_map"] is None  # --quick: no GT-box evaluation
    assert run["trainable_params"] > run["head_params"] > 0
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    assert config["model"]["head"] == "linear" and config["data"]["image_size"] == 64
    assert [c["stage"] for c in summary["commands"]] == [
        "data",
        "tfrecords train",
        "tfrecords val",
        "train lin",
        "eval lin",
    ]
    assert summary["commands"][0]["status"].startswith("skipped")  # the data made above
    assert [c["status"] for c in summary["commands"][1:]] == ["ok"] * 4
    # Same keys as the suite always wrote (other engineers read heads.json).
    assert set(summary) == {
        "preset",
        "quick",
        "budgets",
        "machine",
        "seconds",
        "runs",
        "checks",
        "commands",
    }
    assert "| lin |" in tiny_suite["report"]


def test_scoring_again_gives_the_same_map_and_a_rerun_skips_everything(tiny_suite, tmp_path):
    (run,) = tiny_suite["json"]["runs"]
    paths = heads.Paths(tiny_suite["out"], "tiny", tiny_suite["data_root"])
    config = heads.run_config(tiny_suite["runs"][0], paths, "tiny", 2)
    assert heads.evaluate(config, str(tmp_path / "again"), paths) == run["frame_map"]
    out = tiny_suite["out"]
    heads.run(out, quick=True, runs=tiny_suite["runs"], data_root=tiny_suite["data_root"])
    with open(os.path.join(out, "heads.json")) as f:
        rerun = json.load(f)
    assert all(c["status"].startswith("skipped") for c in rerun["commands"])
    assert rerun["runs"][0]["frame_map"] == run["frame_map"]
