"""The perf suite's whole-detector efficiency: a quick run on the CPU and its run list."""

import json
import os

import pytest

from action_tx.bench import efficiency, efficiency_runs, runner, stages


def test_quick_run_counts_flops_and_splits_the_step():
    suite = efficiency.run_suite(
        runs=["tiny_aia"], precisions=["float32"], device="cpu", quick=True, rounds=2
    )
    assert suite["device"] == "cpu" and suite["device_name"].startswith("CPU ")
    assert suite["jit_compile"] is False
    (r,) = suite["results"]
    assert r["run"] == "tiny_aia" and r["precision"] == "float32"
    # Conv3D forward + its two gradients dominate and are all counted; the clip's own
    # gradient (the first conv's input gradient) is never computed, so not counted.
    by_type = r["flops"]["by_op_type"]
    assert by_type["Conv3DBackpropFilterV2"] == by_type["Conv3D"] > 0
    stem = 2 * 7**3 * 3 * 16 * (1 * 2 * 32 * 32)  # Conv3d_1a_7x7, 16 filters, stride 2
    assert by_type["Conv3D"] - by_type["Conv3DBackpropInputV2"] == stem
    conv3d = sum(by_type[k] for k in ("Conv3D", "Conv3DBackpropInputV2", "Conv3DBackpropFilterV2"))
    assert r["step_flops"] > conv3d > 0.9 * r["step_flops"]
    assert r["step_flops"] > r["stage_flops"]["trunk"] > 0
    assert r["matmul_dtype"] == "float32" and r["matmul_flop_per_s"] > 0
    assert 0 < r["fraction_of_matmul"] <= 1.5
    shares = r["stage_shares"]
    assert set(shares) == {*stages.STAGES, "other", "losses_and_optimizer"}
    assert all(shares[s] > 0 for s in stages.STAGES)
    assert sum(shares[s] for s in (*stages.STAGES, "other")) == pytest.approx(1.0)
    assert shares["losses_and_optimizer"] == shares["losses"] + shares["optimizer"]
    assert r["compute_dtype_flop_share"] == pytest.approx(1.0, abs=0.01)  # float32 run
    assert r["non_trunk_share"] == pytest.approx(1.0 - shares["trunk"])
    json.dumps(suite)  # the report is JSON
    md = efficiency.to_markdown(suite)
    assert "| tiny_aia | float32 |" in md and suite["device_name"] in md


def _flagfile_values(path: str) -> dict:
    """flag name -> value string of a flagfile's `--name=value` lines."""
    with open(path) as f:
        return dict(
            line.strip()[2:].split("=", 1)
            for line in f
            if line.strip().startswith("--") and "=" in line
        )


def test_demo_run_is_configs_demo_flags():
    f = _flagfile_values(os.path.join(runner.ROOT, "configs", "demo.flags"))
    run = efficiency_runs.DEMO
    m, d, t = run["model"], run["data"], run["train"]
    assert (m["trunk"], m["head"], m["proposals"]) == (f["trunk"], f["head"], f["proposals"])
    assert m["anchor_sizes"] == tuple(int(s) for s in f["anchor_sizes"].split(","))
    for key in ("rpn_filters", "post_nms_top_k", "num_roi_samples"):
        assert m[key] == int(f[key])
    for key in ("batch_size", "num_frames", "image_size", "max_boxes"):
        assert d[key] == int(f[key])
    assert t["optimizer"] == f["optimizer"] and t["clip_norm"] == float(f["clip_norm"])


def test_runs_are_found_by_name():
    assert [r["name"] for r in efficiency_runs.find(None)] == [
        "demo",
        "tx_paper_224",
        "tx_paper_400",
        "aia_paper",
    ]
    assert efficiency_runs.find(None, quick=True) == efficiency_runs.QUICK_RUNS
    assert efficiency_runs.find(["tx_paper_400"])[0]["data"]["image_size"] == 400
    with pytest.raises(ValueError, match="unknown perf runs"):
        efficiency_runs.find(["nope"])
    with pytest.raises(ValueError, match="device must be"):
        efficiency.resolve_device("tpu")


def test_batch_matches_its_sizes():
    data = efficiency_runs.AIA_PAPER["data"]
    batch = efficiency_runs.make_batch(dict(data, num_frames=2, image_size=8))
    assert batch["clip"].shape == (1, 2, 8, 8, 3)
    assert batch["box_mask"].sum() == data["persons"]
    assert batch["objects"].shape == (1, 16, 4) and batch["keyframe_index"][0] < 211000
    assert (batch["labels"].sum(-1) > 0).sum() == data["persons"]


def test_a_function_xla_cannot_compile_runs_without_it():
    import tensorflow as tf

    words = tf.constant(["ab", "c"])

    def make(jit):  # XLA has no string kernels
        return tf.function(
            lambda: tf.cast(tf.reduce_sum(tf.strings.length(words)), tf.float32), jit_compile=jit
        )

    notes = {}
    fn = efficiency._first_call(make, True, "strings", notes)
    assert float(fn().numpy()) == 3.0
    assert notes["strings"].startswith("XLA failed, ran without: ")
    notes = {}
    efficiency._first_call(make, False, "strings", notes)
    assert notes == {}
