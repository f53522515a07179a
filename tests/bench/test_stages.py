"""The perf suite's stage split of a train step: the stages composed give the detector's own
training forward pass (so timing them alone times the same work)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from action_tx.bench import efficiency_runs, stages
from action_tx.config import ModelConfig
from action_tx.model_builder import build_detector
from action_tx.optimization import build_optimizer


def _tiny(name, **head_options):
    run = next(r for r in efficiency_runs.QUICK_RUNS if r["name"] == name)
    model = dict(run["model"])
    model["head_options"] = dict(model.get("head_options") or {}, dropout=0.0, **head_options)
    keras.utils.set_random_seed(0)
    detector = build_detector(ModelConfig(**model), num_classes=run["data"]["num_classes"])
    batch = {k: tf.constant(v) for k, v in efficiency_runs.make_batch(run["data"]).items()}
    detector(batch, training=False)
    return detector, batch


@pytest.mark.parametrize("name", ["tiny_tx", "tiny_aia"])
def test_staged_forward_equals_the_detector(name):
    detector, batch = _tiny(name)
    state = detector.seed_generator.state.numpy()
    expected = detector(batch, training=True)
    detector.seed_generator.state.assign(state)  # the same RoI / anchor samples
    parts = stages.staged_forward(detector, batch)
    got = parts["outputs"]
    assert sorted(got) == sorted(expected)
    for key in ("rois", "roi_mask", "roi_labels", "logits"):
        np.testing.assert_allclose(got[key].numpy(), expected[key].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        detector.compute_losses(got)["total_loss"].numpy(),
        detector.compute_losses(expected)["total_loss"].numpy(),
        rtol=1e-5,
    )


def test_stage_functions_run_forward_and_backward():
    detector, batch = _tiny("tiny_tx")
    parts = stages.staged_forward(detector, batch)
    variables = detector.trainable_variables
    with tf.GradientTape() as tape:
        loss = detector.compute_losses(detector(batch, training=True))["total_loss"]
    grads = tape.gradient(loss, variables)
    opt = build_optimizer(optimizer="sgd", learning_rate=0.0)
    opt.build(variables)
    fns = stages.stage_functions(detector, opt, batch, parts, grads, clip_norm=10.0)
    assert tuple(fns) == stages.STAGES
    values = {name: float(fn().numpy()) for name, fn in fns.items()}
    assert all(np.isfinite(v) for v in values.values())
    # A backward reached the features: the trunk's sum of gradients is not zero.
    assert values["trunk"] != 0.0 and values["head"] != 0.0
    assert values["losses"] > 0.0  # the loss itself is part of it
