"""action_tx.render and the two drawing styles of action_tx.visualize: sizes, where each
style's colours land, label tags outside the boxes, empty detections."""

import numpy as np

from action_tx import render, visualize

NAMES = ["bend/bow (at the waist)", "stand", "listen to (a person)"]


def _frame(h, w, seed=0):
    # Values 60..99: never a palette or ground-truth colour, so drawn pixels are visible.
    return np.random.default_rng(seed).integers(60, 100, size=(h, w, 3), dtype=np.uint8)


def test_scale_frame_upscales_small_sources_only():
    assert render.scale_frame(_frame(64, 96)).shape == (448, 672, 3)
    assert render.scale_frame(_frame(100, 50)).shape == (896, 448, 3)
    big = _frame(480, 640)
    np.testing.assert_array_equal(render.scale_frame(big), big)  # already readable: as is
    flat = np.full((10, 20, 3), 77, np.uint8)
    assert (render.scale_frame(flat, 40) == 77).all()  # bicubic keeps a flat frame


def test_ground_truth_is_dashed_and_labelled_below():
    frame = _frame(200, 200)
    box = [0.25, 0.25, 0.5, 0.75]  # rows 50..99, columns 50..149
    out = visualize.draw_ground_truth(
        frame, [box], [[0, 1, 1]], NAMES, top_k=0, thickness=2, dash=5
    )
    changed = (out != frame).any(axis=-1)
    edge = visualize.draw_box(np.zeros((200, 200, 1), np.uint8), box, (1,), 2)[..., 0] > 0
    np.testing.assert_array_equal(changed, edge)  # only the outline
    colours = {tuple(p) for p in out[edge]}
    assert colours == set(visualize.GT_COLOURS)  # dashes of both colours
    rows, cols = np.nonzero(edge)
    np.testing.assert_array_equal(
        out[rows, cols], np.asarray(visualize.GT_COLOURS)[((rows + cols) // 5) % 2]
    )
    labelled = visualize.draw_ground_truth(frame, [box], [[0, 1, 1]], NAMES, thickness=2, dash=5)
    extra = (labelled != out).any(axis=-1)
    assert extra[100:].sum() > 50 and not extra[:100].any()  # the tag is below the box
    assert tuple(labelled[101, 51]) == visualize.GT_COLOURS[0]  # white tag


def test_prediction_labels_go_above_the_box_and_stay_in_frame():
    frame = _frame(200, 200)
    box, scores = [0.5, 0.25, 0.9, 0.5], [[0.1, 0.8, 0.3]]  # rows 100..179, columns 50..99
    kwargs = dict(thickness=2, font_size=12, label_side="above")
    boxes_only = visualize.draw_detections(frame, [box], [0.9], scores, NAMES, top_k=0, **kwargs)
    out = visualize.draw_detections(frame, [box], [0.9], scores, NAMES, top_k=2, **kwargs)
    rows, cols = np.nonzero((out != boxes_only).any(axis=-1))
    assert rows.max() < 100 and rows.min() > 40 and cols.min() == 50  # above, from its left
    assert tuple(out[99, 50]) == visualize.colour(0)  # tag in the box colour
    # A box at the top edge: no room above, so below it; at the right edge: shifted left.
    top_right = [0.0, 0.8, 0.3, 1.0]
    out = visualize.draw_detections(frame, [top_right], [0.9], scores, NAMES, top_k=2, **kwargs)
    plain = visualize.draw_detections(frame, [top_right], [0.9], scores, NAMES, top_k=0, **kwargs)
    rows, cols = np.nonzero((out != plain).any(axis=-1))
    assert rows.min() == 60 and cols.max() == 199 and cols.min() < 160
    assert visualize.tag_position((50, 10, 80, 40), 30, 20, 100, 100, "above") == (10, 30)
    assert visualize.tag_position((5, 90, 60, 99), 30, 20, 100, 100, "above") == (70, 61)
    # Tags of neighbouring detections and the ground truth stay clear of each other.
    occupied = []
    boxes = [[0.4, 0.1, 0.9, 0.3], [0.42, 0.2, 0.9, 0.4], [0.38, 0.15, 0.95, 0.35]]
    visualize.draw_detections(
        frame,
        boxes,
        [0.9, 0.8, 0.7],
        np.tile(scores, (3, 1)),
        NAMES,
        top_k=3,
        occupied=occupied,
        **kwargs,
    )
    visualize.draw_ground_truth(
        frame, boxes[:2], [[1, 1, 0], [0, 0, 1]], NAMES, occupied=occupied, font_size=12
    )
    assert len(occupied) == 5
    assert all(
        visualize.rect_overlap(a, b) == 0 for k, a in enumerate(occupied) for b in occupied[k + 1 :]
    )
    # No room outside: the place covering least of the box (clamped into the frame).
    assert visualize.tag_position((5, 90, 80, 99), 30, 20, 100, 100, "above") == (70, 80)
    assert visualize.tag_position((5, 10, 95, 40), 30, 20, 100, 100, "above") == (10, 0)
    # Ground truth: below, else inside at the bottom, else above.
    assert visualize.tag_position((5, 10, 60, 40), 30, 20, 100, 100, "below") == (10, 61)
    assert visualize.tag_position((30, 10, 95, 40), 30, 20, 100, 100, "below") == (10, 10)
    # Occupied places are avoided: the right-aligned place above, else below.
    taken = [(10, 30, 40, 50)]
    assert visualize.tag_position((50, 10, 70, 80), 30, 20, 100, 100, "above", taken) == (51, 30)
    assert visualize.tag_position((50, 10, 70, 40), 30, 20, 100, 100, "above", taken) == (10, 71)


def test_render_keyframe_sizes_styles_and_legend():
    frame = _frame(64, 96)
    boxes = [[0.25, 0.25, 0.75, 0.5], [0.1, 0.6, 0.9, 0.9]]
    out = render.render_keyframe(
        frame,
        boxes,
        [0.6, 0.9],
        [[0.1, 0.8, 0.3], [0.7, 0.1, 0.2]],
        NAMES,
        gt_boxes=[[0.3, 0.3, 0.7, 0.45]],
        gt_labels=[[1, 0, 0]],
        title="vid t=902s",
    )
    assert out.shape[1] == 672 and out.shape[0] > 448  # 448 x 672 frame, legend below
    thickness, font_size = render.line_sizes(448, 672)
    assert (thickness, font_size) == (2, 16)
    assert render.line_sizes(1080, 1920) == (5, 39) and render.line_sizes(48, 64) == (2, 12)
    # Rank by score: box 1 (0.9) solid in colour 0, box 0 in colour 1; ground truth dashed.
    assert tuple(out[402, 463]) == visualize.colour(0)  # box 1: rows 45..402, cols 403..604
    top, left, bottom, right = visualize.box_to_pixels([0.3, 0.3, 0.7, 0.45], 448, 672)
    gt_left_edge = {tuple(p) for p in out[top : bottom - 40, left]}
    assert gt_left_edge == set(visualize.GT_COLOURS)
    legend = out[448:]
    assert (legend == (32, 32, 32)).all(axis=-1).mean() > 0.5  # dark strip
    legend_colours = {tuple(p) for p in legend.reshape(-1, 3)}
    assert visualize.colour(0) in legend_colours  # prediction swatch
    assert set(visualize.GT_COLOURS) <= legend_colours  # dashed swatch
    # Without ground truth there is no dashed style anywhere.
    plain = render.render_keyframe(frame, boxes, [0.6, 0.9], np.zeros((2, 3)), NAMES, top_k=0)
    assert visualize.GT_COLOURS[0] not in {tuple(p) for p in plain.reshape(-1, 3)}


def test_empty_detections_draw_only_the_frame_and_legend():
    frame = _frame(48, 64)
    for scores in (np.zeros((0, 3)), np.zeros((0,))):
        np.testing.assert_array_equal(
            visualize.draw_detections(
                frame, np.zeros((0, 4)), np.zeros(0), scores, NAMES, label_side="above"
            ),
            frame,
        )
        np.testing.assert_array_equal(
            visualize.draw_ground_truth(frame, np.zeros((0, 4)), scores, NAMES), frame
        )
    out = render.render_keyframe(
        frame,
        np.zeros((0, 4)),
        np.zeros(0),
        np.zeros((0, 3)),
        NAMES,
        gt_boxes=np.zeros((0, 4)),
        gt_labels=np.zeros((0, 3)),
    )
    np.testing.assert_array_equal(out[:448], render.scale_frame(frame))


def test_attention_is_beside_the_frame_and_panels_pad_to_one_size():
    frame = np.full((32, 32, 3), 80, np.uint8)
    heat = np.zeros((4, 4))
    heat[0, 0] = 1.0
    row = render.render_attention(
        frame, heat, [0.5, 0.5, 1.0, 1.0], 0.9, [0.9, 0.1, 0.0], NAMES, min_short_side=64, top_k=0
    )
    gap = row.shape[1] - 128
    assert gap >= 4 and row.shape[0] > 64
    left, right = row[:64, :64], row[:64, 64 + gap :]
    assert (left[:20, :20] == 80).all()  # no heat on the frame panel
    assert right[0, 0, 0] > right[0, 0, 2] and (right[30:60, 5] == 80).all()  # heat only right
    assert tuple(right[32, 40]) == visualize.colour(0)  # the box outline on the heat panel
    assert tuple(right[34, 40]) == (255, 255, 255)  # and its white inner line
    stacked = render.stack_padded([np.zeros((2, 3, 3), np.uint8), np.ones((4, 1, 3), np.uint8)])
    assert stacked.shape == (2, 4, 3, 3)
    assert (stacked[0, 2:] == 32).all() and (stacked[1, :, 1:] == 32).all()
