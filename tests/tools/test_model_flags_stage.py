"""tools/model_flags.py maps the --stage_* flags onto the stage head, in both modes."""

from action_tx.data.ava import LabelMap
from action_tx.heads.stage import StageHead

LABELS = LabelMap(ids=(1, 4, 9), names={1: "a", 4: "b", 9: "c"})
KEYS = (
    "num_classes",
    "num_heads",
    "num_layers",
    "dropout",
    "temporal_extent",
    "use_proximity",
    "use_objects",
    "attention",
)


def test_stage_flags_build_the_head_and_pool_objects(model_flags):
    model_flags.FLAGS(
        [
            "prog",
            "--head=stage",
            "--stage_heads=2",
            "--stage_layers=3",
            "--stage_dropout=0.2",
            "--stage_temporal_extent=0",
            "--stage_proximity=false",
            "--stage_attention=transformer",
            "--proposals=gt",
        ]
    )
    detector = model_flags.build_detector_from_flags(LABELS)
    assert isinstance(detector.head, StageHead)
    config = detector.head.get_config()
    assert {k: config[k] for k in KEYS} == dict(
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
    model_flags.FLAGS(["prog", "--head=stage", "--stage_objects=false", "--input=features"])
    model = model_flags.build_model_from_flags(LABELS)
    config = model.head.get_config()
    assert {k: config[k] for k in KEYS} == dict(
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
    model_flags.FLAGS(["prog", "--head=stage", "--stage_objects=false", "--proposals=gt"])
    assert model_flags.build_detector_from_flags(LABELS).use_objects is False
