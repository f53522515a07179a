"""Drawing of synthetic AVA frames: figure geometry (shared by boxes and pixels), background,
camera jitter, Pillow rasterisation.

Pixel coordinates: x right, y down, in the W x H frame. A figure of height u = height * H pixels
stands with its feet at (x * W + dx, y * H + dy), (dx, dy) the frame's camera offset.
Cues are sized to stay visible at 64 px: the head (radius >= 2.5 px) carries an eye and a nose on
the facing side, and a talking mouth is a yellow disc of radius >= 1.5 px protruding on that side.
"""

import io

import numpy as np
from PIL import Image, ImageDraw

from action_tx.data.synthetic_story import (
    ARM_HOLD,
    ARM_PHONE,
    ARM_REACH,
    ARM_WHEEL,
    CUP,
    LIE,
    PHONE,
    RUN,
    SIT,
    VEHICLE,
    WALK,
)

PALETTE = (
    (40, 80, 220),
    (30, 150, 60),
    (150, 50, 170),
    (235, 120, 20),
    (20, 160, 170),
    (120, 70, 30),
    (220, 60, 140),
    (90, 90, 90),
)
SKIN, EYE, MOUTH = (235, 190, 150), (10, 10, 10), (255, 255, 0)
VEHICLE_COLOUR = (150, 25, 25)


def camera_offsets(rng, num_frames, fps, width):
    """[F, 2] int (dx, dy): two slow sinusoids (periods 6-12 s), amplitude ~3% of the width."""
    amp = max(1.0, 0.03 * width)
    t = np.arange(num_frames) / fps
    out = [
        np.round(amp * np.sin(2 * np.pi * t / rng.uniform(6, 12) + rng.uniform(0, 6.3)))
        for _ in range(2)
    ]
    return np.stack(out, axis=1).astype(np.int32)


