"""Readable pictures of one keyframe, as `tools/eval.py` writes them to TensorBoard.

The source frame is scaled up to a readable size (short side >= `MIN_SHORT_SIDE`, bicubic;
larger frames keep their size), predictions and ground truth are drawn in the two styles of
`action_tx.visualize` (the drawing code of `tools/detect.py`'s videos) with labels outside the
boxes, and a legend strip below the frame says which style is which. Attention maps go beside
the frame they belong to, never under text. Pure NumPy + Pillow; RGB uint8 [H, W, 3] arrays.
"""

from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

from action_tx import visualize

MIN_SHORT_SIDE = 448
_BACKGROUND = (32, 32, 32)  # legend strip and gaps between panels
_TEXT = (235, 235, 235)


def scale_frame(frame, min_short_side: int = MIN_SHORT_SIDE) -> np.ndarray:
    """frame: uint8 [H, W, 3] -> uint8 [H', W', 3], aspect kept: H' = round(H * f),
    W' = round(W * f) with f = max(1, min_short_side / min(H, W)) (bicubic when f > 1)."""
    frame = np.asarray(frame, np.uint8)
    height, width = frame.shape[:2]
    factor = max(1.0, min_short_side / max(1, min(height, width)))
    if factor == 1.0:
        return frame.copy()
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return np.asarray(Image.fromarray(frame).resize(size, Image.BICUBIC), np.uint8)


def line_sizes(height: int, width: int) -> tuple:
    """(box line thickness, font size) in pixels that read well on a height x width image
    (2 and 16 at a short side of 448)."""
    short = min(height, width)
    return max(2, round(short / 200)), max(12, round(short / 28))


