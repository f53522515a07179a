"""ActionDetector recipes of issue 27 item 5: given boxes are never suppressed, and ACAR's
second stage trains on labelled actor boxes only."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from action_tx.detector import ActionDetector
from action_tx.heads.linear import LinearHead
from action_tx.trunks.i3d import make_trunk
from object_detection_ext.proposer import Proposer

CLASSES = 2
# Two people side by side, overlapping with IoU 0.8 / 1.2 = 0.667 > the NMS IoU 0.6.
A, B = (0.1, 0.1, 0.9, 0.5), (0.1, 0.18, 0.9, 0.58)


def _batch():
    rng = np.random.default_rng(0)
    return {
        "clip": tf.constant(rng.uniform(-1, 1, (1, 8, 64, 64, 3)), tf.float32),
        "boxes": tf.constant([[A, B]], tf.float32),
        "box_mask": tf.ones([1, 2], tf.bool),
        "labels": tf.constant([[[1.0, 0.0], [0.0, 1.0]]]),
        "proposals": tf.constant([[A, B, (0.0, 0.7, 0.3, 1.0)]], tf.float32),
        "proposal_scores": tf.constant([[0.9, 0.8, 0.7]]),
        "proposal_mask": tf.ones([1, 3], tf.bool),
    }


def _detector(mode, **kwargs):
    keras.utils.set_random_seed(0)
    return ActionDetector(
        trunk=make_trunk("i3d_tiny", freeze_bn=True),
        proposer=Proposer(mode=mode),
        head=LinearHead(CLASSES),
        num_classes=CLASSES,
        num_roi_samples=16,
        max_detections=5,
        nms_iou=0.6,
        seed=0,
        **kwargs,
    )


@pytest.mark.parametrize("mode,count", [("gt", 2), ("external", 3)])
def test_given_boxes_are_not_suppressed(mode, count):
    out = _detector(mode)(_batch(), training=False)
    assert int(out["num_detections"][0]) == count
    kept = {tuple(np.round(b, 4)) for b in out["detection_boxes"].numpy()[0, :count]}
    assert {tuple(np.round(np.float32(b), 4)) for b in (A, B)} <= kept


@pytest.mark.parametrize("class_specific", [False, True])
def test_ground_truth_bound_keeps_every_person(class_specific):
    out = _detector("gt", class_specific_nms=class_specific)(_batch(), training=False)
    assert int(out["num_detections"][0]) == 2
    # Each person keeps every class score (nothing suppressed per class either).
    assert np.all(out["action_scores"].numpy()[0, :2] > 0)


def test_labelled_actor_boxes_only():
    batch = _batch()
    out = _detector("external", background_rois=False)(batch, training=True)
    mask = out["roi_mask"].numpy()[0]
    # The proposals on the two people and the two added ground-truth boxes; the third
    # proposal (no person) is not trained on.
    assert mask.sum() == 4
    assert np.all(out["roi_labels"].numpy()[0][mask].sum(-1) == 1)
    assert "roi_actor_targets" not in out
    with_background = _detector("external")(batch, training=True)
    assert with_background["roi_mask"].numpy()[0].sum() == 5
