"""The heads suite end to end on a tiny data set, in this process: data for two val splits and
the pretraining, the pretrained trunk, one run fine-tuned from it with 2 seeds, scored on both
splits (detections and GT boxes), its matches, the context check's blind run also on one
instrument split, heads.json and the results page; a second call skips every stage."""

import json
import os

import pytest

from action_tx.bench import heads, heads_data, heads_runs, heads_seeds, matching, runner, stats

PLAN = heads_seeds.SeedPlan(seeds=2, seed_offset=3, data_seed=0, val_splits=2, instrument_splits=1)
GENERATOR = dict(check=False, videos=3, seconds=8)


@pytest.fixture(scope="module")
def tiny_suite(tmp_path_factory):
    """heads.run(quick=True) with one 2-step linear run and the context check's blind run
    (`linear_own_box` on its features), seeds 3 and 4, val splits of generator seeds 0 (the
    training data's) and 1, the instrument split of seed 2, on 3 synthetic videos x 8 s each."""
    root = tmp_path_factory.mktemp("heads_suite")
    data_root, out = str(root / "data"), str(root / "out")
    os.makedirs(out)
    # 10 x 0.2: two steps, one of warmup.
    runs = (
        heads_runs.RunSpec(
            "lin",
            "linear",
            overrides={"train.warmup_steps": 1, "train.batch_size": 2, "data.num_frames": 4},
            budget_scale=0.2,
        ),
        # The blind run's path: features of lin's checkpoints from each GT box's own pixels.
        heads_runs.RunSpec(
            "linear_own_box",
            "linear",
            heads_runs.FEATURES,
            {"data.train_actors": "gt", "data.eval_actors": "gt", "train.warmup_steps": 1},
            features_from="lin",
            pixels="own_box",
            budget_scale=0.2,
        ),
    )
    kwargs = dict(
        quick=True,
        runs=runs,
        data_root=data_root,
        seed_plan=PLAN,
        generator=GENERATOR,
        gt_runs=("lin",),
    )
    page = heads.run(out, **kwargs)
    with open(os.path.join(out, "heads.json")) as f:
        return dict(out=out, data_root=data_root, kwargs=kwargs, page=page, json=json.load(f))


