"""Rendering of detections on frames: boxes, top action labels, attention heat maps.

Pure NumPy + Pillow (no matplotlib), shared by `tools/eval.py` (TensorBoard images) and
`tools/detect.py` (annotated videos). Every function takes and returns RGB uint8 [H, W, 3]
arrays and never modifies its input.

Styles: a prediction is a solid box in its rank's `colour` with its labels on a tag of that
colour; ground truth is a dashed white/black box with black labels on a white tag, placed
below the box while predictions' tags go above it, so that neither hides the person.
`action_tx.render` composes these into the readable, legend-carrying images of TensorBoard.
"""

from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Distinct, saturated colours (RGB), one per detection rank; cycled when there are more.
PALETTE = np.array(
    [
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (210, 245, 60),
        (250, 190, 212),
    ],
    dtype=np.uint8,
)

# Jet-like colour map: heat 0 -> dark blue, 0.5 -> green/yellow, 1 -> dark red.
_HEAT_STOPS = np.array([0.0, 0.125, 0.375, 0.625, 0.875, 1.0])
_HEAT_COLOURS = np.array(
    [(0, 0, 128), (0, 0, 255), (0, 255, 255), (255, 255, 0), (255, 0, 0), (128, 0, 0)],
    dtype=np.float32,
)


def colour(index: int) -> tuple:
    """RGB colour (3 ints) of detection rank `index`."""
    return tuple(int(c) for c in PALETTE[index % len(PALETTE)])


def denormalize_frame(frame) -> np.ndarray:
    """frame: float [H, W, 3] RGB in [-1, 1] (the pipeline's I3D convention) -> uint8 [H, W, 3]."""
    frame = np.asarray(frame, np.float32)
    return np.clip(np.round((frame + 1.0) * 127.5), 0, 255).astype(np.uint8)


def box_to_pixels(box, height: int, width: int) -> tuple:
    """box: [4] normalized [y1, x1, y2, x2] -> (top, left, bottom, right) inclusive pixel
    indices, clipped to the frame. A box covering [0, 1] covers every pixel: the pixel row of
    y2 is round(y2 * H) - 1."""
    y1, x1, y2, x2 = (float(v) for v in box)
    top = int(np.clip(round(y1 * height), 0, height - 1))
    left = int(np.clip(round(x1 * width), 0, width - 1))
    bottom = int(np.clip(round(y2 * height) - 1, top, height - 1))
    right = int(np.clip(round(x2 * width) - 1, left, width - 1))
    return top, left, bottom, right


def draw_box(frame, box, rgb, thickness: int = 2) -> np.ndarray:
    """Draws the outline of one box (no fill).

    Args:
      frame: uint8 [H, W, 3] RGB.
      box: [4] normalized [y1, x1, y2, x2].
      rgb: 3 ints, the line colour.
      thickness: line width in pixels, drawn inside the box.
    Returns:
      a new uint8 [H, W, 3]: exactly the pixels within `thickness` of the box's border
      (see `box_to_pixels`) set to `rgb`.
    """
    out = np.array(frame, dtype=np.uint8, copy=True)
    top, left, bottom, right = box_to_pixels(box, out.shape[0], out.shape[1])
    t = max(1, int(thickness))
    rgb = np.asarray(rgb, np.uint8)
    out[top : min(top + t, bottom + 1), left : right + 1] = rgb
    out[max(bottom - t + 1, top) : bottom + 1, left : right + 1] = rgb
    out[top : bottom + 1, left : min(left + t, right + 1)] = rgb
    out[top : bottom + 1, max(right - t + 1, left) : right + 1] = rgb
    return out


# Ground truth: dashes alternating these two colours (visible on any background).
GT_COLOURS = ((255, 255, 255), (0, 0, 0))


