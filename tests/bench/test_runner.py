"""The suites' stage log: a stage is a library call in this process, printed, timed and
recorded; a failing call fails its stage only (StageError), and each stage starts from a
fresh Keras state."""

import keras
import numpy as np
import pytest

from action_tx.bench import runner


def test_stages_are_recorded_and_a_failure_is_a_stage_error(capsys):
    log = runner.StageLog()
    seconds, value = log.run("add", runner.call_text("add", 2, b=3), lambda a, b: a + b, 2, b=3)
    assert value == 5 and seconds >= 0
    log.skip("data", "synthetic.generate('d')", reason="d exists")

    def fail():
        raise ValueError("bad shard")

    with pytest.raises(runner.StageError, match="broken: ValueError: bad shard"):
        log.run("broken", "fail()", fail)
    assert [(c["stage"], c["command"], c["status"]) for c in log.commands] == [
        ("add", "add(2, b=3)", "ok"),
        ("data", "synthetic.generate('d')", "skipped (d exists)"),
        ("broken", "fail()", "failed: ValueError: bad shard"),
    ]
    assert log.commands[1]["seconds"] is None
    out = capsys.readouterr()
    assert "=== add\n$ add(2, b=3)\n--- add: " in out.out
    assert "=== data: skipped (d exists)" in out.out
    assert "--- broken: " in out.out and "(failed: ValueError: bad shard)" in out.out
    assert "Traceback" in out.err  # the failure's traceback, as a process would print it


def test_each_stage_starts_from_a_fresh_keras_state():
    def layer_name_and_draw():
        keras.mixed_precision.set_global_policy("mixed_bfloat16")  # left behind by a stage
        return keras.layers.Dense(2).name, np.random.uniform(size=3)

    log = runner.StageLog(seed=3)
    _, (name_a, draw_a) = log.run("a", "a()", layer_name_and_draw)
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    _, (name_b, draw_b) = log.run("b", "b()", layer_name_and_draw)
    # Layer names restart (no "dense_1"), the policy is float32 again, the seeds are reset.
    assert name_a == name_b == "dense"
    np.testing.assert_array_equal(draw_a, draw_b)
    runner.fresh_state()
    assert keras.mixed_precision.global_policy().name == "float32"
