"""The heads suite's run list, report writer, figures read back from files and skip logic
(nothing trains: the suite itself is the long measurement)."""

import json
import os

import keras
import pytest
import tensorflow as tf

from action_tx import config as C
from action_tx.bench import heads, heads_metrics, heads_runs, heads_table, runner
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
    for name in ("linear", "i3d", "tx", "tx_i3d", "acar", "acar_acfb", "aia", "aia_nomem"):
        assert runs[name].mode == heads_runs.END_TO_END, name
    for name in ("stage", "hgrnn", "hgrnn_l0", "linear_features"):
        assert runs[name].mode == heads_runs.FEATURES and runs[name].features_from == "i3d"
    assert runs["acar_acfb"].bank_from == "acar" and runs["acar"].bank_from is None
    assert runs["aia_nomem"].overrides["head.memory_window"] == 0
    assert runs["aia_nomem"].overrides["head.blocks"] == ("P", "O", "P", "O")  # Table 1a: no M
    assert "head.memory_window" not in runs["aia"].overrides
    assert runs["hgrnn_l0"].overrides["head.window"] == 0
    for name in ("aia_features", "aia_nomem_features"):  # issue 8 at the memory's budget
        assert runs[name].mode == heads_runs.FEATURES and runs[name].features_from == "i3d"
        assert runs[name].overrides["train.batch_size"] == 16
        assert heads_runs.run_steps(runs[name], "bench") == 1500
    assert runs["aia_nomem_features"].overrides["head.blocks"] == ("P", "O", "P", "O")
    assert "head.blocks" not in runs["aia_features"].overrides
    heads_runs.check_runs()  # the shipped list is consistent
    names = set(runs)
    for better, other, evidence, _ in heads_runs.CHECKS:
        assert {better, other} <= names and evidence in heads_runs.EVIDENCE


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


def test_run_steps_scale_the_preset_budget():
    e2e = heads_runs.RunSpec("e", "linear")
    long = heads_runs.RunSpec("l", "i3d", budget_scale=2.5)
    half = heads_runs.RunSpec("h", "aia", heads_runs.FEATURES, features_from="l", budget_scale=0.5)
    assert heads_runs.run_steps(e2e, "bench") == 600
    assert heads_runs.run_steps(long, "bench") == 1500
    assert heads_runs.run_steps(half, "bench") == 1500  # 3000 x 0.5
    assert heads_runs.run_steps(long, "tiny") == 25
    assert (
        heads_runs.run_steps(heads_runs.RunSpec("t", "aia", budget_scale=0.01), "tiny") == 1
    )  # at least one step


def _result(name, head, mode, ctx, lt, gt_lt=None, **kw):
    return dict(
        name=name,
        head=head,
        mode=mode,
        steps=10,
        status="ok",
        note="",
        frame_map=0.5,
        gt_box_map=0.75,
        by_evidence={"self": 0.1, "context": ctx, "temporal": 0.3, "long_term": lt},
        gt_by_evidence={"context": ctx + 0.1, "long_term": gt_lt},
        per_category={"pose": 0.25, "object": None},
        head_params=1500,
        trainable_params=2_500_000,
        step_time_s=0.25,
        train_seconds=12.0,
        inference_kf_s=7.5,
        **kw,
    )


def test_checks_compare_evidence_aps():
    results = [
        _result("tx", "tx", "end_to_end", 0.6, 0.2, gt_lt=0.5),
        _result("i3d", "i3d", "end_to_end", 0.4, 0.3, gt_lt=0.25),
    ]
    checks = heads_table.evaluate_checks(
        results,
        [
            ("tx", "i3d", "context", "issue 6"),
            ("tx", "i3d", "long_term", "issue 9"),
            ("aia", "i3d", "context", "issue 8"),
        ],
    )
    assert [(c["a"], c["b"], c["holds"]) for c in checks] == [
        (0.6, 0.4, True),
        (0.2, 0.3, False),
        (None, 0.4, None),
    ]
    # On ground-truth boxes the long_term verdict flips (the detections' recall differed).
    assert [(c["gt_a"], c["gt_b"], c["gt_holds"]) for c in checks] == [
        (pytest.approx(0.7), pytest.approx(0.5), True),
        (0.5, 0.25, True),
        (None, pytest.approx(0.5), None),
    ]