def draw_dashed_box(frame, box, thickness: int = 2, dash: int = 6) -> np.ndarray:
    """Draws the outline of one box as dashes of GT_COLOURS.

    Args:
      frame: uint8 [H, W, 3] RGB. box: [4] normalized [y1, x1, y2, x2].
      thickness: line width in pixels, inside the box. dash: dash length in pixels.
    Returns:
      a new uint8 [H, W, 3]: the pixels `draw_box` would set, each GT_COLOURS[0] or [1] by
      ((row + column) // dash) % 2.
    """
    out = np.array(frame, dtype=np.uint8, copy=True)
    border = draw_box(np.zeros(out.shape[:2] + (1,), np.uint8), box, (1,), thickness)[..., 0] > 0
    rows, cols = np.nonzero(border)
    phase = ((rows + cols) // max(1, int(dash))) % 2
    out[rows, cols] = np.asarray(GT_COLOURS, np.uint8)[phase]
    return out


def load_font(size: int):
    """Pillow's default font at `size` pixels (the fixed bitmap font on old Pillow)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def top_labels(action_scores, class_names: Sequence[str], top_k: int = 3) -> list:
    """action_scores: [C] scores of one detection -> list of the `top_k` best "name 0.87"
    strings, best first (ties: lower class index first)."""
    scores = np.asarray(action_scores, np.float32)
    order = np.argsort(-scores, kind="stable")[: max(0, top_k)]
    return [f"{class_names[i] if i < len(class_names) else i} {scores[i]:.2f}" for i in order]


def _ink(rgb) -> tuple:
    """Black text on light colours, white on dark ones (ITU-R BT.601 luma)."""
    return (0, 0, 0) if 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 140 else (255, 255, 255)


def rect_overlap(a, b) -> int:
    """Area shared by two (x1, y1, x2, y2) rectangles (x2, y2 exclusive)."""
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def tag_position(
    box_px,
    tag_w: int,
    tag_h: int,
    height: int,
    width: int,
    side: str = "above",
    occupied: Sequence[tuple] = (),
) -> tuple:
    """(x, y) of the top-left corner of a tag_w x tag_h label tag for a box of pixel extent
    box_px = (top, left, bottom, right), inside the [height, width] frame.

    side: "inside" (the box's top-left corner, nothing else considered); "above" (predictions:
    outside above the box, else outside below, else inside at its top) or "below" (ground
    truth: outside below, else inside at its bottom, else outside above), each at the box's
    left edge or ending at its right edge, clamped into the frame; then stacked just above
    (below) each `occupied` rectangle. The first candidate in that order with the least cost
    wins, cost = 4 x the area shared with the `occupied` (x1, y1, x2, y2) rectangles (tags
    already drawn) + the area of the box it covers (the person).
    """
    top, left, bottom, right = box_px
    clamp_x = lambda x: int(np.clip(x, 0, max(0, width - tag_w)))  # noqa: E731
    clamp_y = lambda y: int(np.clip(y, 0, max(0, height - tag_h)))  # noqa: E731
    if side == "inside":
        return clamp_x(left), clamp_y(top)
    above, below = top - tag_h, bottom + 1
    ys = (above, below, top) if side == "above" else (below, bottom + 1 - tag_h, above)
    # Then just above or below each tag already placed (stacking when the sides are taken).
    ys += tuple(
        y
        for o in occupied
        for y in ((o[1] - tag_h, o[3]) if side == "above" else (o[3], o[1] - tag_h))
    )
    best = None
    for y in ys:
        for x in (left, right + 1 - tag_w):
            x, y = clamp_x(x), clamp_y(y)
            rect = (x, y, x + tag_w, y + tag_h)
            cost = 4 * sum(rect_overlap(rect, o) for o in occupied) + rect_overlap(
                rect, (left, top, right + 1, bottom + 1)
            )
            if best is None or cost < best[0]:
                best = (cost, x, y)
            if cost == 0:
                return x, y
    return best[1], best[2]


def _tag_size(draw, font, text: str) -> tuple:
    """-> (tag width, tag height, text x offset, text y offset) of `text` with 2 px padding."""
    x0, y0, x1, y1 = draw.multiline_textbbox((0, 0), text, font=font, spacing=1)
    return x1 - x0 + 4, y1 - y0 + 4, x0, y0


def draw_tag(
    draw,
    font,
    box_px,
    text: str,
    fill,
    height: int,
    width: int,
    side: str = "above",
    occupied: Optional[list] = None,
) -> tuple:
    """Draws `text` (lines) on a tag filled with `fill`, placed by `tag_position` away from
    the `occupied` rectangles, to which it is appended; -> (x, y, w, h)."""
    tag_w, tag_h, x0, y0 = _tag_size(draw, font, text)
    occupied = [] if occupied is None else occupied
    x, y = tag_position(box_px, tag_w, tag_h, height, width, side, occupied)
    occupied.append((x, y, x + tag_w, y + tag_h))
    draw.rectangle([x, y, x + tag_w - 1, y + tag_h - 1], fill=tuple(fill))
    draw.multiline_text((x + 2 - x0, y + 2 - y0), text, fill=_ink(fill), font=font, spacing=1)
    return x, y, tag_w, tag_h


def draw_ground_truth(
    frame,
    boxes,
    labels,
    class_names: Sequence[str],
    *,
    top_k: int = 3,
    thickness: int = 2,
    dash: int = 6,
    font_size: int = 10,
    outlines: bool = True,
    occupied: Optional[list] = None,
) -> np.ndarray:
    """Draws ground-truth persons: dashed boxes (`draw_dashed_box`), their labels below them.

    Args:
      frame: uint8 [H, W, 3] RGB. boxes: [G, 4] normalized [y1, x1, y2, x2].
      labels: [G, C] multi-hot (any value > 0 is a label), class index order of `class_names`.
      top_k: label lines per box (first in class order); 0 draws no labels.
      outlines: draw the boxes (False: labels only, e.g. after predictions were drawn).
      occupied: tag rectangles to keep clear of (`tag_position`); the new tags are appended.
    Returns:
      a new uint8 [H, W, 3].
    """
    out = np.array(frame, dtype=np.uint8, copy=True)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if not len(boxes):
        return out
    labels = np.asarray(labels, np.float32).reshape(len(boxes), -1)
    for box in boxes if outlines else ():
        out = draw_dashed_box(out, box, thickness, dash)
    if top_k <= 0:
        return out
    image = Image.fromarray(out)
    draw, font = ImageDraw.Draw(image), load_font(font_size)
    height, width = out.shape[:2]
    occupied = [] if occupied is None else occupied
    for box, multi_hot in zip(boxes, labels):
        names = [
            class_names[c] if c < len(class_names) else str(c)
            for c in np.flatnonzero(multi_hot > 0)[:top_k]
        ]
        draw_tag(
            draw,
            font,
            box_to_pixels(box, height, width),
            "\n".join(names) or "(none)",
            GT_COLOURS[0],
            height,
            width,
            side="below",
            occupied=occupied,
        )
    return np.asarray(image, dtype=np.uint8)


def draw_detections(
    frame,
    boxes,
    scores,
    action_scores,
    class_names: Sequence[str],
    *,
    top_k: int = 3,
    score_threshold: float = 0.0,
    max_detections: Optional[int] = None,
    thickness: int = 2,
    font_size: int = 10,
    label_side: str = "inside",
    occupied: Optional[list] = None,
) -> np.ndarray:
    """Draws detected persons with their top action labels.

    Args:
      frame: uint8 [H, W, 3] RGB.
      boxes: [K, 4] normalized [y1, x1, y2, x2].
      scores: [K] person scores; detections with score <= `score_threshold` are skipped.
      action_scores: [K, C] per-class action scores (class index order of `class_names`).
      class_names: [C] names.
      top_k: labels written per box ("name score", best first); 0 draws boxes only.
      max_detections: draw at most this many, in descending score order (None: all).
      thickness: box line width in pixels.
      font_size: label text height in pixels.
      label_side: where the tags go (`tag_position`): "inside" the box's top-left corner, or
        "above" it, outside, so that they do not hide the person, and clear of each other
        and of the `occupied` rectangles (to which they are appended).
    Returns:
      a new uint8 [H, W, 3]. Detection of rank r (by score) is drawn in `colour(r)`; its labels
      sit on a filled tag of that colour at the box's top-left corner, inside the frame.
    """
    out = np.array(frame, dtype=np.uint8, copy=True)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if not len(boxes):  # a keyframe without detections (reshape(0, -1) cannot infer C)
        return out
    scores = np.asarray(scores, np.float32).reshape(-1)
    action_scores = np.asarray(action_scores, np.float32).reshape(len(boxes), -1)
    order = [i for i in np.argsort(-scores, kind="stable") if scores[i] > score_threshold]
    if max_detections is not None:
        order = order[:max_detections]
    for rank, i in enumerate(order):
        out = draw_box(out, boxes[i], colour(rank), thickness)
    if top_k <= 0 or not order:
        return out
    image = Image.fromarray(out)
    draw = ImageDraw.Draw(image)
    font = load_font(font_size)
    height, width = out.shape[:2]
    # Tags placed best first (it gets its preferred place), drawn best last (on top).
    occupied = [] if occupied is None else occupied
    places = []
    for rank, i in enumerate(order if label_side != "inside" else ()):
        tag_w, tag_h, _, _ = _tag_size(
            draw, font, "\n".join(top_labels(action_scores[i], class_names, top_k))
        )
        x, y = tag_position(
            box_to_pixels(boxes[i], height, width),
            tag_w,
            tag_h,
            height,
            width,
            label_side,
            occupied,
        )
        occupied.append((x, y, x + tag_w, y + tag_h))
        places.append((x, y))
    for rank in reversed(range(len(order))):
        i = order[rank]
        text = "\n".join(top_labels(action_scores[i], class_names, top_k))
        if label_side == "inside":  # the compact tag of small frames, 1 px padding
            top, left, _, _ = box_to_pixels(boxes[i], height, width)
            x0, y0, x1, y1 = draw.multiline_textbbox((0, 0), text, font=font, spacing=1)
            tag_w, tag_h = x1 - x0 + 2, y1 - y0 + 2
            x = min(left, max(0, width - tag_w))
            y = min(top, max(0, height - tag_h))
            rgb = colour(rank)
            draw.rectangle([x, y, x + tag_w - 1, y + tag_h - 1], fill=rgb)
            draw.multiline_text(
                (x + 1 - x0, y + 1 - y0), text, fill=_ink(rgb), font=font, spacing=1
            )
        else:
            x, y = places[rank]
            tag_w, tag_h, x0, y0 = _tag_size(draw, font, text)
            draw.rectangle([x, y, x + tag_w - 1, y + tag_h - 1], fill=colour(rank))
            draw.multiline_text(
                (x + 2 - x0, y + 2 - y0), text, fill=_ink(colour(rank)), font=font, spacing=1
            )
    return np.asarray(image, dtype=np.uint8)


def heat_colours(heat) -> np.ndarray:
    """heat: [h, w] in [0, 1] -> uint8 [h, w, 3] jet-like colours (0 blue ... 1 dark red)."""
    heat = np.clip(np.asarray(heat, np.float32), 0.0, 1.0)
    rgb = [np.interp(heat, _HEAT_STOPS, _HEAT_COLOURS[:, c]) for c in range(3)]
    return np.round(np.stack(rgb, axis=-1)).astype(np.uint8)


def resize_heatmap(heat, height: int, width: int) -> np.ndarray:
    """heat: [h, w] float -> float32 [height, width], bilinear (pixel centres aligned)."""
    heat = np.asarray(heat, np.float32)
    if heat.shape == (height, width):
        return heat.copy()
    if heat.ndim != 2:
        raise ValueError(f"heat must be 2-D [h, w], got shape {heat.shape}")
    image = Image.fromarray(np.ascontiguousarray(heat))  # float32 2-D -> mode "F"
    return np.asarray(image.resize((width, height), Image.BILINEAR), np.float32)


def normalize_heatmap(heat) -> np.ndarray:
    """heat: [h, w] any non-negative scale -> float32 in [0, 1] (divided by its max; all-zero
    or non-finite maps give zeros)."""
    heat = np.nan_to_num(np.asarray(heat, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    heat = np.maximum(heat, 0.0)
    peak = float(heat.max()) if heat.size else 0.0
    return heat / peak if peak > 0 else np.zeros_like(heat)


def overlay_heatmap(frame, heat, alpha: float = 0.6) -> np.ndarray:
    """Blends a heat map over a frame, in proportion to the heat.

    Args:
      frame: uint8 [H, W, 3] RGB.
      heat: [h, w] values in [0, 1] (clipped), resized bilinearly to [H, W].
      alpha: opacity of the colour at heat 1.
    Returns:
      uint8 [H, W, 3]: frame * (1 - a) + heat_colours(heat) * a with a = alpha * heat per
      pixel, so heat 0 leaves a pixel unchanged and heat 1 gives the full `alpha` blend.
    """
    frame = np.asarray(frame, np.uint8)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    heat = np.clip(resize_heatmap(heat, frame.shape[0], frame.shape[1]), 0.0, 1.0)
    weight = (alpha * heat)[..., None]
    blend = frame.astype(np.float32) * (1.0 - weight) + heat_colours(heat) * weight
    return np.clip(np.round(blend), 0, 255).astype(np.uint8)
