"""tools/model_flags.py maps the --hgrnn_* flags and --class_specific_nms onto the detector."""
from action_tx.data.ava import LabelMap
from action_tx.heads.hgrnn import HGRNNHead


def test_hgrnn_flags_build_the_head_and_class_specific_nms(model_flags):
    model_flags.FLAGS(["prog", "--head=hgrnn", "--hgrnn_window=1", "--hgrnn_iterations=3",
                       "--hgrnn_hidden=8", "--head_dropout=0.1", "--class_specific_nms",
                       "--proposals=gt"])
    detector = model_flags.build_detector_from_flags(LabelMap(ids=(1, 4), names={1: "a", 4: "b"}))
    assert isinstance(detector.head, HGRNNHead)
    config = detector.head.get_config()
    assert {k: config[k] for k in ("num_classes", "window", "iterations", "hidden_size",
                                   "dropout")} == {"num_classes": 2, "window": 1,
                                                   "iterations": 3, "hidden_size": 8,
                                                   "dropout": 0.1}
    assert detector.class_specific_nms is True