def test_markdown_and_json_of_hand_made_results():
    results = [
        _result(
            "tx",
            "tx",
            "end_to_end",
            0.6,
            0.2,
        ),
        dict(
            name="stage",
            head="stage",
            mode="features",
            steps=10,
            status="not run: head 'stage' not in action_tx.heads.HEADS yet",
            note="graph attention",
        ),
    ]
    checks = heads_table.evaluate_checks(results, [("stage", "tx", "context", "issue 7")])
    machine = dict(
        cpu="Test CPU",
        cores=2,
        load_average_start=[1.0, 2.0, 3.0],
        load_average=[4.0, 5.0, 6.0],
        python="3.11",
    )
    commands = [
        dict(
            stage="train tx", command="python tools/train.py --head=tx", seconds=12.0, status="ok"
        ),
        dict(
            stage="eval tx", command="python tools/eval.py", seconds=None, status="skipped (exists)"
        ),
    ]
    kwargs = dict(
        preset="tiny",
        quick=True,
        budgets={"end_to_end": 10, "features": 20},
        machine=machine,
        commands=commands,
        checks=checks,
        seconds=99.4,
    )
    md = heads_table.to_markdown(results, **kwargs)
    lines = md.splitlines()
    assert lines[0] == "# Head comparison (tiny preset, quick)"
    assert "end to end 10 steps, frozen features 20 steps (except stage 10)." in lines[2]
    same = [dict(results[1], steps=20)]
    assert "20 steps. Frame" in heads_table.to_markdown(same, **kwargs).splitlines()[2]
    assert "--quick checks that every stage of every run works" in lines[2]
    assert "--quick" not in heads_table.to_markdown(results, **dict(kwargs, quick=False))
    header, rule = lines[4], lines[5]
    assert header.count("|") == rule.count("|") == 17  # 16 columns
    assert (
        "| tx | tx | end to end | 10 | 0.500 | 0.750 | 0.100 | 0.600 | 0.300 | 0.200 | "
        "1.5k | 2.50M | 250 | 12 | 7.5 | ok |"
    ) in lines
    assert (
        "| stage | stage | frozen features | 10 | n/a | n/a | n/a | n/a | n/a | n/a | n/a | "
        "n/a | n/a | n/a | n/a | not run: head 'stage' not in action_tx.heads.HEADS yet |"
    ) in lines
    assert "| run | pose | object |" in lines
    assert "| tx | 0.250 | n/a |" in lines and "| stage | n/a | n/a |" in lines
    assert "- `stage`: graph attention" in lines
    assert "| stage > tx | context | n/a | 0.600 | n/a | n/a | 0.700 | n/a | issue 7 |" in lines
    assert any(
        line.startswith("Machine: Test CPU, 2 logical cores")
        and "1.0, 2.0, 3.0" in line
        and "4.0, 5.0, 6.0" in line
        for line in lines
    )
    assert "python tools/train.py --head=tx   # 12.0 s" in lines
    assert "python tools/eval.py   # skipped (exists)" in lines
    data = json.loads(heads_table.to_json(results, **kwargs))
    assert data["runs"] == results and data["checks"] == checks
    assert data["budgets"] == {"end_to_end": 10, "features": 20} and data["seconds"] == 99.4
    assert data["commands"] == commands and data["machine"]["cpu"] == "Test CPU"


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


def _eval_json(directory, step, mAP, seconds=4.0):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"ckpt-{step}_results.json"), "w") as f:
        json.dump(
            {
                "mAP@0.5IOU": mAP,
                "per_category": {"pose": 0.5},
                "by_evidence": {"context": {"mAP": 0.25}, "long_term": {"mAP": None}},
                "seconds": seconds,
            },
            f,
        )