def background(rng, width, height, margin):
    """uint8 [H + 2m, W + 2m, 3]: wall and ground of muted random colours, a brick/window
    pattern and low-frequency noise (texture, so camera motion is visible)."""
    h, w = height + 2 * margin, width + 2 * margin
    wall, ground = rng.uniform(90, 170, 3), rng.uniform(70, 150, 3)
    img = np.empty((h, w, 3), np.float32)
    horizon = int(margin + rng.uniform(0.55, 0.65) * height)
    img[:horizon], img[horizon:] = wall, ground
    step = max(4, width // 10)
    yy, xx = np.mgrid[0:h, 0:w]
    img[:horizon] -= (
        18 * (((yy[:horizon] // step + xx[:horizon] // (2 * step)) % 2) == 0)[..., None]
    )
    coarse = rng.normal(0, 12, (h // 8 + 2, w // 8 + 2, 3))
    img += np.kron(coarse, np.ones((8, 8, 1)))[:h, :w]
    return np.clip(img, 0, 255).astype(np.uint8)


def _figure(state, p, f, W, H, cam):
    """-> (primitives, hand (x, y) of the front arm). Primitives: ("line", x0, y0, x1, y1, width,
    colour), ("disc", cx, cy, r, colour), ("rect", x0, y0, x1, y1, colour),
    ("poly", pts, colour)."""
    u = float(state.height[p]) * H
    d = int(state.facing[p, f])
    fx, fy = float(state.x[p, f]) * W + cam[0], float(state.y[p, f]) * H + cam[1]
    pose, arm = int(state.pose[p, f]), int(state.arm[p, f])
    r, tw, lw = max(2.5, 0.11 * u), max(3.0, 0.17 * u), max(2.0, 0.075 * u)
    col = PALETTE[int(state.colour[p]) % len(PALETTE)]
    dark = tuple(int(c * 0.6) for c in col)
    prims = []
    if pose == LIE:
        y0 = fy - 0.07 * u
        hip, sh = (fx - d * 0.05 * u, y0), (fx + d * 0.25 * u, y0)
        head = (sh[0] + d * 1.1 * r, y0 - 0.02 * u)
        legs = [
            (hip, (fx - d * 0.45 * u, y0 + 0.02 * u)),
            (hip, (fx - d * 0.43 * u, y0 - 0.03 * u)),
        ]
        hands = [(fx + d * 0.02 * u, y0 + 0.03 * u)] * 2
    else:
        if pose == SIT:
            hip, sh = (fx, fy - 0.26 * u), (fx, fy - 0.55 * u)
            knee = (fx + d * 0.2 * u, fy - 0.26 * u)
            legs = [(hip, knee), (knee, (knee[0], fy))]
            swing = 0.0
        else:
            hip, sh = (fx, fy - 0.47 * u), (fx, fy - 0.78 * u)
            swing = 0.16 * u * np.sin(state.phase[p, f]) if pose in (WALK, RUN) else 0.0
            k = float(state.kick[p, f])
            front = (
                (fx + d * (0.06 * u + 0.36 * u * k), fy - 0.3 * u * k)
                if k > 0
                else (fx + swing, fy)
            )
            legs = [(hip, front), (hip, (fx - swing if k == 0 else fx - d * 0.05 * u, fy))]
        head = (sh[0], sh[1] - 0.95 * r)
        s = (sh[0], sh[1] + 0.03 * u)
        down = [
            (s[0] - 0.8 * swing, fy - 0.42 * u if pose != SIT else hip[1]),
            (s[0] + 0.8 * swing, fy - 0.42 * u if pose != SIT else hip[1]),
        ]
        if arm == ARM_HOLD:
            hands = [(s[0] + d * 0.2 * u, s[1] + 0.2 * u), down[1]]
        elif arm == ARM_PHONE:
            hands = [(head[0] - d * 0.9 * r, head[1] + 0.2 * r), down[1]]
        elif arm == ARM_REACH:
            hands = [(s[0] + d * 0.3 * float(state.height[p]) * W, s[1] + 0.12 * u), down[1]]
        elif arm == ARM_WHEEL:
            hands = [(s[0] + d * 0.22 * u, s[1] + 0.12 * u)] * 2
        else:
            hands = down
    for a, b in legs:
        prims.append(("line", a[0], a[1], b[0], b[1], lw, dark))
    prims.append(("line", hip[0], hip[1], sh[0], sh[1], tw, col))
    for hand in hands[::-1]:
        prims.append(("line", sh[0], sh[1] + 0.03 * u, hand[0], hand[1], lw, col))
        prims.append(("disc", hand[0], hand[1], lw * 0.6, SKIN))
    hx, hy = head
    prims.append(("disc", hx, hy, r, SKIN))
    prims.append(
        (
            "poly",
            [
                (hx + d * 0.8 * r, hy - 0.2 * r),
                (hx + d * 1.45 * r, hy + 0.2 * r),
                (hx + d * 0.8 * r, hy + 0.4 * r),
            ],
            (200, 140, 100),
        )
    )
    prims.append(("disc", hx + d * 0.4 * r, hy - 0.3 * r, max(0.8, 0.28 * r), EYE))
    if state.talking[p, f] and f % 4 < 3:  # mouth flashes 3 frames out of 4
        prims.append(("disc", hx + d * 0.85 * r, hy + 0.6 * r, max(1.5, 0.5 * r), MOUTH))
    return prims, hands[0]


def _box(prims):
    """[x1, y1, x2, y2] pixel box around primitives (line ends padded by half the width)."""
    xs, ys = [], []
    for pr in prims:
        if pr[0] == "line":
            h = pr[5] / 2
            xs += [pr[1] - h, pr[1] + h, pr[3] - h, pr[3] + h]
            ys += [pr[2] - h, pr[2] + h, pr[4] - h, pr[4] + h]
        elif pr[0] == "disc":
            xs += [pr[1] - pr[3], pr[1] + pr[3]]
            ys += [pr[2] - pr[3], pr[2] + pr[3]]
        elif pr[0] == "rect":
            xs += [pr[1], pr[3]]
            ys += [pr[2], pr[4]]
        else:
            xs += [q[0] for q in pr[1]]
            ys += [q[1] for q in pr[1]]
    return np.array([min(xs), min(ys), max(xs), max(ys)], np.float64)


def _vehicle(state, o, f, W, H, cam):
    """-> (body primitives drawn over seated people, steering-wheel centre)."""
    d = int(state.obj_facing[o])
    vx, gy = float(state.obj_x[o, f]) * W + cam[0], float(state.obj_y[o, f]) * H + cam[1]
    prims = [("rect", vx - 0.28 * W, gy - 0.2 * H, vx + 0.28 * W, gy - 0.05 * H, VEHICLE_COLOUR)]
    for wx in (vx - 0.19 * W, vx + 0.19 * W):
        prims += [
            ("disc", wx, gy - 0.05 * H, 0.055 * H, (20, 20, 20)),
            ("disc", wx, gy - 0.05 * H, 0.02 * H, (200, 200, 200)),
        ]
    wc = (vx + d * (0.12 * W + 0.1 * H), gy - 0.3 * H)
    a, rw = float(state.obj_angle[o, f]), max(2.0, 0.05 * H)
    prims += [
        ("disc", wc[0], wc[1], rw, (30, 30, 30)),
        ("disc", wc[0], wc[1], rw * 0.55, VEHICLE_COLOUR),
        (
            "line",
            wc[0],
            wc[1],
            wc[0] + rw * np.cos(a),
            wc[1] + rw * np.sin(a),
            max(1.0, 0.35 * rw),
            (255, 255, 255),
        ),
    ]
    return prims, wc


def _small(kind, cx, cy, H):
    """Primitives of a phone, cup or ball centred at (cx, cy)."""
    if kind == PHONE:
        w, h = max(2.0, 0.035 * H), max(3.0, 0.06 * H)
        return [
            ("rect", cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, (0, 0, 0)),
            ("rect", cx - w / 4, cy - h / 3, cx + w / 4, cy + h / 4, (0, 230, 255)),
        ]
    if kind == CUP:
        w, h = max(2.0, 0.045 * H), max(3.0, 0.06 * H)
        return [
            ("rect", cx - w / 2, cy - h, cx + w / 2, cy, (230, 30, 30)),
            ("rect", cx - w / 2, cy - h, cx + w / 2, cy - h + max(1.0, h / 4), (255, 255, 255)),
        ]
    r = max(2.0, 0.045 * H)
    return [("disc", cx, cy, r, (255, 255, 255)), ("disc", cx, cy, max(0.8, 0.4 * r), (0, 0, 0))]


def frame_geometry(state, f, W, H):
    """Everything drawn in frame f. Returns dict with person_boxes [P, 4] and object_boxes
    [O, 4] (unclipped pixel x1, y1, x2, y2; NaN where absent) and "layers": primitive lists in
    drawing order."""
    # The background crop moves by +camera, so the scene drawn on it moves by -camera.
    cam = -state.camera[f] if state.camera is not None else (0, 0)
    P, O = state.num_people, len(state.obj_kind)
    figs, hands = {}, {}
    pboxes = np.full((P, 4), np.nan)
    for p in range(P):
        if state.present[p, f]:
            figs[p], hands[p] = _figure(state, p, f, W, H, cam)
            pboxes[p] = _box(figs[p])
    oboxes, vehicle_layers, small_layers = np.full((O, 4), np.nan), [], []
    for o in range(O):
        if not state.obj_present[o, f]:
            continue
        kind = int(state.obj_kind[o])
        if kind == VEHICLE:
            prims, _ = _vehicle(state, o, f, W, H, cam)
            vehicle_layers.append(prims)
            oboxes[o] = _box(prims)
            continue
        holder = int(state.obj_holder[o, f])
        if holder >= 0 and holder in hands:
            cx, cy = hands[holder]
            to = int(state.obj_to[o, f])
            if to >= 0 and to in hands:  # hand-over: travels from hand to hand
                a = float(state.obj_alpha[o, f])
                cx, cy = cx + a * (hands[to][0] - cx), cy + a * (hands[to][1] - cy)
        elif holder >= 0:
            continue
        else:
            cx = float(state.obj_x[o, f]) * W + cam[0]
            cy = float(state.obj_y[o, f]) * H + cam[1] - max(2.0, 0.045 * H)
        prims = _small(kind, cx, cy, H)
        small_layers.append(prims)
        oboxes[o] = _box(prims)
    # Back to front by feet y; seated vehicle occupants go under the vehicle body (legs hidden).
    order = sorted(figs, key=lambda q: (float(state.y[q, f]), q))
    seated = [figs[q] for q in order if state.vehicle[q, f] >= 0]
    others = [figs[q] for q in order if state.vehicle[q, f] < 0]
    layers = seated + vehicle_layers + others + small_layers
    return dict(person_boxes=pboxes, object_boxes=oboxes, layers=layers)


def draw(image, layers):
    """Rasterises primitive layers onto a PIL image (in place)."""
    dr = ImageDraw.Draw(image)
    for prims in layers:
        for pr in prims:
            if pr[0] == "line":
                _, x0, y0, x1, y1, w, c = pr
                dr.line([(x0, y0), (x1, y1)], fill=c, width=max(1, int(round(w))))
                for x, y in ((x0, y0), (x1, y1)):  # round joints
                    h = w / 2 - 0.5
                    if h > 0.5:
                        dr.ellipse([x - h, y - h, x + h, y + h], fill=c)
            elif pr[0] == "disc":
                _, x, y, r, c = pr
                dr.ellipse([x - r, y - r, x + r, y + r], fill=c)
            elif pr[0] == "rect":
                dr.rectangle(pr[1:5], fill=pr[5])
            else:
                dr.polygon(pr[1], fill=pr[2])


def render_frame(state, f, bg, W, H, margin, quality=90):
    """-> (JPEG bytes, uint8 [H, W, 3] RGB, geometry dict of frame_geometry)."""
    dx, dy = state.camera[f] if state.camera is not None else (0, 0)
    crop = bg[margin + dy : margin + dy + H, margin + dx : margin + dx + W]
    img = Image.fromarray(np.ascontiguousarray(crop))
    geo = frame_geometry(state, f, W, H)
    draw(img, geo["layers"])
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue(), np.asarray(img), geo
