import numpy as np
import pytest
import tensorflow as tf

from object_detection_ext import rpn
from object_detection_ext.rpn_head import RPNHead

# 2x2 feature map of a 32x32 image, one 16-pixel square anchor per cell: the four quadrants.
QUADRANTS = np.array(
    [[0, 0, 0.5, 0.5], [0, 0.5, 0.5, 1], [0.5, 0, 1, 0.5], [0.5, 0.5, 1, 1]], np.float32
)


def test_anchors_for_2x2_map():
    anchors = rpn.generate_anchors((2, 2), stride=16, sizes=(16.0,), aspect_ratios=(1.0,))
    np.testing.assert_allclose(anchors.numpy(), QUADRANTS, atol=1e-6)


def test_anchor_order_and_aspect_ratio():
    anchors = rpn.generate_anchors(
        (2, 3), stride=16, sizes=(16.0, 32.0), aspect_ratios=(0.25, 1.0)
    ).numpy()
    assert anchors.shape == (2 * 3 * 4, 4) and rpn.num_anchors_per_location((1, 2), (1, 2)) == 4
    size_px = (anchors[:, 2:] - anchors[:, :2]) * [32.0, 48.0]  # image 32 x 48 px
    # Cell 0: (size 16, w/h 1/4) -> h 32 w 8; (16, 1) -> 16x16; (32, 1/4) -> 64x16;
    # (32, 1) -> 32x32.
    np.testing.assert_allclose(size_px[:4], [[32, 8], [16, 16], [64, 16], [32, 32]], rtol=1e-5)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2 * [32.0, 48.0]
    # Row-major cells: cell 2 is (row 0, col 2), cell 4 is (row 1, col 1); 4 anchors per cell.
    np.testing.assert_allclose(centres[2 * 4], [8.0, 40.0], rtol=1e-5)
    np.testing.assert_allclose(centres[4 * 4], [24.0, 24.0], rtol=1e-5)


def test_rpn_targets_hand_made_case(run):
    gt = np.array(
        [
            [
                [0, 0, 0.5, 0.5],  # IoU 1 with anchor 0
                [0.5, 0.5, 1, 0.8],  # IoU .6 with anchor 3: ignored, but its best -> positive
                [0, 0.5, 0.5, 1],
            ]
        ],  # padding (equal to anchor 1): must be ignored
        np.float32,
    )
    mask = np.array([[True, True, False]])
    out = run(rpn.rpn_targets, QUADRANTS, gt, mask, seed=np.array([0, 0]))
    np.testing.assert_array_equal(out["labels"], [[1, 0, 0, 1]])
    np.testing.assert_array_equal(out["matched_gt"], [[0, -1, -1, 1]])
    # anchor 3 centre (.75, .75), h = w = .5; GT 1 centre (.75, .65), h .5, w .3.
    np.testing.assert_allclose(out["box_targets"][0, 3], [0, -0.2, 0, np.log(0.6)], atol=1e-5)
    np.testing.assert_allclose(out["box_targets"][0, :3], 0.0, atol=1e-6)


def test_rpn_targets_middle_iou_is_ignored_and_sampling_is_balanced(run):
    # Two GT, both exactly on anchors; a third anchor at IoU 0.5 with GT 0 is ignored (-1).
    anchors = np.array(
        [[0, 0, 0.5, 0.5], [0, 0.25, 0.5, 0.75], [0.5, 0.5, 1, 1], [0.5, 0, 1, 0.5]], np.float32
    )
    gt = np.array([[[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]]], np.float32)
    out = run(
        rpn.rpn_targets,
        anchors,
        gt,
        np.array([[True, True]]),
        seed=np.array([1, 2]),
        num_samples=2,
        positive_fraction=0.5,
    )
    labels = out["labels"][0]
    assert labels[1] == -1  # IoU 1/3 with GT 0: between 0.3 and 0.7
    assert sorted(labels[[0, 2]].tolist()) in ([-1, 1], [1, -1])  # only 1 positive of 2 samples
    assert labels[3] == 0  # the only negative fills the second slot
    again = run(
        rpn.rpn_targets,
        anchors,
        gt,
        np.array([[True, True]]),
        seed=np.array([1, 2]),
        num_samples=2,
        positive_fraction=0.5,
    )
    np.testing.assert_array_equal(again["labels"], out["labels"])


def test_rpn_losses_known_values(run):
    logits = np.array([[0.0, 0.0, 100.0]], np.float32)
    labels = np.array([[1, 0, -1]], np.int32)
    deltas = np.array([[[0.5, 0, 0, 0], [9, 9, 9, 9], [9, 9, 9, 9]]], np.float32)
    targets = np.zeros([1, 3, 4], np.float32)
    obj, box = run(rpn.rpn_losses, logits, deltas, labels, targets)
    np.testing.assert_allclose(obj, np.log(2.0), rtol=1e-6)  # ignored anchor does not count
    np.testing.assert_allclose(box, (0.5 - 0.5 / 9.0) / 2.0, rtol=1e-6)  # over 2 sampled anchors


def test_generate_proposals_decodes_clips_filters_and_nms(run):
    logits = np.array([[3.0, 2.0, 1.0, 0.0]], np.float32)
    deltas = np.zeros([1, 4, 4], np.float32)
    deltas[0, 1, 1] = -1.0  # anchor 1 moves one width left: duplicate of anchor 0
    deltas[0, 2, 3] = np.log(0.1)  # anchor 2 becomes 0.05 wide: below min_size
    deltas[0, 3, 2] = np.log(2.0)  # anchor 3 doubles in height: [.25, .5, 1.25, 1] -> clipped
    boxes, scores, mask = run(
        rpn.generate_proposals,
        logits,
        deltas,
        QUADRANTS,
        nms_iou=0.7,
        post_nms_top_k=3,
        min_size=0.1,
    )
    np.testing.assert_allclose(
        boxes[0], [[0, 0, 0.5, 0.5], [0.25, 0.5, 1, 1], [0, 0, 0, 0]], atol=1e-6
    )
    np.testing.assert_allclose(scores[0], [1 / (1 + np.exp(-3.0)), 0.5, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(mask[0], [True, True, False])


def test_rpn_head_output_order_matches_anchors_and_config_round_trip():
    head = RPNHead(num_anchors=3, filters=4)
    feats = tf.zeros([2, 2, 3, 5])
    head(feats)
    # Zero kernels, bias a for anchor type a: logits must read 0, 1, 2, 0, 1, 2, ... per cell.
    head.objectness.set_weights(
        [np.zeros([1, 1, 4, 3], np.float32), np.arange(3, dtype=np.float32)]
    )
    head.deltas.set_weights([np.zeros([1, 1, 4, 12], np.float32), np.arange(12, dtype=np.float32)])
    logits, deltas = head(feats)
    assert logits.shape == (2, 2 * 3 * 3) and deltas.shape == (2, 18, 4)
    np.testing.assert_array_equal(logits[1].numpy(), np.tile([0, 1, 2], 6))
    np.testing.assert_array_equal(deltas[0, 4].numpy(), [4, 5, 6, 7])  # anchor type 1 of cell 1
    clone = RPNHead.from_config(head.get_config())
    assert clone.get_config() == head.get_config()
    assert head.get_config()["num_anchors"] == 3 and head.get_config()["filters"] == 4


def test_generate_anchors_bad_stride():
    with pytest.raises(ValueError, match="power of 2"):
        rpn.generate_anchors((2, 2), stride=12)