def test_eval_results_and_summary(tmp_path):
    _eval_json(str(tmp_path), 5, 0.1)
    _eval_json(str(tmp_path), 12, 0.3)
    assert heads_metrics.eval_results(str(tmp_path))["mAP@0.5IOU"] == 0.3  # newest
    assert heads_metrics.eval_results(str(tmp_path), 5)["mAP@0.5IOU"] == 0.1
    assert heads_metrics.eval_results(str(tmp_path), 7) is None
    summary = heads_metrics.summarize_eval(heads_metrics.eval_results(str(tmp_path)), 20)
    assert summary == dict(
        frame_map=0.3,
        per_category={"pose": 0.5},
        by_evidence={"context": 0.25, "long_term": None},
        inference_kf_s=5.0,
    )


class _NoRun(runner.StageLog):
    """Records skips; fails the test if anything would run."""

    def run(self, stage, call, fn, *args, **kwargs):
        raise AssertionError(f"{stage} ran although its output exists")


def test_run_one_skips_what_exists_and_collects_figures(tmp_path):
    paths = heads.Paths(str(tmp_path), "tiny")
    spec = heads_runs.RunSpec("lin", "linear")
    run_dir = paths.run_dir(spec.name)
    os.makedirs(run_dir)
    _write_checkpoint(os.path.join(run_dir, "ckpt-10"))
    _write_steps(os.path.join(run_dir, "train"), [(5, 1.0), (10, 8.0)])
    _eval_json(os.path.join(run_dir, "eval"), 10, 0.4, seconds=2.0)
    _eval_json(os.path.join(run_dir, "eval_gt_boxes"), 10, 0.6)
    runner = _NoRun()
    result = heads.run_one(spec, runner, paths, "tiny", 10, {"linear"}, 8, set(), set())
    assert result["status"] == "ok"
    assert (result["frame_map"], result["gt_box_map"]) == (0.4, 0.6)
    assert result["gt_by_evidence"] == {"context": 0.25, "long_term": None}
    assert (result["head_params"], result["trainable_params"]) == (15, 27)
    assert result["step_time_s"] == pytest.approx(0.5)  # batch 4 of bench.flags at 8/s
    assert result["inference_kf_s"] == pytest.approx(4.0)
    assert [c["stage"] for c in runner.commands] == ["train lin", "eval lin", "eval gt boxes lin"]
    assert all(c["status"].startswith("skipped") for c in runner.commands)
    assert "model.proposals='gt'" in runner.commands[2]["command"]
    # A missing head or a dependency without result is listed, not run.
    missing = heads.run_one(
        heads_runs.RunSpec("s", "stage", heads_runs.FEATURES, features_from="lin"),
        runner,
        paths,
        "tiny",
        10,
        {"linear"},
        8,
        {"lin"},
        set(),
    )
    assert missing["status"].startswith("not run: head 'stage'")
    orphan = heads.run_one(
        heads_runs.RunSpec("t", "linear", heads_runs.FEATURES, features_from="gone"),
        runner,
        paths,
        "tiny",
        10,
        {"linear"},
        8,
        set(),
        set(),
    )
    assert orphan["status"].startswith("not run")


def test_config_of_a_feature_run(tmp_path):
    paths = heads.Paths(str(tmp_path), "tiny")
    spec = heads_runs.RunSpec(
        "hg", "hgrnn", heads_runs.FEATURES, {"head.window": 0}, features_from="i3d"
    )
    config = heads.run_config(spec, paths, "tiny", 30)
    assert config.data.input == "features" and config.train.train_steps == 30
    assert config.data.feature_dir == paths.feature_dir("i3d", "train")
    assert config.data.eval_feature_dir == paths.feature_dir("i3d", "val")
    assert config.model.head_options.window == 0  # the run's own override
    assert config.model.head_options.hidden_size == 256  # the head's default otherwise
    assert config.train.batch_size == 4  # BASE (configs/bench.flags)
    assert config.data.image_size == 64  # the tiny preset wins over BASE's 112
    assert config.train.model_dir == paths.run_dir("hg")
    gt = C.with_overrides(config, heads_runs.GT_BOX_OVERRIDES[spec.mode])
    assert gt.data.eval_actors == "gt" and gt.model.proposals == "rpn"
    assert gt.model == config.model  # the same model scored
