"""Mixed precision (action_tx.precision): every head trains end to end under mixed_bfloat16 and
mixed_float16 with finite, falling loss (on a one-conv trunk: the I3D graph's tracing would
dominate; the I3D trunk itself trains under both policies, resumes, in its own test); on stored
features; the trunk's bfloat16 Conv3D filter-gradient workaround; loss scaling; export; policy
handling. Tiny widths, one in-memory dataset shared by all runs."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from action_tx import precision, train_lib
from action_tx.model_builder import build_detector
from action_tx.trunks.unit3d import Unit3D, bfloat16_conv3d_unsafe, float16_conv3d_on_cpu

CLASSES, FRAMES, SIZE, PEOPLE = 3, 8, 32, 2
MIXED = ("mixed_bfloat16", "mixed_float16")
# Small options per head (paper defaults are far wider); memory heads get the dataset's size.
HEAD_OPTIONS = {
    "linear": {},
    "i3d": dict(dropout=0.0),  # width and frozen BN: the detector's trunk's (build_detector)
    "tx": dict(
        num_heads=2,
        num_layers=1,
        hidden_size=16,
        dropout=0.0,
        location_embedding_size=8,
        highres_reduced_channels=16,
        ffn_hidden=32,
    ),
    "tx_i3d": dict(
        i3d_dropout=0.0,
        num_heads=2,
        num_layers=1,
        hidden_size=16,
        dropout=0.0,
        location_embedding_size=8,
        highres_reduced_channels=16,
        ffn_hidden=32,
    ),
    "acar": dict(num_blocks=1, hidden_size=16, dropout=0.0, block_dropout=0.0),
    "aia": dict(
        blocks=("P", "O", "M"), memory_window=1, memory_size=4, hidden_size=16, dropout=0.0
    ),
    "stage": dict(num_heads=2, num_layers=1, dropout=0.0),
    "hgrnn": dict(window=1, iterations=1, hidden_size=16),
}


def _data():
    """4 clips of 2 coloured people on noise; a person's colour gives its actions."""
    rng = np.random.default_rng(0)
    n = 4
    clip = rng.uniform(-0.2, 0.2, (n, FRAMES, SIZE, SIZE, 3)).astype(np.float32)
    boxes = np.array([[0.1, 0.05, 0.85, 0.45], [0.2, 0.55, 0.95, 0.95]], np.float32)
    labels = np.zeros((n, PEOPLE, CLASSES), np.float32)
    for b in range(n):
        for p in range(PEOPLE):
            colour = (b + p) % CLASSES
            y1, x1, y2, x2 = (int(round(v * SIZE)) for v in boxes[p])
            clip[b, :, y1:y2, x1:x2] = -1.0
            clip[b, :, y1:y2, x1:x2, colour] = 1.0
            labels[b, p, colour] = 1.0
    objects = np.tile(np.array([[0.4, 0.4, 0.6, 0.6]], np.float32), (n, 1, 1))
    return {
        "clip": clip,
        "boxes": np.tile(boxes, (n, 1, 1)),
        "box_mask": np.ones((n, PEOPLE), bool),
        "labels": labels,
        "person_ids": np.tile(np.arange(PEOPLE, dtype=np.int32), (n, 1)),
        "objects": objects,
        "object_mask": np.ones((n, 1), bool),
        "object_scores": np.ones((n, 1), np.float32),
        "object_classes": np.ones((n, 1), np.int32),
        "video_id": np.array([b"v0"] * n),
        "video_index": np.zeros(n, np.int32),
        "timestamp": np.arange(n, dtype=np.int32),
        "keyframe_index": np.arange(n, dtype=np.int32),
    }


DATA = _data()


def dataset():
    return tf.data.Dataset.from_tensor_slices(DATA).repeat().batch(2, drop_remainder=True)


def detector(head, proposals="gt", i3d=True):
    """Tiny detector; `i3d=False`: the trunk is one strided Conv3D ([B, 8, 32, 32, 3] ->
    [B, 2, 4, 4, 24], the I3D cut's strides)."""
    det = build_detector(
        num_classes=CLASSES,
        trunk="i3d_tiny",
        width_multiplier=0.125,
        freeze_bn=True,
        head=head,
        head_options=HEAD_OPTIONS[head],
        proposals=proposals,
        anchor_sizes=(8.0, 16.0),
        rpn_filters=8,
        post_nms_top_k=8,
        num_roi_samples=4,
        use_objects=head in ("aia", "stage"),
        seed=1,
    )
    if not i3d:
        det.trunk = Unit3D(
            24, (4, 8, 8), strides=(4, 8, 8), use_batch_norm=False, name="conv_trunk"
        )
    return det


