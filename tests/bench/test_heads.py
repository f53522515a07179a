"""The heads suite's run list, report writer, figures read back from files and skip logic
(nothing trains: the suite itself is the long measurement)."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from action_tx import config as C
from action_tx.bench import (
    claims,
    heads,
    heads_costs,
    heads_metrics,
    heads_runs,
    heads_seeds,
    matching,
    runner,
    stats,
)
from action_tx.checkpointing import checkpointable


def test_run_list_has_every_head_and_ablation_of_the_issues():
    runs = {r.name: r for r in heads_runs.RUNS}
    assert {r.head for r in heads_runs.RUNS} == {
        "linear",
        "i3d",
        "tx",
        "tx_i3d",
        "stage",
        "hgrnn",
        "acar",
        "aia",
    }
    # End to end only where the claim is about end-to-end training (VATX); every relational
    # head on the frozen features of the `i3d` run (STAGE and HGRNN's protocol).
    e2e = {r.name for r in heads.suite_runs() if r.mode == heads_runs.END_TO_END}
    assert e2e == {"i3d", "tx", "tx_i3d"}
    for name in ("stage", "hgrnn", "hgrnn_l0", "linear_features", "acar", "acar_acfb"):
        assert runs[name].mode == heads_runs.FEATURES and runs[name].features_from == "i3d"
    assert runs["acar_acfb"].bank_from == "acar" and runs["acar"].bank_from is None
    assert runs["hgrnn_l0"].overrides["head.window"] == 0
    for name in ("aia_features", "aia_nomem_features"):  # issue 8 at the memory's budget
        assert runs[name].mode == heads_runs.FEATURES and runs[name].features_from == "i3d"
        assert runs[name].overrides["train.batch_size"] == 16
        assert runs[name].overrides["head.memory_window"] in (0, 6)  # the synthetic horizon
        assert heads_runs.run_steps(runs[name], "bench") == 225
    assert runs["aia_nomem_features"].overrides["head.blocks"] == ("P", "O", "P", "O")
    assert "head.blocks" not in runs["aia_features"].overrides
    heads_runs.check_runs()  # the shipped list is consistent


def test_suite_runs_are_the_run_list_and_the_claims_variants():
    runs = heads.suite_runs()
    assert [r.name for r in runs] == [r.name for r in heads_runs.RUNS + claims.VARIANT_RUNS]
    names = {r.name for r in runs}
    for claim in claims.CLAIMS:  # every claim's runs are in the list (check_claims passed)
        assert {claim.better, claim.other} <= names, claim.id
    quick = {r.name: r for r in heads.suite_runs(quick=True)}
    assert set(quick) == set(heads_runs.QUICK_RUNS)
    covered = [c for c in claims.CLAIMS if {c.better, c.other} <= set(quick)]
    modes = {quick[c.better].mode for c in covered}
    assert modes == {heads_runs.END_TO_END, heads_runs.FEATURES}  # one claim of each kind
    with pytest.raises(ValueError, match="not in the run list"):
        claims.check_claims(claims.CLAIMS, [r.name for r in heads_runs.RUNS])


def test_check_runs_rejects_bad_lists():
    a = heads_runs.RunSpec("a", "linear")
    with pytest.raises(ValueError, match="duplicate"):
        heads_runs.check_runs([a, a])
    with pytest.raises(ValueError, match="not an earlier run"):
        heads_runs.check_runs(
            [heads_runs.RunSpec("f", "stage", heads_runs.FEATURES, features_from="a"), a]
        )
    with pytest.raises(ValueError, match="needs features_from"):
        heads_runs.check_runs([heads_runs.RunSpec("f", "stage", heads_runs.FEATURES)])
    with pytest.raises(ValueError, match="budget_scale must be > 0"):
        heads_runs.check_runs([heads_runs.RunSpec("z", "linear", budget_scale=0.0)])
    with pytest.raises(ValueError, match="not SECTION.FIELD"):
        heads_runs.check_runs([heads_runs.RunSpec("o", "linear", overrides={"hgrnn_window": 0})])


def test_an_own_box_run_reads_its_own_features_on_ground_truth_boxes_only(tmp_path):
    a = heads_runs.RunSpec("a", "i3d")
    gt = {"data.train_actors": "gt", "data.eval_actors": "gt"}
    blind = heads_runs.RunSpec(
        "b", "linear", heads_runs.FEATURES, gt, features_from="a", pixels="own_box"
    )
    heads_runs.check_runs([a, blind])
    with pytest.raises(ValueError, match="ground-truth actors"):  # detections: none stored
        heads_runs.check_runs(
            [
                a,
                heads_runs.RunSpec(
                    "b", "linear", heads_runs.FEATURES, features_from="a", pixels="own_box"
                ),
            ]
        )
    with pytest.raises(ValueError, match="pixels must be"):
        heads_runs.check_runs([heads_runs.RunSpec("c", "linear", pixels="crop")])
    assert heads_runs.box_modes(blind, gt_runs={"b"}) == ("gt",)
    assert heads_runs.box_modes(a, gt_runs={"a"}) == ("rpn", "gt")
    assert heads_runs.box_modes(a, gt_runs=()) == ("rpn",)
    # Its features have their own folders, and its config reads them (train and eval).
    paths = heads.Paths(str(tmp_path), "bench", str(tmp_path / "data"))
    assert paths.feature_dir("a", "train", pixels="own_box").endswith("a_own_box_train")
    assert paths.feature_dir("a", "train").endswith("a_features_train")
    config = heads.run_config(blind, paths, "bench", 10, resolve=lambda model, data: model)
    assert config.data.feature_dir == paths.feature_dir("a", "train", pixels="own_box")
    assert config.data.eval_feature_dir == paths.feature_dir("a", "data0", pixels="own_box")
    assert (config.data.train_actors, config.data.eval_actors) == ("gt", "gt")


def test_run_steps_scale_the_preset_budget():
    e2e = heads_runs.RunSpec("e", "linear")
    long = heads_runs.RunSpec("l", "i3d", budget_scale=2.5)
    half = heads_runs.RunSpec("h", "aia", heads_runs.FEATURES, features_from="l", budget_scale=0.5)
    assert heads_runs.run_steps(e2e, "bench") == 500
    assert heads_runs.run_steps(long, "bench") == 1250
    assert heads_runs.run_steps(half, "bench") == 375  # 750 x 0.5
    assert heads_runs.run_steps(long, "tiny") == 25
    assert (
        heads_runs.run_steps(heads_runs.RunSpec("t", "aia", budget_scale=0.01), "tiny") == 1
    )  # at least one step


def test_projection_formula_on_known_costs(monkeypatch):
    """projected_seconds is the formula beside COSTS: a hand-computed case."""
    e2e = heads_runs.RunSpec("a", "i3d")
    feat = heads_runs.RunSpec("f", "stage", heads_runs.FEATURES, features_from="a")
    bank = heads_runs.RunSpec(
        "b", "acar", heads_runs.FEATURES, features_from="a", bank_from="f", budget_scale=0.5
    )
    costs = dict(
        step={
            heads_runs.END_TO_END: {"i3d": 0.5},
            heads_runs.FEATURES: {"stage": 0.1, "acar+bank": 1.0},
        },
        start={heads_runs.END_TO_END: 10.0, heads_runs.FEATURES: 2.0},
        eval_job={
            heads_runs.END_TO_END: {"i3d": 3.0},
            heads_runs.FEATURES: {"stage": 1.0, "acar+bank": 5.0},
        },
        eval_build={heads_runs.END_TO_END: 4.0, heads_runs.FEATURES: 1.0},
        extract=dict(train=20.0, val=6.0),
        bank=dict(train=8.0, val=2.0),
        pretrain_eval=7.0,
        stage_overhead=0.5,
    )
    monkeypatch.setitem(heads_costs.COSTS, "x", costs)
    monkeypatch.setitem(heads_runs.BUDGETS, "x", dict(end_to_end=100, features=200))
    monkeypatch.setitem(heads_runs.PRETRAIN_BUDGETS, "x", 300)
    got = heads_costs.projected_seconds(
        [e2e, feat, bank], "x", seeds=2, val_splits=3, gt_runs={"a"}
    )
    assert got["pretrain"] == pytest.approx(300 * 0.5 + 10 + 7)
    assert got["extraction"] == pytest.approx(2 * (20 + 3 * 6) + 2 * (8 + 3 * 2))
    assert got["train"] == pytest.approx(2 * (10 + 50) + 2 * (2 + 20) + 2 * (2 + 100))
    # GT boxes for "a" only: two box modes there, one elsewhere.
    assert got["eval"] == pytest.approx(2 * (4 + 6 * 3) + (1 + 6 * 1) + (1 + 6 * 5))
    # Keras stages (no matching): pretrain 2; "a" 2 trains + 2 evals; "f", "b" 2 + 1 each;
    # extractions of "a" and the bank of "f": 2 x 2 x (1 + 3).
    assert got["overhead"] == pytest.approx(0.5 * (2 + 4 + 3 + 3 + 16))
    assert got["total"] == pytest.approx(sum(v for k, v in got.items() if k != "total"))
    assert heads_costs.projected_seconds([e2e], "nowhere", 2, 3) is None  # no measured costs
    # ACAR's Relation Network has its own costs (N^2 actor pairs).
    kinds = {r.name: heads_costs.run_kind(r) for r in heads.suite_runs()}
    assert (kinds["acar"], kinds["acar_acfb"], kinds["acar_rn"]) == ("acar", "acar+bank", "acar+rn")
    assert got["instrument"] == 0.0  # no blind run of chance.CHANCE_CHECKS in the list
    # A blind run (`i3d`, the long_term check's, on GT boxes) on 4 instrument splits: one more
    # model build and 2 seeds x 4 splits of its eval job; Keras stages: one eval.
    blind = heads_runs.RunSpec("i3d", "i3d")
    one = heads_costs.projected_seconds([blind], "x", 2, 3, {"i3d"}, instrument_splits=4)
    assert one["instrument"] == pytest.approx(4.0 + 2 * 4 * 3.0)
    none = heads_costs.projected_seconds([blind], "x", 2, 3, {"i3d"})
    assert one["overhead"] - none["overhead"] == pytest.approx(0.5 * 1)
    # The shipped list, budgets and instrument splits fit the issue's 90 minutes on the
    # measured costs.
    plan = heads_seeds.SeedPlan()
    full = heads_costs.projected_seconds(
        heads.suite_runs(), "bench", 3, 4, heads_runs.GT_BOX_RUNS, plan.instrument_splits
    )
    assert full["total"] <= 90 * 60 and full["instrument"] > 0


class _Toy(keras.Model):
    def __init__(self):
        super().__init__()
        self.trunk = keras.layers.Dense(2)  # 5 x 2 + 2 = 12
        self.head = keras.Sequential(
            [
                keras.layers.Dense(3),  # 2 x 3 + 3 = 9
                keras.layers.BatchNormalization(),
            ]
        )  # 3 + 3 (+ 6 stats)

    def call(self, x):
        return self.head(self.trunk(x))


def _write_checkpoint(path):
    model = _Toy()
    model(tf.zeros([1, 5]))
    opt = keras.optimizers.AdamW()
    opt.build(model.trainable_variables)
    return tf.train.Checkpoint(model=checkpointable(model), optimizer=opt).write(path)


def test_count_parameters_from_a_checkpoint(tmp_path):
    path = _write_checkpoint(str(tmp_path / "ckpt-3"))
    # head: 9 dense + 6 BatchNorm gamma/beta (moving statistics are not parameters).
    assert heads_metrics.count_parameters(path) == (15, 27)
    assert heads_metrics.count_parameters(path, group="trunk") == (12, 27)


def _write_steps(log_dir, rates):
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        for step, rate in rates:
            tf.summary.scalar("examples_per_second", rate, step=step)
            tf.summary.scalar("loss/total_loss", 1.0, step=step)
    writer.flush()


def test_step_seconds_median_without_first_window(tmp_path):
    _write_steps(str(tmp_path / "train"), [(10, 1.0), (20, 8.0), (30, 16.0), (40, 16.0)])
    assert heads_metrics.step_seconds(str(tmp_path), batch_size=4) == pytest.approx(0.25)
    assert heads_metrics.step_seconds(str(tmp_path / "none"), batch_size=4) is None


def _eval_json(directory, step, mAP):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"ckpt-{step}_results.json"), "w") as f:
        json.dump({"mAP@0.5IOU": mAP}, f)


def test_eval_results_by_step(tmp_path):
    _eval_json(str(tmp_path), 5, 0.1)
    _eval_json(str(tmp_path), 12, 0.3)
    assert heads_metrics.eval_results(str(tmp_path))["mAP@0.5IOU"] == 0.3  # newest
    assert heads_metrics.eval_results(str(tmp_path), 5)["mAP@0.5IOU"] == 0.1
    assert heads_metrics.eval_results(str(tmp_path), 7) is None


class _NoRun(runner.StageLog):
    """Records skips; fails the test if anything would run."""

    def run(self, stage, call, fn, *args, **kwargs):
        raise AssertionError(f"{stage} ran although its output exists")


def test_train_and_score_skip_what_exists_and_collect_figures(tmp_path):
    paths = heads.Paths(str(tmp_path), "tiny", str(tmp_path / "data"))
    splits = (paths.val_split(0), paths.val_split(7))
    for split in splits:  # the evidence the archives below were matched on
        os.makedirs(os.path.dirname(split.evidence), exist_ok=True)
        with open(split.evidence, "w") as f:
            f.write(
                f"video_id,timestamp,person_id,action_id,evidence\nv{split.data_seed},1,0,1,self\n"
            )
    digest = matching.evidence_digest([s.evidence for s in splits])
    data = (paths.train_split(), splits)
    spec = heads_runs.RunSpec("lin-seed0", "linear")
    run_dir = paths.run_dir(spec.name)
    os.makedirs(run_dir)
    _write_checkpoint(os.path.join(run_dir, "ckpt-10"))
    _write_steps(os.path.join(run_dir, "train"), [(5, 1.0), (10, 8.0)])
    for mode in heads.MODES:
        for split in splits:
            _eval_json(os.path.join(run_dir, f"eval_{mode}_{split.name}"), 10, 0.4)
        matches = stats.RunMatches("g", np.array([1]), {}, digest)
        matching.save_matches(os.path.join(run_dir, f"matches_{mode}_data0-7.npz"), matches)
    runner, done = _NoRun(), set()
    result = heads.train_seed(spec, runner, paths, "tiny", 10, data, "pre/i3d_trunk", done, set())
    assert result["status"] == "ok", result["status"]
    assert result["config"].train.init_checkpoint == "pre/i3d_trunk"
    heads.score_seeds("lin", [spec], [result], runner, paths, 10, splits, done)
    assert result["status"] == "ok", result["status"]
    assert done == {"lin-seed0"}
    assert result["matches"] == {
        m: os.path.join(run_dir, f"matches_{m}_data0-7.npz") for m in heads.MODES
    }
    assert (result["head_params"], result["trainable_params"]) == (15, 27)
    assert result["step_time_s"] == pytest.approx(0.5)  # batch 4 of bench.flags at 8/s
    assert [c["stage"] for c in runner.commands] == [
        "train lin-seed0",
        "eval rpn lin",
        "matches rpn lin-seed0",
        "eval gt lin",
        "matches gt lin-seed0",
    ]
    assert all(c["status"].startswith("skipped") for c in runner.commands)
    # A dependency without result, or an end-to-end run without the pretrained trunk: not run.
    orphan = heads.train_seed(
        heads_runs.RunSpec("t", "linear", heads_runs.FEATURES, features_from="gone"),
        *(runner, paths, "tiny", 10, data, "pre/i3d_trunk", set(), set()),
    )
    assert orphan["status"] == "not run: needs run 'gone', which has no result"
    no_trunk = heads.train_seed(spec, runner, paths, "tiny", 10, data, None, set(), set())
    assert no_trunk["status"].startswith("not run: no pretrained trunk")


def test_config_of_a_feature_run(tmp_path):
    paths = heads.Paths(str(tmp_path), "tiny")
    spec = heads_runs.RunSpec(
        "hg", "hgrnn", heads_runs.FEATURES, {"head.window": 0}, features_from="i3d"
    )
    config = heads.run_config(spec, paths, "tiny", 30)
    assert config.data.input == "features" and config.train.train_steps == 30
    assert config.data.feature_dir == paths.feature_dir("i3d", "train")
    assert config.data.eval_feature_dir == paths.feature_dir("i3d", "data0")
    assert config.model.head_options.window == 0  # the run's own override
    assert config.model.head_options.hidden_size == 256  # the head's default otherwise
    assert config.train.batch_size == 4  # BASE (configs/bench.flags)
    assert config.data.image_size == 64  # the tiny preset wins over BASE's 112
    assert config.train.model_dir == paths.run_dir("hg")
    gt = C.with_overrides(config, heads_runs.GT_BOX_OVERRIDES[spec.mode])
    assert gt.data.eval_actors == "gt" and gt.model.proposals == "rpn"
    assert gt.model == config.model  # the same model scored
    # Scored on another val split: its shards, ground truth and features; the same model.
    split = paths.val_split(5)
    scored = heads.split_config(config, spec, paths, split, gt_boxes=True)
    assert scored.data.eval_tfrecords == split.shards
    assert scored.eval.groundtruth == split.groundtruth
    assert scored.data.eval_feature_dir == paths.feature_dir("i3d", "data5")
    assert scored.data.eval_actors == "gt" and scored.model == config.model
    assert scored.data.feature_dir == config.data.feature_dir  # training input unchanged
    e2e = heads.run_config(
        heads_runs.RunSpec("tx", "tx"), paths, "tiny", 10, extra={"train.init_checkpoint": "p"}
    )
    assert e2e.train.init_checkpoint == "p"


def test_a_bank_of_a_feature_run_reads_each_splits_features(tmp_path, monkeypatch):
    """ACAR on frozen features: its bank over val split j reads the features of split j (the
    run's config.json names the first val split's), and no TFRecords."""
    import action_tx.tasks
    from action_tx import feature_extraction

    paths = heads.Paths(str(tmp_path), "tiny")
    spec = heads_runs.RunSpec("acar-seed0", "acar", heads_runs.FEATURES, features_from="i3d-seed0")
    config = heads.run_config(spec, paths, "tiny", 5)
    monkeypatch.setattr(C, "load", lambda run_dir: config)
    monkeypatch.setattr(tf.train, "latest_checkpoint", lambda run_dir: run_dir + "/ckpt-5")
    monkeypatch.setattr(action_tx.tasks, "make_task", lambda c: c)
    calls = []
    monkeypatch.setattr(
        feature_extraction,
        "extract_split_bank",
        lambda task, checkpoint, out, **kw: calls.append((task, out, kw)),
    )
    for split in (paths.train_split(), paths.val_split(0), paths.val_split(3)):
        heads.extract(paths, "acar-seed0", split, "acfb", "i3d-seed0")
    (train, _, kw_train), (val0, _, _), (val3, out3, kw3) = calls
    assert train.data.feature_dir == paths.feature_dir("i3d-seed0", "train")
    assert (kw_train["split"], kw_train["files"]) == ("train", None)
    assert val0.data.eval_feature_dir == paths.feature_dir("i3d-seed0", "data0")
    assert val3.data.eval_feature_dir == paths.feature_dir("i3d-seed0", "data3")
    assert (kw3["split"], kw3["files"]) == ("val", None)
    assert out3 == paths.feature_dir("acar-seed0", "data3", "acfb")


def test_a_resumed_pass_keeps_its_earlier_invocations(tmp_path):
    """heads.json of the same pass -> its invocations; another pass's, or none -> []."""
    path = str(tmp_path / "heads.json")
    plan = dict(seeds=3, seed_offset=0, data_seed=0, val_splits=4)

    def earlier(preset="bench", quick=False, seed_plan=plan):
        return heads.earlier_invocations(heads.same_pass(path, preset, quick, seed_plan))

    assert earlier() == []  # no heads.json yet
    old = [dict(started="2026-12-06T10:00:00+00:00", seconds=1626.0)]
    with open(path, "w") as f:
        json.dump(dict(preset="bench", quick=False, seed_plan=plan, invocations=old), f)
    assert earlier() == old
    assert earlier(seed_plan={**plan, "seed_offset": 3}) == []
    # A heads.json that lists instrument splits is the same pass as the plan's key without
    # them (`SeedPlan.pass_key`): more instrument splits add scoring, not another pass.
    with open(path, "w") as f:
        json.dump(
            dict(
                preset="bench",
                quick=False,
                seed_plan={**plan, "instrument_splits": 2},
                invocations=old,
            ),
            f,
        )
    assert earlier() == old
    assert earlier("tiny", True) == []
    # Written before invocations were kept: its one invocation, of unknown start.
    with open(path, "w") as f:
        json.dump(dict(preset="bench", quick=False, seed_plan=plan, seconds=836.4), f)
    assert earlier() == [dict(started=None, seconds=836.4)]
    with open(path, "w") as f:
        f.write('{"preset": "ben')  # cut short: warned about, not counted
    assert earlier() == []


