"""Video files for `tools/detect.py` (PyAV): header probe with limits, complete-decode check,
frame iteration, keyframe clip planning and an annotated-video writer.

Frames are RGB uint8 [H, W, 3]. Frame k (0-based, decode order) shows time k / fps; the
keyframe of time t is frame floor(t * fps + 0.5), as `action_tx.data.frame_source`.
No TensorFlow here: detect.py checks its input before TensorFlow is imported.
"""

import dataclasses
import fractions
import math
import os
from typing import Iterator, List, Optional

import av
import numpy as np

# A decode may end a few frames before the header's count (rounded durations, B-frame edit
# lists); more than this is a damaged file.
SHORT_DECODE_TOLERANCE = 2
SHORT_DECODE_FRACTION = 0.02


class VideoError(ValueError):
    """A video that cannot be used; the message names the file and what is wrong."""


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What the container header says. num_frames: the header's frame count, or duration x fps
    rounded when the container has no count (0 when it has neither)."""

    path: str
    width: int
    height: int
    fps: float
    rate: fractions.Fraction
    num_frames: int
    duration_s: float
    codec: str
    container: str


def _open(path: str):
    if not os.path.exists(path):
        raise VideoError(f"{path}: no such file")
    if os.path.isdir(path):
        raise VideoError(f"{path}: is a directory, not a video file")
    if os.path.getsize(path) == 0:
        raise VideoError(f"{path}: empty file")
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
        raise VideoError(f"{path}: not a readable video ({' '.join(str(e).split())})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: no video stream")
    return container


def probe(
    path: str, *, max_resolution: Optional[int] = None, max_duration_s: Optional[float] = None
) -> VideoInfo:
    """Reads the header only (no decoding) and checks the limits.

    Args:
      max_resolution: largest allowed longer side in pixels (None: no limit).
      max_duration_s: longest allowed duration in seconds (None: no limit).
    Raises:
      VideoError: missing/empty/unreadable file, no video stream, unknown frame rate or size,
        or a limit exceeded.
    """
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        width, height = int(stream.width or 0), int(stream.height or 0)
        if not rate or float(rate) <= 0:
            raise VideoError(f"{path}: unknown frame rate")
        if width <= 0 or height <= 0:
            raise VideoError(f"{path}: unknown frame size")
        fps = float(rate)
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        else:
            duration = 0.0
        frames = int(stream.frames or 0) or int(round(duration * fps))
        if not duration:
            duration = frames / fps
        info = VideoInfo(
            path=path,
            width=width,
            height=height,
            fps=fps,
            rate=fractions.Fraction(rate),
            num_frames=frames,
            duration_s=duration,
            codec=stream.codec_context.name,
            container=container.format.name,
        )
    if max_resolution and max(width, height) > max_resolution:
        raise VideoError(
            f"{path}: resolution {width}x{height} exceeds --max_resolution="
            f"{max_resolution} (longer side)"
        )
    if max_duration_s and duration > max_duration_s:
        raise VideoError(
            f"{path}: duration {duration:.1f} s exceeds --max_duration_s={max_duration_s:g}"
        )
    return info


def count_frames(path: str) -> tuple:
    """Decodes every frame (no conversion) -> (frames decoded, decoder error text or '')."""
    decoded, error = 0, ""
    with _open(path) as container:
        try:
            for _ in container.decode(video=0):
                decoded += 1
        except (av.FFmpegError, OSError, ValueError) as e:
            error = " ".join(str(e).split())
    return decoded, error


def check_complete(info: VideoInfo, decoded: int, error: str = "") -> int:
    """Raises VideoError when `decoded` falls short of the header's frame count by more than
    the tolerance (a damaged or truncated file); returns the number of usable frames."""
    expected = info.num_frames
    reason = f" ({error})" if error else ""
    if expected and decoded < expected - max(
        SHORT_DECODE_TOLERANCE, int(SHORT_DECODE_FRACTION * expected)
    ):
        raise VideoError(
            f"{info.path}: damaged video: decoded {decoded} of the {expected} "
            f"frames its header announces{reason}"
        )
    if decoded == 0:
        raise VideoError(f"{info.path}: no frame could be decoded{reason}")
    return decoded


def iter_frames(path: str, limit: Optional[int] = None) -> Iterator[np.ndarray]:
    """RGB uint8 [H, W, 3] frames in decode order (at most `limit`)."""
    with _open(path) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if limit is not None and i >= limit:
                return
            yield frame.to_ndarray(format="rgb24")


def keyframe_times(num_frames: int, fps: float, stride_s: int) -> List[int]:
    """Keyframe timestamps 0, s, 2s, ... (whole seconds) whose keyframe is one of the
    `num_frames` frames."""
    times, t = [], 0
    while keyframe_frame(t, fps) < num_frames:
        times.append(t)
        t += stride_s
    return times


def keyframe_frame(t: float, fps: float) -> int:
    """0-based frame index shown at time t: floor(t * fps + 0.5)."""
    return int(math.floor(t * fps + 0.5))


def clip_indices(center: int, num_frames: int, step: float, last: int) -> np.ndarray:
    """int64 [num_frames]: frames center + round((i - T // 2) * step), clipped to [0, last]
    (edge frames repeated), as the training pipeline's `select_frame_indices`; `step` is the
    model's frame stride in this video's frames."""
    offsets = np.round((np.arange(num_frames) - num_frames // 2) * step).astype(np.int64)
    return np.clip(center + offsets, 0, last)


# Container kinds VideoWriter writes, by file extension -> FFmpeg muxer name.
WRITABLE_FORMATS = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".avi": "avi",
    ".gif": "gif",
}


class VideoWriter:
    """Writes RGB uint8 frames to a video file (H.264 in .mp4/.m4v/.mkv/.mov, else MPEG-4
    Part 2; GIF for .gif). Odd frame sizes lose their last row/column (4:2:0 needs even sizes).

    Use as a context manager: `with VideoWriter(path, rate) as w: w.write(frame)`.
    `ext` (a key of WRITABLE_FORMATS) gives the container kind when `path` is a temporary
    name without the final file's extension; default: `path`'s extension.
    """

    def __init__(self, path: str, rate, crf: int = 23, ext: Optional[str] = None):
        self.path = path
        self.ext = (ext or os.path.splitext(path)[1]).lower()
        self.rate = fractions.Fraction(rate).limit_denominator(100000)
        self.crf = crf
        self._container = None
        self._stream = None

    def __enter__(self):
        self._container = av.open(self.path, mode="w", format=WRITABLE_FORMATS.get(self.ext))
        return self

    def _start(self, height: int, width: int):
        if self.ext == ".gif":
            codec, pix, options = "gif", "rgb8", {}
        elif self.ext in (".mp4", ".m4v", ".mkv", ".mov") and "libx264" in av.codecs_available:
            codec, pix, options = "libx264", "yuv420p", {"crf": str(self.crf)}
        else:
            codec, pix, options = "mpeg4", "yuv420p", {"qscale": "3"}
        self._stream = self._container.add_stream(codec, rate=self.rate)
        self._stream.pix_fmt = pix
        self._stream.options = options
        even = pix == "yuv420p"
        self._stream.width = width - (width % 2) if even else width
        self._stream.height = height - (height % 2) if even else height

    def write(self, frame: np.ndarray):
        """frame: RGB uint8 [H, W, 3], the same size for every call."""
        if self._stream is None:
            self._start(frame.shape[0], frame.shape[1])
        frame = np.ascontiguousarray(frame[: self._stream.height, : self._stream.width])
        out = av.VideoFrame.from_ndarray(frame, format="rgb24")
        for packet in self._stream.encode(out):
            self._container.mux(packet)

    def __exit__(self, *exc):
        try:
            if self._stream is not None:
                for packet in self._stream.encode():
                    self._container.mux(packet)
        finally:
            self._container.close()
        return False
