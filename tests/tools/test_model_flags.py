"""tools/model_flags.py: the one mapping of flags onto ExperimentConfig; every flagfile of
configs/ loads into a validated config; config.json and a legacy model_flags.json load back."""

import dataclasses
import json
import pathlib

import pytest

from action_tx import config as C
from action_tx.data.ava import LabelMap
from action_tx.heads.hgrnn import HGRNNHead
from action_tx.heads.stage import StageHead
from action_tx.model_builder import build_detector
from action_tx.tasks import make_task

REPO = pathlib.Path(__file__).resolve().parents[2]
LABELS = LabelMap(ids=(1, 4, 9), names={1: "a", 4: "b", 9: "c"})
STAGE_KEYS = (
    "num_classes",
    "num_heads",
    "num_layers",
    "dropout",
    "temporal_extent",
    "use_proximity",
    "use_objects",
    "attention",
)


def _parse(model_flags, *args):
    model_flags.FLAGS(["prog", *args])
    return model_flags.experiment_config()


def test_stage_flags_build_the_head_and_pool_objects(model_flags):
    config = _parse(
        model_flags,
        "--head=stage",
        "--stage_heads=2",
        "--stage_layers=3",
        "--stage_dropout=0.2",
        "--stage_temporal_extent=0",
        "--stage_proximity=false",
        "--stage_attention=transformer",
        "--proposals=gt",
    )
    detector = build_detector(config, label_map=LABELS)
    assert isinstance(detector.head, StageHead)
    got = detector.head.get_config()
    assert {k: got[k] for k in STAGE_KEYS} == dict(
        num_classes=3,
        num_heads=2,
        num_layers=3,
        dropout=0.2,
        temporal_extent=0,
        use_proximity=False,
        use_objects=True,
        attention="transformer",
    )
    assert detector.use_objects is True  # object tubes reach the head end to end


def test_stage_defaults_are_the_papers_and_objects_can_be_dropped(model_flags):
    config = _parse(model_flags, "--head=stage", "--stage_objects=false", "--input=features")
    model = make_task(config, label_map=LABELS).build_model()
    got = model.head.get_config()
    assert {k: got[k] for k in STAGE_KEYS} == dict(
        num_classes=3,
        num_heads=4,
        num_layers=2,
        dropout=0.5,
        temporal_extent=1,
        use_proximity=True,
        use_objects=False,
        attention="graph",
    )
    model_flags.FLAGS.unparse_flags()
    config = _parse(model_flags, "--head=stage", "--stage_objects=false", "--proposals=gt")
    assert build_detector(config, label_map=LABELS).use_objects is False


def test_hgrnn_flags_and_head_dropout_win(model_flags):
    config = _parse(
        model_flags,
        "--head=hgrnn",
        "--hgrnn_window=1",
        "--hgrnn_iterations=3",
        "--hgrnn_hidden=8",
        "--head_dropout=0.1",
        "--class_specific_nms",
        "--proposals=gt",
    )
    detector = build_detector(config, label_map=LabelMap(ids=(1, 4), names={1: "a", 4: "b"}))
    assert isinstance(detector.head, HGRNNHead)
    got = detector.head.get_config()
    assert {
        k: got[k] for k in ("num_classes", "window", "iterations", "hidden_size", "dropout")
    } == {"num_classes": 2, "window": 1, "iterations": 3, "hidden_size": 8, "dropout": 0.1}
    assert detector.class_specific_nms is True


def test_consecutive_keyframes_and_trunk_endpoint_flags(model_flags):
    labels = LabelMap(ids=(1, 4), names={1: "a", 4: "b"})
    config = _parse(
        model_flags,
        "--head=hgrnn",
        "--consecutive_keyframes",
        "--context_keyframes=3",
        "--trunk_endpoint=Mixed_5c",
        "--batch_size=2",
    )
    task = make_task(config, label_map=labels)
    kwargs = task.dataset_kwargs(training=True)
    assert (kwargs["consecutive"], kwargs["context"]) == (True, 3)
    assert task.global_batch_size == 2 + 2 * 3
    trunk = task.build_model().trunk
    assert (trunk.final_endpoint, trunk.pool_5a_spatial_stride) == ("Mixed_5c", 1)
    model_flags.FLAGS.unparse_flags()
    config = _parse(model_flags, "--context_keyframes=3")  # feature-mode context only
    task = make_task(config, label_map=labels)
    kwargs = task.dataset_kwargs(training=True)
    assert (kwargs["consecutive"], kwargs["context"]) == (False, 0)
    assert task.global_batch_size == config.train.batch_size


