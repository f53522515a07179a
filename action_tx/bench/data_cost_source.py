"""A generated movie for the data-cost suite: JPEG and H.264 sizes near those of real footage.

Flat synthetic scenes (the demo's renderer) compress far better than film, which would make
bytes per keyframe meaningless. Natural images have an amplitude spectrum falling about as
1/f^alpha; this movie is a periodic noise texture with alpha = 1.3 (colour: a luminance field
and two weaker chroma fields) panning 2 px per frame, with three textured "actors" (rectangles
of another such texture) crossing it, plus a little per-frame grain. alpha and the grain are
set so that a frame takes about 0.3 JPEG bytes per pixel at quality 90, what the real clip
`../shared/data/real/demo_spatiotemporal_det.mp4` takes at its native 340x256 (0.31). No file
is downloaded; the same seed gives the same pixels.
"""

from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np


ALPHA, GRAIN = 1.3, 1.0


def pink_noise(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """float32 [height, width], zero mean, unit variance, amplitude spectrum ~ 1/f^ALPHA,
    periodic (it tiles seamlessly, so rolling it pans without a seam)."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    f = np.sqrt(fy**2 + fx**2)
    f[0, 0] = 1.0
    spectrum = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f**ALPHA
    spectrum[0, 0] = 0.0
    image = np.fft.irfft2(spectrum, s=(height, width))
    return ((image - image.mean()) / image.std()).astype(np.float32)


def texture(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """float32 [height, width, 3] in about [0, 255]: luminance with weaker chroma fields."""
    lum = pink_noise(height, width, rng) * 45.0 + 115.0
    chroma = [pink_noise(height, width, rng) * 12.0 for _ in range(2)]
    rgb = np.stack([lum + chroma[0], lum - 0.5 * chroma[0] - 0.5 * chroma[1], lum + chroma[1]], -1)
    return rgb.astype(np.float32)


def frames(seconds: float, fps: int, width: int, height: int, seed: int = 0):
    """Yields uint8 [height, width, 3] frames 0 .. seconds * fps - 1 (see the module doc)."""
    rng = np.random.default_rng(seed)
    background = texture(height, width, rng)
    aw, ah = max(2, width // 8), max(2, height // 3)
    actors = [texture(ah, aw, rng) * 0.8 + 30.0 for _ in range(3)]
    count = int(round(seconds * fps))
    for k in range(count):
        image = np.roll(background, 2 * k, axis=1)
        for a, actor in enumerate(actors):
            # Each actor walks across the frame at its own speed and height, wrapping around.
            x = int((k * (1 + a) * width / (4.0 * fps) + a * width / 3.0) % max(1, width - aw))
            y = int((height - ah) * (0.2 + 0.3 * a)) % max(1, height - ah)
            image[y : y + ah, x : x + aw] = actor
        image = image + rng.normal(0.0, GRAIN, size=image.shape[:2])[..., None]
        yield np.clip(image, 0, 255).astype(np.uint8)


def write_movie(path: str, seconds: float, fps: int, width: int, height: int, seed: int = 0):
    """Writes `frames(...)` as an H.264 (CRF 18; MPEG-4 where x264 is absent) mp4 at `path`,
    frame k at k / fps s. Width and height must be even."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with av.open(path, "w", format="mp4") as out:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18"} if codec == "libx264" else {"qscale": "2"}
        for k, image in enumerate(frames(seconds, fps, width, height, seed)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
