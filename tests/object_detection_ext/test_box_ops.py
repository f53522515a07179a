import numpy as np
import pytest

from object_detection_ext import box_ops


def test_pairwise_iou_known_values_and_padding(run):
    a = np.array([[[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 1.0, 1.0], [0.2, 0.2, 0.4, 0.4]]], np.float32)
    b = np.array([[[0.0, 0.25, 0.5, 0.75], [0.9, 0.9, 0.9, 0.9]]], np.float32)
    iou = run(
        box_ops.pairwise_iou, a, b, np.array([[True, True, False]]), np.array([[True, False]])
    )
    # [0,0,.5,.5] vs [0,.25,.5,.75]: inter .5*.25=.125, union .25+.25-.125=.375 -> 1/3.
    # [0,0,1,1] vs it: inter .25, union 1 -> .25.  Padding row / column -> -1.
    np.testing.assert_allclose(iou, [[[1 / 3, -1], [0.25, -1], [-1, -1]]], rtol=1e-6)


def test_pairwise_iou_boxes_outside_image_are_not_padding(run):
    a = np.array([[[-2.0, -2.0, -1.0, -1.0], [-1.0, -1.0, 1.0, 1.0]]], np.float32)
    b = np.array([[[-2.0, -2.0, -1.0, -1.0]]], np.float32)
    np.testing.assert_allclose(run(box_ops.pairwise_iou, a, b), [[[1.0], [0.0]]])


def test_pairwise_iou_in_pixels_for_non_square_image(run):
    a = np.array([[[0.0, 0.0, 0.5, 1.0]]], np.float32)
    b = np.array([[[0.0, 0.0, 1.0, 0.5]]], np.float32)
    # Overlap is a quarter of the image and each box half, whatever the image shape: 1/3.
    np.testing.assert_allclose(
        run(box_ops.pairwise_iou, a, b, image_size=(100, 300)), [[[1 / 3]]], rtol=1e-5
    )


def test_inside_box_mask_known_pixels(run):
    # 4 x 8 image: pixel centres y in {.125, .375, .625, .875}, x in {.0625, .1875, ...}.
    boxes = np.array([[[0.0, 0.0, 0.5, 0.25], [0.3, 0.6, 1.0, 1.0]]], np.float32)
    mask = run(box_ops.inside_box_mask, boxes, height=4, width=8)
    assert mask.shape == (1, 2, 4, 8) and mask.dtype == bool
    first = np.zeros((4, 8), bool)
    first[:2, :2] = True  # rows .125, .375 <= .5; columns .0625, .1875 <= .25
    second = np.zeros((4, 8), bool)
    second[1:, 5:] = True  # rows from .375 >= .3; columns from .6875 >= .6
    np.testing.assert_array_equal(mask[0, 0], first)
    np.testing.assert_array_equal(mask[0, 1], second)


def test_encode_known_deltas_and_round_trip(run):
    ref = np.array([[0.0, 0.0, 0.2, 0.4]], np.float32)  # centre (.1, .2), h .2, w .4
    box = np.array([[0.1, 0.1, 0.3, 0.9]], np.float32)  # centre (.2, .5), h .2, w .8
    # dy = .1/.2 = .5, dx = .3/.4 = .75, dh = log 1 = 0, dw = log 2; weights 10, 10, 5, 5.
    enc = run(box_ops.encode_boxes, box, ref)
    np.testing.assert_allclose(enc, [[5.0, 7.5, 0.0, 5 * np.log(2.0)]], rtol=1e-5, atol=1e-6)
    enc1 = run(box_ops.encode_boxes, box, ref, weights=box_ops.RPN_WEIGHTS)
    np.testing.assert_allclose(enc1, [[0.5, 0.75, 0.0, np.log(2.0)]], rtol=1e-5, atol=1e-6)
    dec = run(box_ops.decode_boxes, enc, ref)
    np.testing.assert_allclose(dec, box, atol=1e-6)


def test_clip_area_and_conversions(run):
    boxes = np.array([[-0.1, 0.2, 1.3, 0.6]], np.float32)
    np.testing.assert_allclose(run(box_ops.clip_boxes, boxes), [[0.0, 0.2, 1.0, 0.6]])
    np.testing.assert_allclose(
        run(box_ops.box_area, np.array([[0.1, 0.1, 0.3, 0.6]], np.float32)), [0.1], rtol=1e-5
    )
    pix = run(
        box_ops.to_absolute, np.array([[0.5, 0.25, 1.0, 0.5]], np.float32), image_size=(200, 400)
    )
    np.testing.assert_allclose(pix, [[100, 100, 200, 200]])
    np.testing.assert_allclose(
        run(box_ops.to_normalized, pix, image_size=(200, 400)), [[0.5, 0.25, 1.0, 0.5]]
    )


def test_jitter_is_seeded_keeps_padding_and_stays_close(run):
    boxes = np.array([[[0.2, 0.2, 0.6, 0.5], [0.0, 0.0, 0.0, 0.0]]], np.float32)
    mask = np.array([[True, False]])
    a = run(box_ops.jitter_boxes, boxes, np.array([1, 2]), mask, noise_scale=0.05)
    b = run(box_ops.jitter_boxes, boxes, np.array([1, 2]), mask, noise_scale=0.05)
    c = run(box_ops.jitter_boxes, boxes, np.array([1, 3]), mask, noise_scale=0.05)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[0, 0], c[0, 0])
    np.testing.assert_array_equal(a[0, 1], 0.0)
    assert np.abs(a[0, 0] - boxes[0, 0]).max() < 0.15  # 0.05 x box size x a few sigma


def test_batched_nms_suppresses_overlap_and_ignores_padding(run):
    boxes = np.array(
        [
            [[0, 0, 0.5, 0.5], [0, 0, 0.5, 0.45], [0.5, 0.5, 1, 1], [0.6, 0.6, 1, 1]],
            [[0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
        ],
        np.float32,
    )
    scores = np.array([[0.9, 0.95, 0.99, 0.5], [0.3, 0, 0, 0]], np.float32)
    mask = np.array([[True, True, False, True], [True, False, False, False]])
    idx, valid = run(box_ops.batched_nms, boxes, scores, mask, max_output_size=3, iou_threshold=0.5)
    # Image 0: box 1 (0.95) suppresses box 0 (IoU 0.9); box 2 is padding; box 3 kept.
    np.testing.assert_array_equal(idx, [[1, 3, 0], [0, 0, 0]])
    np.testing.assert_array_equal(valid, [[True, True, False], [True, False, False]])


def test_bad_box_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="last dimension must be 4"):
        box_ops.pairwise_iou(np.zeros([1, 2, 3], np.float32), np.zeros([1, 2, 4], np.float32))
