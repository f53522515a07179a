import numpy as np
import pytest
import tensorflow as tf

from action_tx.trunks import i3d_checkpoint as ckpt
from action_tx.trunks.i3d import InceptionI3D

INDEXES = {400: "rgb_imagenet.model.ckpt", 600: "rgb_scratch_kin600.model.ckpt"}


def _index_variables(shared_data, num_classes):
    # list_variables reads the .index alone: the data files are not needed.
    return tf.train.list_variables(str(shared_data / "i3d_checkpoint_index" / INDEXES[num_classes]))


@pytest.fixture(scope="module")
def full_model():
    model = InceptionI3D(final_endpoint="Logits")
    model.build((1, 64, 224, 224, 3))
    return model


@pytest.mark.parametrize("num_classes", [400, 600])
def test_every_release_variable_maps_to_one_weight(shared_data, num_classes):
    variables = _index_variables(shared_data, num_classes)
    model = InceptionI3D(final_endpoint="Logits", num_classes=num_classes)
    pairs, report = ckpt.match_checkpoint(model, variables, num_classes=num_classes)
    ours = model.release_variables()
    model_vars = [(n, s) for n, s in variables if not n.endswith("/Momentum")]
    assert len(model_vars) == len(ours) == 230 and len(pairs) == 230 and not report.problems
    targets = [id(v) for _, v in pairs]
    assert len(set(targets)) == 230  # one-to-one
    shapes = dict(variables)
    for name, var in pairs:  # same shape, up to the kin600 BatchNorm's leading [1, 1, 1, 1]
        assert np.prod(shapes[name]) == np.prod(var.shape)
        assert [d for d in shapes[name] if d != 1] == [d for d in var.shape if d != 1]
    # What is not loaded is the training's momentum of a loaded variable, nothing else.
    loaded = set(report.loaded)
    assert all(n[: -len("/Momentum")] in loaded for n in report.optimizer_state)
    # kin600 keeps the momentum of every trainable variable: 57 kernels + 57 betas + logits w, b.
    assert len(report.optimizer_state) == (0 if num_classes == 400 else 116)


def test_trunk_cut_skips_the_tail_and_logits(shared_data):
    trunk = InceptionI3D()  # Mixed_4f
    pairs, report = ckpt.match_checkpoint(trunk, _index_variables(shared_data, 400), 400)
    assert len(pairs) == 45 * 4
    assert sorted({n.split("/")[2] for n in report.beyond_model}) == [
        "Logits",
        "Mixed_5b",
        "Mixed_5c",
    ]
    assert len(report.beyond_model) == 2 * 6 * 4 + 2


def test_mismatches_fail_loudly_listing_every_problem(shared_data):
    variables = _index_variables(shared_data, 400)
    with pytest.raises(ckpt.CheckpointMismatchError, match="400 classes, expected num_classes=600"):
        ckpt.match_checkpoint(
            InceptionI3D(final_endpoint="Logits", num_classes=600), variables, num_classes=600
        )
    with pytest.raises(ckpt.CheckpointMismatchError, match=r"180 problems") as err:
        ckpt.match_checkpoint(InceptionI3D(width_multiplier=0.5), variables, 400)
    assert (
        "Mixed_4f/Branch_1/Conv3d_0b_3x3/conv_3d/w: shape [3, 3, 3, 160, 320] but ours is "
        "[3, 3, 3, 80, 160]" in str(err.value)
    )
    extra = variables + [
        ("RGB/inception_i3d/Mixed_4f/Branch_4/Conv3d_0a_1x1/conv_3d/w", [1]),
        ("RGB/inception_i3d/Mixed_9z/w", [1]),
    ]
    missing = [v for v in extra if not v[0].endswith("Mixed_3b/Branch_0/Conv3d_0a_1x1/conv_3d/w")]
    with pytest.raises(ckpt.CheckpointMismatchError, match="3 problems") as err:
        ckpt.match_checkpoint(InceptionI3D(), missing, 400, source="x.ckpt")
    message = str(err.value)
    assert message.startswith("x.ckpt does not match InceptionI3D(Conv3d_1a_7x7..Mixed_4f")
    for text in (
        "Branch_4/Conv3d_0a_1x1/conv_3d/w: no such variable in our Mixed_4f",
        "Mixed_9z/w: not an Inception-I3D variable",
        "Mixed_3b/Branch_0/Conv3d_0a_1x1/conv_3d/w: missing from the checkpoint",
    ):
        assert text in message
    _, report = ckpt.match_checkpoint(InceptionI3D(), missing, 400, strict=False)
    assert len(report.problems) == 3 and len(report.loaded) == 45 * 4 - 1


@pytest.mark.parametrize("num_classes", [400, 600])
def test_fake_release_checkpoint_loads_values(shared_data, tmp_path, full_model, num_classes):
    variables = _index_variables(shared_data, num_classes)
    rng = np.random.default_rng(num_classes)
    values = {n: rng.normal(size=s).astype("float32") for n, s in variables}
    prefix = ckpt.write_checkpoint(str(tmp_path / "model.ckpt"), values)
    assert sorted(tf.train.list_variables(prefix)) == sorted(variables)
    model = InceptionI3D(final_endpoint="Logits", num_classes=num_classes)
    report = ckpt.load_kinetics_checkpoint(model, prefix, num_classes=num_classes)
    assert len(report.loaded) == 230
    ours = model.release_variables()
    for name in report.loaded:
        np.testing.assert_array_equal(
            ours[ckpt.release_key(name)].numpy(),
            values[name].reshape(ours[ckpt.release_key(name)].shape),
        )


def test_save_and_restore_into_trunk_and_tail(tmp_path, full_model):
    rng = np.random.default_rng(1)
    for var in full_model.release_variables().values():
        var.assign(rng.normal(size=var.shape).astype("float32"))
    prefix = ckpt.save_trunk(full_model, str(tmp_path / "out" / "i3d"))
    trunk = InceptionI3D()
    tail = InceptionI3D(first_endpoint="MaxPool3d_5a_2x2", final_endpoint="Mixed_5c")
    assert len(ckpt.restore_trunk(trunk, prefix).loaded) == 45 * 4
    assert len(ckpt.restore_trunk(tail, prefix).loaded) == 12 * 4
    full = full_model.release_variables()
    for part in (trunk, tail):
        for key, var in part.release_variables().items():
            np.testing.assert_array_equal(var.numpy(), full[key].numpy())


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.ckpt: not a readable TF checkpoint"):
        ckpt.restore_trunk(InceptionI3D(), str(tmp_path / "nope.ckpt"))
