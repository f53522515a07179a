"""tools/model_flags.py maps the --hgrnn_* flags and --class_specific_nms onto the detector."""

from action_tx.data.ava import LabelMap
from action_tx.heads.hgrnn import HGRNNHead


def test_hgrnn_flags_build_the_head_and_class_specific_nms(model_flags):
    model_flags.FLAGS(
        [
            "prog",
            "--head=hgrnn",
            "--hgrnn_window=1",
            "--hgrnn_iterations=3",
            "--hgrnn_hidden=8",
            "--head_dropout=0.1",
            "--class_specific_nms",
            "--proposals=gt",
        ]
    )
    detector = model_flags.build_detector_from_flags(LabelMap(ids=(1, 4), names={1: "a", 4: "b"}))
    assert isinstance(detector.head, HGRNNHead)
    config = detector.head.get_config()
    assert {
        k: config[k] for k in ("num_classes", "window", "iterations", "hidden_size", "dropout")
    } == {"num_classes": 2, "window": 1, "iterations": 3, "hidden_size": 8, "dropout": 0.1}
    assert detector.class_specific_nms is True


def test_consecutive_keyframes_and_trunk_endpoint_flags(model_flags):
    labels = LabelMap(ids=(1, 4), names={1: "a", 4: "b"})
    model_flags.FLAGS(
        [
            "prog",
            "--head=hgrnn",
            "--consecutive_keyframes",
            "--context_keyframes=3",
            "--trunk_endpoint=Mixed_5c",
        ]
    )
    kwargs = model_flags.dataset_kwargs_from_flags(labels, training=True)
    assert (kwargs["consecutive"], kwargs["context"]) == (True, 3)
    trunk = model_flags.build_detector_from_flags(labels).trunk
    assert (trunk.final_endpoint, trunk.pool_5a_spatial_stride) == ("Mixed_5c", 1)
    model_flags.FLAGS.unparse_flags()
    model_flags.FLAGS(["prog", "--context_keyframes=3"])  # feature-mode context only
    kwargs = model_flags.dataset_kwargs_from_flags(labels, training=True)
    assert (kwargs["consecutive"], kwargs["context"]) == (False, 0)
