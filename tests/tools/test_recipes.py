"""The papers' recipes in the flag defaults and configs/ (issue 27 items 5 and 7)."""

import inspect
import pathlib

from action_tx.data import pipeline
from action_tx.data.ava import LabelMap
from action_tx.heads.acar import ACARHeadConfig
from action_tx.tasks import make_task

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"
LABELS = LabelMap(ids=(1, 4), names={1: "a", 4: "b"})


def _flag_value(path, name, default):
    """The value a flagfile gives --name (its last occurrence), else `default`."""
    value = default
    for line in path.read_text().splitlines():
        line = line.strip()
        if line == f"--{name}":
            value = True
        elif line == f"--no{name}":
            value = False
        elif line.startswith(f"--{name}="):
            value = line.split("=", 1)[1]
    return value


def _model(model_flags, *args):
    """The model the flags `args` describe (end to end, or on features), for LABELS."""
    model_flags.FLAGS(["prog", *args])
    return make_task(model_flags.experiment_config(), label_map=LABELS).build_model()


def test_box_jitter_is_off_unless_the_paper_jitters(model_flags):
    assert model_flags.FLAGS["box_jitter"].default == 0.0
    assert inspect.signature(pipeline.build_dataset).parameters["box_jitter"].default == 0.0
    jittered = {
        path.name
        for path in CONFIGS.glob("*.flags")
        if float(_flag_value(path, "box_jitter", 0.0)) > 0
    }
    # AIA §4.1 jitters its ground-truth boxes (its UCF101-24 config keeps its AVA settings,
    # AIA §5); the demo keeps the 0.05 it was measured with.
    assert jittered == {"ava_aia.flags", "ucf24_aia.flags", "demo.flags"}


def test_acfb_window_is_the_papers(model_flags):
    # ACAR-Net §4.2: window 2w + 1 = 21 s.
    assert ACARHeadConfig().bank_window == 10  # the --acfb_window default
    detector = _model(model_flags, "--head=acar", "--acar_dim=8", "--proposals=gt")
    assert detector.head.bank_window == 10


def test_acar_trains_on_labelled_actor_boxes_only(model_flags):
    assert (
        _model(model_flags, "--head=acar", "--acar_dim=8", "--proposals=external").background_rois
        is False
    )
    model_flags.FLAGS.unparse_flags()
    assert (
        _model(model_flags, "--head=tx", "--tx_hidden=8", "--proposals=external").background_rois
        is True
    )
    model_flags.FLAGS.unparse_flags()
    assert (
        _model(
            model_flags, "--head=acar", "--acar_dim=8", "--proposals=external", "--background_rois"
        ).background_rois
        is True
    )


def test_hgrnn_config_uses_focal_loss_and_class_specific_nms():
    # HGRNN §3.3: "focal loss [29] with gamma = 2" and "class specific non-maximum suppression";
    # both are off by default, so the paper's config must turn them on.
    path = CONFIGS / "ava_hgrnn.flags"
    assert float(_flag_value(path, "focal_gamma", 0.0)) == 2.0
    assert _flag_value(path, "class_specific_nms", False) is True


def test_eval_actors_gt_builds_a_feature_model_without_nms(model_flags):
    assert _model(model_flags, "--input=features", "--head=linear", "--eval_actors=gt").nms is False
    model_flags.FLAGS.unparse_flags()
    assert _model(model_flags, "--input=features", "--head=linear").nms is True