def run(tmp_path, head, policy, steps=6, proposals="gt", i3d=False, **kwargs):
    return train_lib.train(
        model_fn=lambda: detector(head, proposals, i3d),
        dataset_fn=dataset,
        model_dir=str(tmp_path / f"{head}_{policy}"),
        train_steps=steps,
        global_batch_size=2,
        optimizer="adamw",
        learning_rate=3e-3,
        warmup_steps=0,
        clip_norm=10.0,
        checkpoint_every=100,
        log_every=100,
        progress=False,
        seed=0,
        precision=policy,
        **kwargs,
    )


def _check_learns(result, policy):
    losses = [h["total_loss"] for h in result["history"]]
    assert all(math.isfinite(v) for v in losses), losses
    assert np.mean(losses[-2:]) < np.mean(losses[:2]), losses
    compute = result["model"].head.compute_dtype
    assert compute == {"mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}[policy]
    assert all(
        v.dtype == "float32" for v in result["model"].trainable_variables if "seed" not in v.path
    )


@pytest.mark.parametrize("policy", MIXED)
@pytest.mark.parametrize("head", sorted(HEAD_OPTIONS))
def test_every_head_trains_under_mixed_precision(tmp_path, head, policy):
    result = run(tmp_path, head, policy)
    _check_learns(result, policy)
    # The policy is set for the run only.
    assert keras.mixed_precision.global_policy().name == "float32"


@pytest.mark.parametrize("policy", MIXED)
def test_i3d_rpn_detector_trains_and_resumes(tmp_path, policy):
    # The demo configuration's shape of the failure: I3D, RPN proposals, T'=2 at Mixed_4.
    first = run(tmp_path, "tx", policy, steps=3, proposals="rpn", i3d=True)
    assert first["model"].trunk.compute_dtype == policy[len("mixed_") :]
    for h in first["history"]:
        assert all(math.isfinite(v) for k, v in h.items() if k != "grad_norm"), h
    if policy == "mixed_bfloat16":
        assert all(math.isfinite(h["grad_norm"]) for h in first["history"])
    resumed = run(tmp_path, "tx", policy, steps=4, proposals="rpn", i3d=True)
    assert resumed["step"] == 4 and len(resumed["history"]) == 1
    if policy == "mixed_float16":
        # The loss scale is checkpointed: the resumed run starts from the saved scale.
        assert resumed["history"][0]["loss_scale"] <= first["history"][-1]["loss_scale"] * 2


def test_float16_scales_the_loss_and_skips_overflowing_steps(tmp_path):
    result = run(tmp_path, "linear", "mixed_float16", steps=4)
    opt = result["optimizer"]
    assert isinstance(opt, keras.optimizers.LossScaleOptimizer)
    scales = [h["loss_scale"] for h in result["history"]]
    # Dynamic: starts at 2^15, halves on each overflowing step (grad_norm inf, step skipped).
    for h, s in zip(result["history"], scales):
        assert math.log2(s) == int(math.log2(s)) and s <= 2.0**15
    skipped = [not math.isfinite(h["grad_norm"]) for h in result["history"]]
    applied = len(skipped) - sum(skipped)
    assert int(opt.iterations.numpy()) == applied


def test_bfloat16_conv3d_filter_gradient_workaround():
    # TF 2.20 oneDNN: bfloat16 Conv3DBackpropFilter is wrong when 1 < T < kt. The rule and
    # the unit that follows it: its filter gradient equals float32's within bfloat16 rounding.
    assert bfloat16_conv3d_unsafe("bfloat16", 2, 3)
    assert not bfloat16_conv3d_unsafe("bfloat16", 1, 3)
    assert not bfloat16_conv3d_unsafe("bfloat16", 3, 3)
    assert not bfloat16_conv3d_unsafe("float16", 2, 3)
    assert not bfloat16_conv3d_unsafe("bfloat16", None, 3)
    assert float16_conv3d_on_cpu("float16") == (not tf.config.list_logical_devices("GPU"))
    assert not float16_conv3d_on_cpu("bfloat16")
    # bfloat16-exact input: the unit's autocast then changes nothing, and float32 kernels
    # (the workaround) agree with float32 to float32 rounding.
    x = tf.cast(
        tf.cast(tf.random.stateless_normal([2, 2, 6, 6, 4], seed=[1, 2]), tf.bfloat16), tf.float32
    )
    grads = {}
    for policy in ("float32", "mixed_bfloat16"):
        with precision.policy(policy):
            keras.utils.set_random_seed(3)
            unit = Unit3D(8, (3, 3, 3), use_batch_norm=False, activation=None)
            unit.build(x.shape)
        with tf.GradientTape() as tape:
            y = tf.cast(unit(x), tf.float32)
            loss = tf.reduce_sum(y * tf.linspace(-1.0, 1.0, 8))
        grads[policy] = tape.gradient(loss, unit.conv.kernel).numpy()
    assert unit.conv.compute_dtype == "float32"
    np.testing.assert_allclose(grads["mixed_bfloat16"], grads["float32"], rtol=0, atol=1e-4)


def test_policy_scope_and_bad_name():
    with precision.policy("mixed_bfloat16"):
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"
    with pytest.raises(ValueError, match="mixed_bfloat16"):
        precision.check("bfloat16")


def test_bfloat16_export_keeps_float32_io_and_equals_keras(tmp_path):
    from action_tx.export import boxes_twin, export_saved_model, preprocess_clip

    with precision.policy("mixed_bfloat16"):
        det = detector("tx", proposals="rpn", i3d=False)
        clip = np.random.default_rng(0).integers(0, 256, (FRAMES, 40, 48, 3), dtype=np.uint8)
        batch = {"clip": preprocess_clip(clip, num_frames=FRAMES, image_size=SIZE)}
        det(batch, training=False)
        boxes = DATA["boxes"][0]
        want = boxes_twin(det)(
            dict(
                batch,
                proposals=tf.constant(boxes[None]),
                proposal_scores=tf.ones([1, PEOPLE]),
                proposal_mask=tf.ones([1, PEOPLE], tf.bool),
            ),
            training=False,
        )
        export_saved_model(
            det,
            str(tmp_path / "sm"),
            num_frames=FRAMES,
            image_size=SIZE,
            class_ids=[1, 2, 3],
            class_names=["a", "b", "c"],
        )
    assert det.trunk.compute_dtype == "bfloat16"
    fn = tf.saved_model.load(str(tmp_path / "sm")).signatures["with_boxes"]
    specs = fn.structured_input_signature[1]
    assert (specs["clip"].dtype, specs["person_boxes"].dtype) == (tf.uint8, tf.float32)
    got = fn(clip=tf.constant(clip), person_boxes=tf.constant(boxes))
    assert {k: v.dtype for k, v in got.items()} == {
        "detection_boxes": tf.float32,
        "detection_scores": tf.float32,
        "action_scores": tf.float32,
        "num_detections": tf.int32,
        "attention": tf.float32,
    }
    n = int(got["num_detections"])
    assert n == int(want["num_detections"][0]) == PEOPLE
    order = lambda s: np.argsort(-np.asarray(s)[:n], kind="stable")  # noqa: E731
    for key in ("detection_boxes", "detection_scores", "action_scores"):
        g = got[key].numpy()[:n][order(got["detection_scores"])]
        w = tf.cast(want[key][0], tf.float32).numpy()[:n][order(want["detection_scores"][0])]
        np.testing.assert_allclose(g, w, atol=1e-2)


@pytest.fixture(scope="module")
def feature_dir(tmp_path_factory):
    """Stored features of 8 keyframes (3 x 3 context maps, 16 channels); a person's class is
    readable from its feature."""
    from action_tx.data import features

    rng = np.random.default_rng(5)
    c = 16
    keyframes = []
    for t in range(8):
        label = t % CLASSES
        feat = rng.normal(0, 0.1, (1, c)).astype(np.float32)
        feat[0, label] += 2.0
        person = dict(
            boxes=np.array([[0.1, 0.1, 0.6, 0.5]]), labels=np.eye(CLASSES)[[label]], features=feat
        )
        keyframes.append(
            dict(
                video_id="v",
                video_index=0,
                timestamp=t,
                keyframe_index=t,
                context=rng.normal(0, 0.1, (3, 3, c)),
                scene=np.zeros(c),
                gt=dict(person, person_ids=[0]),
                det=dict(person, scores=[0.9]),
                obj=dict(
                    boxes=np.zeros((0, 4)),
                    classes=np.zeros(0),
                    scores=np.zeros(0),
                    features=np.zeros((0, c)),
                ),
            )
        )
    directory = str(tmp_path_factory.mktemp("features"))
    features.write_feature_dir(directory, keyframes, num_classes=CLASSES)
    return directory


@pytest.mark.parametrize("policy", MIXED)
@pytest.mark.parametrize("head", ["linear", "tx"])
def test_heads_train_on_stored_features(tmp_path, feature_dir, head, policy):
    from action_tx.data import feature_dataset
    from action_tx.feature_model import FeatureActionModel
    from action_tx.heads import HEADS

    result = train_lib.train(
        model_fn=lambda: FeatureActionModel(
            HEADS[head][0](num_classes=CLASSES, **HEAD_OPTIONS[head]), CLASSES
        ),
        dataset_fn=lambda: feature_dataset.build_feature_dataset(
            feature_dir, num_classes=CLASSES, batch_size=2, training=True, seed=0, actors="gt"
        ),
        model_dir=str(tmp_path / "m"),
        train_steps=8,
        global_batch_size=2,
        optimizer="adamw",
        learning_rate=1e-2,
        warmup_steps=0,
        checkpoint_every=100,
        log_every=100,
        progress=False,
        seed=0,
        precision=policy,
    )
    _check_learns(result, policy)
