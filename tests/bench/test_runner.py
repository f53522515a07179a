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


def test_a_stage_without_keras_is_seeded_but_keeps_the_keras_state():
    """keras_state=False (data, conversion, matching): the seeds are set again, nothing of
    Keras is cleared, so no garbage collection is paid for."""

    def draw():
        return keras.layers.Dense(2).name, np.random.uniform(size=3)

    log = runner.StageLog(seed=4)
    _, (name_a, draw_a) = log.run("a", "a()", draw)
    _, (name_b, draw_b) = log.run("b", "b()", draw, keras_state=False)
    assert (name_a, name_b) == ("dense", "dense_1")  # not cleared: the counter goes on
    np.testing.assert_array_equal(draw_a, draw_b)  # seeded all the same


def test_a_stage_records_what_went_before_it_and_its_garbage_collection():
    import gc
    import time

    def make_cycles():
        for _ in range(200000):
            a = []
            a.append(a)  # garbage only the collector frees
        gc.collect()

    log = runner.StageLog()
    time.sleep(0.2)  # between the log's start and the first stage: counted in between_s
    log.run("cycles", "make_cycles()", make_cycles)
    log.run("nothing", "nothing()", lambda: None, keras_state=False)
    first, second = log.commands
    assert first["between_s"] >= 0.2 + first["setup_s"] - 0.01
    assert first["gc_s"] > 0 and second["gc_s"] == 0
    assert second["setup_s"] < first["setup_s"] + 0.5
    # The collection before a Keras stage leaves its survivors out of later scans.
    assert gc.get_freeze_count() > 0


def test_a_full_garbage_collection_every_few_keras_stages(monkeypatch):
    calls = []
    monkeypatch.setattr(
        runner,
        "fresh_state",
        lambda seed, keras_state, full_collection: calls.append((keras_state, full_collection)),
    )
    log = runner.StageLog()
    log.FULL_COLLECTION_EVERY = 2
    for keras_state in (True, False, True, True, False, True):
        log.run("s", "s()", lambda: None, keras_state=keras_state)
    assert calls == [
        (True, True),
        (False, False),
        (True, False),
        (True, True),
        (False, False),
        (True, False),
    ]


def test_the_young_collection_frees_what_the_last_stage_left():
    import gc
    import weakref

    class Node:
        pass

    runner.fresh_state()  # a full collection; its survivors frozen
    node = Node()
    node.self = node  # a cycle: only the collector frees it
    alive = weakref.ref(node)
    del node
    runner.fresh_state(full_collection=False)
    assert alive() is None
    kept = Node()
    kept.self = kept
    runner.fresh_state(full_collection=False)  # `kept` survives: frozen from now on
    alive = weakref.ref(kept)
    del kept
    runner.fresh_state(full_collection=False)
    assert alive() is not None  # out of the young scans
    runner.fresh_state()  # the full one frees it
    assert alive() is None
    assert gc.get_freeze_count() > 0
