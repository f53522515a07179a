"""action_tx.config: the library without tools/ (the README's Python snippet), the head config
classes (one set of defaults), validation and config.json."""

import dataclasses
import inspect

import numpy as np
import pytest

from action_tx import config as C
from action_tx.heads import HEADS
from action_tx.heads.action_transformer import ActionTransformerConfig, ActionTransformerHead
from action_tx.model_builder import build_detector


def test_readme_snippet_builds_and_runs_a_detector(tmp_path):
    (tmp_path / "labels.txt").write_text("1: bend/bow\n12: stand\n80: watch (a person)\n")
    config = C.ExperimentConfig(
        model=C.ModelConfig(
            head="tx",
            trunk="i3d_tiny",
            proposals="gt",
            pose_softmax=True,
            head_options=ActionTransformerConfig(num_layers=1, hidden_size=16),
        ),
        data=C.DataConfig(label_map=str(tmp_path / "labels.txt"), num_frames=8, image_size=64),
    )
    detector = build_detector(config)
    assert isinstance(detector.head, ActionTransformerHead)
    assert detector.head.num_layers == 1 and detector.head.num_classes == 3
    assert detector.pose_indices == [0, 1]  # AVA ids 1 and 12 are pose classes
    import tensorflow as tf

    batch = {
        "clip": tf.random.stateless_uniform([1, 8, 64, 64, 3], [1, 2]),
        "boxes": tf.constant([[[0.1, 0.1, 0.6, 0.5], [0.3, 0.5, 0.9, 0.9]]]),
        "box_mask": tf.ones([1, 2], tf.bool),
    }
    out = detector(batch, training=False)
    scores = out["action_scores"].numpy()
    assert scores.shape[-1] == 3 and np.all((scores >= 0) & (scores <= 1))
    assert int(out["num_detections"][0]) == 2  # the two ground-truth boxes


@pytest.mark.parametrize("name", sorted(HEADS))
def test_head_config_defaults_are_the_heads(name):
    """The head's keyword defaults equal its config's: the paper's values, one set of them."""
    head_class, config_class = HEADS[name]
    signature = inspect.signature(head_class.__init__).parameters
    for field in dataclasses.fields(config_class):
        if field.name not in signature:  # e.g. ACAR's bank folders: read for the head
            assert name == "acar" and field.name.endswith("bank_dir"), (name, field.name)
            continue
        default = signature[field.name].default
        default = tuple(default) if isinstance(default, list) else default
        assert default == field.default, (name, field.name)


def test_i3d_tail_heads_take_the_trunks_width_and_bn():
    detector = build_detector(
        num_classes=2, head="i3d", trunk="i3d_tiny", freeze_bn=True, proposals="gt"
    )
    assert detector.head.width_multiplier == detector.trunk.width_multiplier == 0.25
    assert detector.head.freeze_bn is True


def test_config_json_round_trip_and_validation(tmp_path):
    config = C.ExperimentConfig(
        model=C.ModelConfig(head="aia", head_options={"blocks": "P,M", "memory_size": 7}),
        data=C.DataConfig(label_map="l.txt"),
        train=C.TrainConfig(model_dir=str(tmp_path)),
    )
    assert config.model.head_options.blocks == ("P", "M")
    assert config.model.uses_objects is False  # no O-block: no object tubes
    C.save(config, str(tmp_path))
    assert C.load(str(tmp_path)) == config
    (tmp_path / "config.json").write_text('{"version": 99, "model": {}}')
    with pytest.raises(C.ConfigError, match="newer"):
        C.load(str(tmp_path))
    with pytest.raises(C.ConfigError, match="unknown option.*nope"):
        C.ModelConfig(head="tx", head_options={"nope": 1})
    with pytest.raises(C.ConfigError, match="takes ActionTransformerConfig"):
        C.ModelConfig(head="tx", head_options=HEADS["linear"][1]())
    with pytest.raises(C.ConfigError, match="pose_softmax needs the label map"):
        build_detector(num_classes=3, pose_softmax=True)


def test_with_overrides_replaces_fields_and_validates():
    base = C.ExperimentConfig(model=C.ModelConfig(head="tx", head_options={"num_layers": 2}))
    same_head = C.with_overrides(base, {"head.hidden_size": 64, "train.batch_size": 8})
    assert same_head.model.head_options.num_layers == 2  # kept: the head did not change
    assert same_head.model.head_options.hidden_size == 64 and same_head.train.batch_size == 8
    assert base.train.batch_size == 2  # the original is unchanged (frozen)
    other = C.with_overrides(base, {"model.head": "hgrnn", "head.window": 0})
    assert other.model.head_options == HEADS["hgrnn"][1](window=0)  # that head's defaults
    aia = C.with_overrides(
        base,
        {"model.head": "aia", "head.blocks": ["P", "M"]},
        resolve=lambda m, d: dataclasses.replace(m, head_options=m.head_options.with_keyframes(9)),
    )
    assert aia.model.head_options.blocks == ("P", "M") and aia.model.head_options.memory_size == 9
    with pytest.raises(C.ConfigError, match="expected SECTION.FIELD"):
        C.with_overrides(base, {"batch_size": 8})
    with pytest.raises(C.ConfigError, match="unknown train field"):
        C.with_overrides(base, {"train.batchsize": 8})
    with pytest.raises(C.ConfigError, match="input=features trains with strategy=one_device"):
        C.with_overrides(base, {"data.input": "features", "train.strategy": "mirrored"})
