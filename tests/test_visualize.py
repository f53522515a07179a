"""action_tx.visualize: box outlines, label tags, heat-map overlays, checked pixel by pixel."""

import numpy as np
import pytest

from action_tx import visualize


def _frame(h=64, w=64, seed=0):
    # Values 0..99: never equal to a palette colour channel triple, so changes are visible.
    return np.random.default_rng(seed).integers(0, 100, size=(h, w, 3), dtype=np.uint8)


def _border_mask(h, w, top, left, bottom, right, t):
    mask = np.zeros((h, w), bool)
    mask[top : bottom + 1, left : right + 1] = True
    mask[top + t : bottom + 1 - t, left + t : right + 1 - t] = False
    return mask


@pytest.mark.parametrize("thickness", [1, 2])
def test_box_changes_exactly_its_border(thickness):
    frame = _frame()
    # [0.25, 0.125, 0.75, 0.5] on 64x64 -> rows 16..47, columns 8..31 (31 = 0.5 * 64 - 1).
    out = visualize.draw_detections(
        frame,
        [[0.25, 0.125, 0.75, 0.5]],
        [0.9],
        [[0.1, 0.8]],
        ["a", "b"],
        top_k=0,
        thickness=thickness,
    )
    expected = _border_mask(64, 64, 16, 8, 47, 31, thickness)
    changed = (out != frame).any(axis=-1)
    np.testing.assert_array_equal(changed, expected)
    assert (out[expected] == visualize.colour(0)).all()
    assert frame.sum() == _frame().sum()  # input untouched


def test_box_pixels_full_frame_and_clipping():
    assert visualize.box_to_pixels([0, 0, 1, 1], 10, 20) == (0, 0, 9, 19)
    assert visualize.box_to_pixels([-0.5, 0.5, 2.0, 0.52], 10, 20) == (0, 10, 9, 10)


def test_threshold_ranking_and_max_detections():
    frame = _frame()
    boxes = [[0.0, 0.0, 0.25, 0.25], [0.5, 0.5, 1.0, 1.0], [0.0, 0.5, 0.25, 1.0]]
    scores = [0.3, 0.9, 0.05]
    out = visualize.draw_detections(
        frame,
        boxes,
        scores,
        np.zeros((3, 2)),
        ["a", "b"],
        top_k=0,
        thickness=1,
        score_threshold=0.1,
    )
    # Highest score (box 1) has rank 0 -> colour 0; box 0 rank 1; box 2 under threshold.
    assert tuple(out[32, 40]) == visualize.colour(0)  # top edge of box 1 (row 32)
    assert tuple(out[0, 5]) == visualize.colour(1)  # top edge of box 0
    np.testing.assert_array_equal(out[0:16, 32:64][1:-1, 1:-1], frame[0:16, 32:64][1:-1, 1:-1])
    assert (out[0, 32:64] == frame[0, 32:64]).all()  # box 2 not drawn
    only_best = visualize.draw_detections(
        frame, boxes, scores, np.zeros((3, 2)), ["a", "b"], top_k=0, thickness=1, max_detections=1
    )
    assert (only_best[0, 0:16] == frame[0, 0:16]).all()


def test_labels_text_and_tag_position():
    assert visualize.top_labels([0.1, 0.7, 0.3, 0.7], ["w", "x", "y", "z"], top_k=3) == [
        "x 0.70",
        "z 0.70",
        "y 0.30",
    ]
    frame = _frame(96, 128)
    box = [0.5, 0.25, 1.0, 0.75]  # rows 48..95, columns 32..95
    with_labels = visualize.draw_detections(
        frame, [box], [0.9], [[0.2, 0.9]], ["sit", "stand"], top_k=2, thickness=1
    )
    boxes_only = visualize.draw_detections(
        frame, [box], [0.9], [[0.2, 0.9]], ["sit", "stand"], top_k=0, thickness=1
    )
    extra = (with_labels != boxes_only).any(axis=-1)
    rows, cols = np.nonzero(extra)
    assert extra.sum() > 20  # text and tag were drawn
    assert rows.min() >= 48 and cols.min() >= 32  # tag starts at the box's top-left corner
    # The tag is filled with the box colour; text pixels differ from it.
    assert tuple(with_labels[48, 32]) == visualize.colour(0)


def test_denormalize():
    frame = np.array([[[-1.0, 0.0, 1.0]]], np.float32)
    np.testing.assert_array_equal(visualize.denormalize_frame(frame), [[[0, 128, 255]]])


def test_heat_zero_leaves_frame_unchanged():
    frame = _frame()
    np.testing.assert_array_equal(visualize.overlay_heatmap(frame, np.zeros((4, 4)), 0.8), frame)


def test_heat_overlay_values():
    frame = np.full((4, 4, 3), 100, np.uint8)
    heat = np.zeros((2, 2), np.float32)
    heat[0, 0] = 1.0
    out = visualize.overlay_heatmap(frame, np.ones((4, 4)), alpha=0.5)
    # Heat 1 -> colour (128, 0, 0); 0.5 blend of 100 and it.
    np.testing.assert_array_equal(out[0, 0], [114, 50, 50])
    np.testing.assert_array_equal(
        visualize.heat_colours([[0.0, 0.5, 1.0]])[0], [[0, 0, 128], [128, 255, 128], [128, 0, 0]]
    )
    half = visualize.overlay_heatmap(frame, np.full((4, 4), 0.5), alpha=1.0)
    np.testing.assert_array_equal(half[0, 0], [114, 178, 114])  # 0.5*100 + 0.5*(128,255,128)
    # A 2x2 map is resized bilinearly: the hot corner stays hottest, the far corner is cold.
    small = visualize.overlay_heatmap(frame, heat, alpha=1.0)
    assert (small[3, 3] == 100).all() and small[0, 0, 0] > small[0, 0, 2]
    with pytest.raises(ValueError, match="alpha"):
        visualize.overlay_heatmap(frame, heat, alpha=2.0)


def test_normalize_heatmap():
    np.testing.assert_allclose(
        visualize.normalize_heatmap([[0.0, 2.0], [1.0, -1.0]]), [[0.0, 1.0], [0.5, 0.0]]
    )
    np.testing.assert_array_equal(visualize.normalize_heatmap(np.zeros((2, 2))), np.zeros((2, 2)))