def test_a_resumed_pass_keeps_what_its_skipped_stages_cost_earlier():
    earlier = [
        dict(stage="train a", command="train(a)", seconds=234.6, status="ok"),
        dict(stage="train b", command="train(b)", seconds=5.0, status="failed: boom"),
        dict(stage="eval a", command="eval(a)", seconds=None, status="skipped (exists)"),
    ]
    now = [
        dict(stage="train a", command="train(a)", seconds=None, status="skipped (exists)"),
        dict(stage="train b", command="train(b)", seconds=6.0, status="ok"),
        dict(stage="eval a", command="eval(a)", seconds=None, status="skipped (exists)"),
        dict(stage="train c", command="train(c, other)", seconds=None, status="skipped (exists)"),
    ]
    merged = runner.merge_commands(earlier, now)
    assert merged[0] == dict(earlier[0], status=runner.EARLIER)  # its cost, from before
    assert merged[1:] == now[1:]  # ran now; nothing ran earlier; another command
    assert runner.merge_commands(merged, now)[0] == merged[0]  # a third invocation keeps it


def test_a_bank_run_evaluates_on_the_plans_first_val_split(tmp_path):
    """With --data_seed=100 the suite extracts no features or bank of generator seed 0: the
    config a run trains with names the plan's first val split (data100), whose bank ACAR
    loads when it is built (the rerun's acar_acfb failed on a data0 path before this)."""
    paths = heads.Paths(str(tmp_path), "tiny")
    splits = (paths.val_split(100), paths.val_split(101))
    spec = heads_runs.RunSpec(
        "acfb-seed3",
        "acar",
        heads_runs.FEATURES,
        features_from="i3d-seed3",
        bank_from="acar-seed3",
    )
    for split in ("train", "data100", "data101"):  # extracted: the stages are skipped
        for run, bank, marker in (
            ("i3d-seed3", "none", "manifest.json"),
            ("acar-seed3", "acfb", "acfb.json"),
        ):
            os.makedirs(paths.feature_dir(run, split, bank))
            open(os.path.join(paths.feature_dir(run, split, bank), marker), "w").close()
    run_dir = paths.run_dir(spec.name)
    os.makedirs(run_dir)
    _write_checkpoint(os.path.join(run_dir, "ckpt-10"))
    done = {"i3d-seed3", "acar-seed3"}
    data = (paths.train_split(), splits)
    result = heads.train_seed(spec, _NoRun(), paths, "tiny", 10, data, None, done, set())
    assert result["status"] == "ok", result["status"]
    config = result["config"]
    assert config.model.head_options.eval_bank_dir == paths.feature_dir(
        "acar-seed3", "data100", "acfb"
    )
    assert config.model.head_options.bank_dir == paths.feature_dir("acar-seed3", "train", "acfb")
    assert config.data.eval_feature_dir == paths.feature_dir("i3d-seed3", "data100")
    assert config.data.eval_tfrecords == splits[0].shards
    assert config.eval.groundtruth == splits[0].groundtruth
    # Without a split named: the training data's (generator seed 0), as before.
    default = heads.run_config(spec, paths, "tiny", 10)
    assert default.model.head_options.eval_bank_dir.endswith("acar-seed3_acfb_data0")
    assert default.eval.groundtruth == paths.val_split(0).groundtruth