@pytest.mark.parametrize("flagfile", sorted(p.name for p in (REPO / "configs").glob("*.flags")))
def test_every_flagfile_is_a_valid_config(model_flags, flagfile):
    lines = (REPO / "configs" / flagfile).read_text().splitlines()
    # A flagfile may leave the AIA memory size to the command line (its header says so).
    extra = (
        ["--aia_memory_size=100"]
        if "--head=aia" in lines and not any(line.startswith("--aia_memory_size") for line in lines)
        else []
    )
    config = _parse(model_flags, f"--flagfile={REPO / 'configs' / flagfile}", *extra)
    config.check_train()
    head = model_flags.FLAGS.head
    assert config.model.head == head
    assert config.train.model_dir == model_flags.FLAGS.model_dir
    assert config.train.batch_size == model_flags.FLAGS.batch_size
    # every head flag the file sets reached the head's options
    for flag, field in type(config.model.head_options).flag_names.items():
        if model_flags.FLAGS[flag].present and flag != "aia_memory_size":
            want = model_flags.FLAGS[flag].value
            want = tuple(want) if isinstance(want, list) else want
            assert getattr(config.model.head_options, field) == want, flag
    assert C.ExperimentConfig.from_json(json.loads(json.dumps(config.to_json()))) == config


def test_config_json_loads_back_and_command_line_wins(model_flags, tmp_path):
    config = _parse(
        model_flags,
        "--head=tx",
        "--tx_layers=1",
        "--image_size=64",
        "--label_map=labels.txt",
        f"--model_dir={tmp_path}",
    )
    C.save(config, str(tmp_path))
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["version"] == C.VERSION and saved["model"]["head_options"]["num_layers"] == 1
    model_flags.FLAGS.unparse_flags()
    model_flags.FLAGS(["prog", "--proposals=gt"])
    loaded = model_flags.config_for_model_dir(str(tmp_path))
    assert loaded.model == dataclasses.replace(config.model, proposals="gt")
    assert loaded.data == config.data


def test_legacy_model_flags_json_is_the_same_config(model_flags, tmp_path):
    """A model_dir of the code before config.json: model_flags.json (every model/data flag,
    as the trainer wrote it) reads as the config those flags give today."""
    legacy = {
        "trunk": "i3d_tiny",
        "width_multiplier": None,
        "freeze_bn": True,
        "head": "acar",
        "proposals": "external",
        "anchor_sizes": ["16", "32"],
        "rpn_filters": 64,
        "post_nms_top_k": 50,
        "num_roi_samples": 32,
        "pose_softmax": False,
        "focal_gamma": 0.0,
        "head_dropout": None,
        "tx_heads": 2,
        "tx_layers": 3,
        "tx_hidden": 128,
        "tx_query": "highres",
        "max_detections": 100,
        "class_specific_nms": False,
        "acar_blocks": 1,
        "acar_dim": 64,
        "acar_relation": "hr2o",
        "acfb_bank_dir": None,
        "eval_acfb_bank_dir": None,
        "acfb_window": 2,
        "aia_blocks": ["P", "O", "M", "P", "O", "M"],
        "aia_memory_size": 0,
        "box_jitter": 0.05,
        "seed": 3,
        "label_map": "l.txt",
        "num_frames": 8,
        "frame_stride": 2,
        "image_size": 112,
        "max_boxes": 8,
        "max_proposals": 4,
        "max_objects": 16,
        "input": "frames",
        "feature_dir": None,
        "eval_feature_dir": None,
        "train_actors": "both",
        "eval_actors": "detected",
        "context_keyframes": 0,
    }
    (tmp_path / "model_flags.json").write_text(json.dumps(legacy))
    loaded = model_flags.model_dir_config(str(tmp_path))
    assert loaded.model.head_options == C.ModelConfig(head="acar").head_options.__class__(
        num_blocks=1, hidden_size=64, bank_window=2
    )  # the old flag default, as recorded
    assert loaded.model.anchor_sizes == (16.0, 32.0) and loaded.model.seed == 3
    assert loaded.data.max_proposals == 4 and loaded.data.label_map == "l.txt"
    from action_tx import checkpointing  # resuming compares it like any config.json

    C.save(loaded, str(tmp_path))
    (tmp_path / "ckpt-1.index").write_bytes(b"")  # a run with a checkpoint to protect
    checkpointing.check_model_config(str(tmp_path), loaded)
    other = dataclasses.replace(loaded, model=dataclasses.replace(loaded.model, seed=4))
    with pytest.raises(
        checkpointing.CheckpointError, match=r"model\.seed: 3 in config.json, now 4"
    ):
        checkpointing.check_model_config(str(tmp_path), other)


def test_cross_field_rules_name_the_problem():
    with pytest.raises(C.ConfigError, match="memory size"):
        C.ExperimentConfig(model=C.ModelConfig(head="aia"))
    with pytest.raises(C.ConfigError, match="strategy=one_device"):
        C.ExperimentConfig(
            data=C.DataConfig(input="features"), train=C.TrainConfig(strategy="mirrored")
        )
    with pytest.raises(C.ConfigError, match="needs feature_dir"):
        C.ExperimentConfig(
            data=C.DataConfig(input="features", label_map="l"), train=C.TrainConfig(model_dir="m")
        ).check_train()
    with pytest.raises(C.ConfigError, match="max_proposals"):
        C.ExperimentConfig(
            model=C.ModelConfig(proposals="external"), data=C.DataConfig(max_proposals=0)
        )
    with pytest.raises(C.ConfigError, match="unknown head 'nope'.*linear"):
        C.ModelConfig(head="nope")