def _swatch(kind, size: int) -> np.ndarray:
    """uint8 [size, 2 * size, 3] legend sample: ("solid", rgb) a box edge of a prediction,
    ("dashed",) a ground-truth edge, ("heat",) the heat colour scale from 0 to 1."""
    height, width = size, 2 * size
    out = np.full((height, width, 3), _BACKGROUND, np.uint8)
    if kind[0] == "heat":
        return np.repeat(visualize.heat_colours(np.linspace(0, 1, width)[None]), height, 0)
    thickness = max(2, size // 5)
    box = [0.15, 0.05, 0.85, 0.95]
    if kind[0] == "dashed":
        return visualize.draw_dashed_box(out, box, thickness, dash=max(3, size // 3))
    return visualize.draw_box(out, box, kind[1], thickness)


def legend(width: int, entries: Sequence[tuple], font_size: int) -> np.ndarray:
    """A strip of legend entries laid out left to right, wrapped to more rows when needed.

    Args:
      width: strip width in pixels.
      entries: (swatch or None, text) pairs; swatch as `_swatch` takes it.
      font_size: text height in pixels.
    Returns:
      uint8 [L, width, 3] on a dark background, L a whole number of rows of font_size * 1.6.
    """
    font = visualize.load_font(font_size)
    row_h, pad = int(round(font_size * 1.6)), font_size // 2
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    items, x, row = [], pad, 0  # (row, x, swatch, text, text width)
    for swatch, text in entries:
        x0, _, x1, _ = probe.textbbox((0, 0), text, font=font)
        item_w = (2 * font_size + pad if swatch else 0) + (x1 - x0)
        if x > pad and x + item_w > width - pad:
            x, row = pad, row + 1
        items.append((row, x, swatch, text, x0))
        x += item_w + 2 * pad
    image = Image.new("RGB", (width, row_h * (row + 1)), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    for row, x, swatch, text, x0 in items:
        top = row * row_h + (row_h - font_size) // 2
        if swatch:
            image.paste(Image.fromarray(_swatch(swatch, font_size)), (x, top))
            x += 2 * font_size + pad
        draw.text((x - x0, top), text, fill=_TEXT, font=font)
    return np.asarray(image, np.uint8)


def render_keyframe(
    frame,
    boxes,
    scores,
    action_scores,
    class_names: Sequence[str],
    *,
    gt_boxes=None,
    gt_labels=None,
    title: str = "",
    top_k: int = 3,
    max_detections: Optional[int] = 5,
    min_short_side: int = MIN_SHORT_SIDE,
) -> np.ndarray:
    """One keyframe with its predictions, its ground truth and a legend.

    Args:
      frame: uint8 [H, W, 3] RGB, the source frame (any size).
      boxes: [K, 4] normalized [y1, x1, y2, x2]; scores: [K] person scores; action_scores:
        [K, C] per-class action scores; the `max_detections` best are drawn, `top_k` labels
        each, on tags above their boxes.
      gt_boxes: [G, 4] normalized yxyx, gt_labels: [G, C] multi-hot; None: no ground truth.
      title: first legend entry (e.g. "video 0902 s").
    Returns:
      uint8 [H' + L, W', 3]: `scale_frame(frame)` [H', W'] with the drawings, then a legend
      strip of L rows (`legend`).
    """
    image = scale_frame(frame, min_short_side)
    thickness, font_size = line_sizes(*image.shape[:2])
    gt = dict(top_k=top_k, thickness=thickness, dash=3 * thickness, font_size=font_size)
    if gt_boxes is not None:  # dashed outlines under the predictions, labels placed last
        image = visualize.draw_ground_truth(
            image, gt_boxes, gt_labels, class_names, **dict(gt, top_k=0)
        )
    occupied = []  # every tag keeps clear of the tags placed before it
    image = visualize.draw_detections(
        image,
        boxes,
        scores,
        action_scores,
        class_names,
        top_k=top_k,
        max_detections=max_detections,
        thickness=thickness,
        font_size=font_size,
        label_side="above",
        occupied=occupied,
    )
    if gt_boxes is not None:
        image = visualize.draw_ground_truth(
            image, gt_boxes, gt_labels, class_names, outlines=False, occupied=occupied, **gt
        )
    entries = [(None, title)] if title else []
    entries.append((("solid", visualize.colour(0)), "prediction: person x action score"))
    if gt_boxes is not None:
        entries.append((("dashed",), "ground truth"))
    return np.concatenate([image, legend(image.shape[1], entries, font_size)], axis=0)


def render_attention(
    frame,
    heat,
    box,
    score,
    action_scores,
    class_names: Sequence[str],
    *,
    title: str = "",
    top_k: int = 3,
    min_short_side: int = MIN_SHORT_SIDE,
) -> np.ndarray:
    """One detection and its attention map, side by side.

    Args:
      frame: uint8 [H, W, 3] RGB source frame. heat: [h, w] in [0, 1] over the frame.
      box: [4] normalized yxyx; score: person score; action_scores: [C].
    Returns:
      uint8 [H' + L, 2 W' + gap, 3]: left the scaled frame with the detection and its labels,
      right the same frame under the heat map with only the box outline (no text; a white
      line inside it for contrast), then a legend strip (`legend`).
    """
    image = scale_frame(frame, min_short_side)
    thickness, font_size = line_sizes(*image.shape[:2])
    left = visualize.draw_detections(
        image,
        [box],
        [score],
        [action_scores],
        class_names,
        top_k=top_k,
        thickness=thickness,
        font_size=font_size,
        label_side="above",
    )
    # On the heat colours the box gets a white inner line, so that it shows on dark red too.
    right = visualize.draw_box(
        visualize.overlay_heatmap(image, heat, alpha=0.6), box, (255, 255, 255), thickness + 1
    )
    right = visualize.draw_box(right, box, visualize.colour(0), thickness)
    gap = np.full((image.shape[0], max(4, thickness * 2), 3), _BACKGROUND, np.uint8)
    row = np.concatenate([left, gap, right], axis=1)
    entries = [(None, title)] if title else []
    entries += [
        (("solid", visualize.colour(0)), "this detection"),
        (("heat",), "its attention, low to high"),
    ]
    return np.concatenate([row, legend(row.shape[1], entries, font_size)], axis=0)


def stack_padded(images: Sequence[np.ndarray]) -> np.ndarray:
    """uint8 images [H_i, W_i, 3] -> uint8 [S, max H, max W, 3], each at the top-left corner
    of a dark canvas (one TensorBoard image summary needs one size)."""
    height = max(i.shape[0] for i in images)
    width = max(i.shape[1] for i in images)
    out = np.empty((len(images), height, width, 3), np.uint8)
    out[...] = _BACKGROUND
    for k, image in enumerate(images):
        out[k, : image.shape[0], : image.shape[1]] = image
    return out