def test_two_seeds_on_two_val_splits_write_matches_and_the_page(tiny_suite):
    summary, out = tiny_suite["json"], tiny_suite["out"]
    row, blind = summary["runs"]
    assert row["status"] == "ok", row["per_seed"]
    assert blind["status"] == "ok", blind["per_seed"]
    assert (row["name"], row["head"], row["steps"], row["seeds"]) == ("lin", "linear", 2, [3, 4])
    assert summary["seed_plan"] == dict(
        seeds=2, seed_offset=3, data_seed=0, val_splits=2, instrument_splits=1
    )
    # The projection printed at the start (heads_costs.COSTS["tiny"]) is kept with the result.
    assert 0 < summary["projected_seconds"] < 600
    assert summary["val_splits"] == [
        dict(name="data0", data_seed=0),
        dict(name="data1", data_seed=1),
    ]
    assert summary["instrument_splits"] == [dict(name="data2", data_seed=2)]
    # The pretrained trunk: its figures, and the run's config fine-tunes from it.
    pretrain = summary["pretrain"]
    assert pretrain["steps"] == heads_runs.PRETRAIN_BUDGETS["tiny"]
    assert pretrain["data_seed"] == heads_data.PRETRAIN_DATA_SEED
    assert 0.0 <= pretrain["localization_ap50"] <= 1.0 and pretrain["seconds"] > 0
    assert os.path.isfile(pretrain["checkpoint"] + ".index")
    run_dir = os.path.join(out, "tiny", "runs", "lin-seed4")
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    assert config["train"]["init_checkpoint"] == pretrain["checkpoint"]
    assert config["model"]["seed"] == 4 and config["data"]["image_size"] == 64
    # Each seed: one matches file per box mode, pooling both splits' ground truth.
    paths = heads.Paths(out, "tiny", tiny_suite["data_root"])
    splits = [paths.val_split(0), paths.val_split(1)]
    assert splits[1].ann.endswith(os.path.join("synthetic_tiny_seed1", "annotations"))
    for mode in ("rpn", "gt"):
        files = row["matches"][mode]
        assert files == [f"tiny/runs/lin-seed{s}/matches_{mode}_data0-1.npz" for s in (3, 4)]
        loaded = [matching.load_matches(os.path.join(out, f)) for f in files]
        assert loaded[0].groundtruth == loaded[1].groundtruth
        pooled = loaded[0].by_evidence[stats.ALL]
        counted = sum(
            sum(1 for _ in open(s.groundtruth)) for s in splits
        )  # every pooled keyframe's rows, both splits
        assert 0 < pooled.positives.sum() <= counted
    # GT boxes: every ground-truth person is a detection, so the positives all get a TP chance.
    gt = matching.load_matches(os.path.join(out, row["matches"]["gt"][0])).by_evidence[stats.ALL]
    assert gt.det_tp.sum() > 0
    assert set(summary["positive_rates"]) == {"context", "long_term"}
    for rate in summary["positive_rates"].values():
        assert 0.0 < rate["rate"] < 1.0
    # The page renders from heads.json: intervals of the run, the pretrained trunk's section.
    page = tiny_suite["page"]
    with open(os.path.join(out, "results.md")) as f:
        assert f.read() == page
    assert "## Claims" in page and "## Pretrained trunk" in page
    line = next(x for x in page.splitlines() if x.startswith("| `lin` |"))
    assert "[" in line and "| 2 |" in line  # mean [low, high] over 2 seeds
    stages = [c["stage"] for c in summary["commands"]]
    assert stages[:10] == [
        "data seed 0",
        "tfrecords train",
        "tfrecords data0",
        "data seed 1",
        "tfrecords data1",
        "data seed 2",
        "tfrecords data2",
        f"data seed {heads_data.PRETRAIN_DATA_SEED}",
        "tfrecords pretrain_train",
        "tfrecords pretrain_val",
    ]
    assert "train lin-seed3" in stages and "matches gt lin-seed4" in stages
    assert stages.count("eval rpn lin") == stages.count("eval gt lin") == 1  # one model each
    # The own_box run: its own feature folders, scored on GT boxes only, listed only there.
    assert blind["modes"] == ["gt"] and list(blind["matches"]) == ["gt"]
    assert "features lin-seed3 train --pixels=own_box" in stages
    with open(
        os.path.join(paths.feature_dir("lin-seed3", "data1", pixels="own_box"), "manifest.json")
    ) as f:
        assert json.load(f)["settings"]["pixels"] == "own_box"
    det_table = page[page.index("## Runs, on each run's detections") : page.index("## Runs, on gr")]
    assert "| `linear_own_box` |" not in det_table and "| `linear_own_box` |" in page
    # The blind run on the instrument split too: its own-box features of it, matched on the
    # three splits pooled; `lin` (no check's run) is not. The rates count all three splits.
    assert "features lin-seed4 data2 --pixels=own_box" in stages
    assert "features lin-seed4 data2" not in stages  # frame features: only for val splits
    assert blind["instrument_matches"] == {
        "gt": [f"tiny/runs/linear_own_box-seed{s}/matches_gt_data0-1-2.npz" for s in (3, 4)]
    }
    assert "instrument_matches" not in row
    three = matching.load_matches(os.path.join(out, blind["instrument_matches"]["gt"][0]))
    two = matching.load_matches(os.path.join(out, blind["matches"]["gt"][0]))
    for m in (three, two):
        assert m.by_evidence[stats.ALL].positives.sum() > 0
    assert three.by_evidence[stats.ALL].num_keys > two.by_evidence[stats.ALL].num_keys
    rates = heads_data.positive_rates([paths.val_split(s) for s in (0, 1, 2)], paths.label_map)
    assert summary["positive_rates"] == json.loads(json.dumps(rates))
    assert "on 3 val splits pooled: the claims' 2 and 1 more" in page


def test_a_rerun_skips_everything_and_gives_the_same_page(tiny_suite):
    out = tiny_suite["out"]
    page = heads.run(out, **tiny_suite["kwargs"])
    with open(os.path.join(out, "heads.json")) as f:
        rerun = json.load(f)
    # Nothing ran again; what the first invocation ran keeps its record (and cost).
    first_ran = {c["command"]: c for c in tiny_suite["json"]["commands"] if c["status"] == "ok"}
    for c in rerun["commands"]:
        if c["command"] in first_ran:
            assert c == dict(first_ran[c["command"]], status=runner.EARLIER)
        else:
            assert c["status"].startswith("skipped"), c
    assert any(c["status"] == runner.EARLIER for c in rerun["commands"])
    # The pass's wall time counts both invocations.
    first = tiny_suite["json"]["invocations"]
    assert len(first) == 1 and first[0]["seconds"] == tiny_suite["json"]["seconds"]
    assert rerun["invocations"][0] == first[0] and len(rerun["invocations"]) == 2
    assert rerun["seconds_total"] == pytest.approx(
        first[0]["seconds"] + rerun["invocations"][1]["seconds"], abs=0.11
    )
    assert f"over 2 invocations ({first[0]['seconds']:.0f}, " in page
    assert rerun["runs"][0]["matches"] == tiny_suite["json"]["runs"][0]["matches"]
    assert rerun["pretrain"]["checkpoint"] == tiny_suite["json"]["pretrain"]["checkpoint"]
    claims = [x for x in page.splitlines() if x.startswith("| vatx-tx:")]
    assert claims == [x for x in tiny_suite["page"].splitlines() if x.startswith("| vatx-tx:")]
