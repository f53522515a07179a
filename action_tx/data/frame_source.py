"""Frames of one AVA video, from a JPEG folder or a video file, as windows around keyframes.

AVA convention: frame k (1-based) of `ROOT/frames/VID/VID_%06d.jpg` shows time (k-1)/fps, so the
keyframe of timestamp t is frame round((t - timestamp_offset) * fps) + 1. Windows of W frames are
centred on the keyframe (position W // 2) and repeat the first/last frame at the video's ends.
Video files (`ROOT/videos/VID.*`) are decoded with PyAV; a decode that stops before the frames the
timestamps need (a truncated or damaged file can end early without any error) is a bad video.
A frame that is missing from its folder, or that cannot be read, spoils only the windows that
hold it (`read_frames` reports it); `check_frames` then decodes every frame with the training
pipeline's own decoder (the converter calls it in its main process: its forked workers never
run TensorFlow).
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import io
import os
import re
import sys
import tempfile

import av
import numpy as np
import tensorflow as tf
from PIL import Image

JPEG_QUALITY = 90
_FRAME_NAME = re.compile(r"(\d+)\.jpe?g$", re.IGNORECASE)


class BadVideo(Exception):
    """A video that cannot give the frames its keyframes need. reason: a short manifest key."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass
class VideoFrames:
    """The frames the windows of one video need, each stored once.

    frames: JPEG bytes per distinct frame (None where `problems` says why there are none).
    names: where each frame comes from (a file, or "VIDEO frame N" for a video file), for messages.
    problems: per frame None, or (reason, message) when it is missing or unreadable.
    windows: per timestamp, W indices into `frames`, oldest first.
    fps: frame rate. height, width: size of the video's first readable window frame (0, 0 if
      none is readable).
    """

    frames: list
    names: list
    problems: list
    windows: list
    fps: float
    height: int = 0
    width: int = 0


def find_source(ava_dir: str, video_id: str):
    """-> ("frames", folder) or ("video", file), or None when neither exists."""
    folder = os.path.join(ava_dir, "frames", video_id)
    if os.path.isdir(folder):
        return "frames", folder
    files = sorted(
        glob.glob(os.path.join(glob.escape(ava_dir), "videos", glob.escape(video_id) + ".*"))
    )
    return ("video", files[0]) if files else None


def keyframe_frame(timestamp: float, fps: float, offset: float = 0.0) -> int:
    """0-based frame index showing `timestamp` (half-up rounding, not Python's banker's)."""
    return int(np.floor((timestamp - offset) * fps + 0.5))


def window_indices(center: int, num_frames: int, last: int) -> list[int]:
    """The W frame indices centred on `center` (at position W // 2), clipped to [0, last]."""
    return [min(max(center + j - num_frames // 2, 0), last) for j in range(num_frames)]


def _encode(image: Image.Image, max_side: int | None) -> bytes:
    if max_side and max(image.size) > max_side:
        scale = max_side / max(image.size)
        size = (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale)))
        image = image.resize(size, Image.BILINEAR)
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _size(jpeg: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(jpeg)) as im:
        return im.size[1], im.size[0]


def _folder_frames(folder, timestamps, *, fps, num_frames, max_side, offset):
    index = {}
    for name in os.listdir(folder):
        m = _FRAME_NAME.search(name)
        if m:
            index[int(m.group(1))] = name
    if not index:
        raise BadVideo("empty frame folder", f"{folder}: no JPEG frames")
    count = max(index)
    out = VideoFrames([], [], [], [], fps)
    slot = {}  # 0-based frame index -> position in out.frames

    def frame(i):
        if i in slot:
            return slot[i]
        data, problem = None, None
        if i + 1 not in index:
            name = f"{folder} frame {i + 1}"
            problem = (
                "missing frame",
                (f"{folder}: frame {i + 1} is missing (the folder's frames go up to {count})"),
            )
        else:
            name = os.path.join(folder, index[i + 1])
            with open(name, "rb") as f:
                data = f.read()
            if max_side:
                try:
                    with Image.open(io.BytesIO(data)) as im:
                        if max(im.size) > max_side:
                            data = _encode(im, max_side)
                except OSError as e:
                    data, problem = (
                        None,
                        ("undecodable frame", f"{name}: not a readable JPEG ({e})"),
                    )
        slot[i] = len(out.frames)
        out.frames.append(data)
        out.names.append(name)
        out.problems.append(problem)
        return slot[i]

    for t in timestamps:
        center = keyframe_frame(t, fps, offset)
        if not 0 <= center < count:
            raise BadVideo(
                "timestamp outside video",
                f"{folder}: timestamp {t} needs frame {center + 1} but the folder has "
                f"frames 1..{count} at {fps:g} fps",
            )
        out.windows.append([frame(i) for i in window_indices(center, num_frames, count - 1)])
    return out


def _video_frames(path, timestamps, *, num_frames, max_side, offset):
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError, ValueError) as e:
        raise BadVideo("unreadable video", f"{path}: cannot open video ({e})") from None
    with container:
        if not container.streams.video:
            raise BadVideo("unreadable video", f"{path}: no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            raise BadVideo("unreadable video", f"{path}: unknown frame rate")
        fps = float(rate)
        total = int(stream.frames or 0)
        if not total and stream.duration and stream.time_base:
            total = int(round(float(stream.duration * stream.time_base) * fps))
        centers = [keyframe_frame(t, fps, offset) for t in timestamps]
        bad = [(t, c) for t, c in zip(timestamps, centers) if c < 0 or (total and c >= total)]
        if bad:
            raise BadVideo(
                "timestamp outside video",
                f"{path}: timestamp {bad[0][0]} needs frame {bad[0][1] + 1} but the "
                f"video has {total} frames at {fps:g} fps",
            )
        # Without a frame count in the container, the decode's end is the video's end.
        last = total - 1 if total else max(centers)
        needed = {i for c in centers for i in window_indices(c, num_frames, last)}
        need_max = max(needed)
        frames, decoded, error = {}, 0, ""
        try:
            for frame in container.decode(stream):
                if decoded in needed:
                    frames[decoded] = _encode(frame.to_image(), max_side)
                decoded += 1
                if decoded > need_max:
                    break
        except (av.FFmpegError, OSError, ValueError) as e:
            error = f" ({e})"
    if decoded <= need_max:
        raise BadVideo(
            "truncated video",
            f"{path}: decoded {decoded} frames but the timestamps need frame "
            f"{need_max + 1}" + (f" of {total}" if total else "") + error,
        )
    last = min(last, decoded - 1)
    order = sorted(frames)
    slot = {i: k for k, i in enumerate(order)}
    return VideoFrames(
        [frames[i] for i in order],
        [f"{path} frame {i + 1}" for i in order],
        [None] * len(order),
        [[slot[i] for i in window_indices(c, num_frames, last)] for c in centers],
        fps,
    )


def read_frames(
    source, timestamps, *, num_frames: int, fps: float, max_side=None, offset: float = 0.0
) -> VideoFrames:
    """The frames of the windows around each timestamp of one video.

    Args:
      source: ("frames", folder) or ("video", file) from `find_source`.
      timestamps: ascending keyframe times in seconds.
      num_frames: W. fps: frame rate of JPEG folders (video files use their own).
      max_side: if set, frames larger than this on their longer side are downscaled.
      offset: seconds at which frame 1 starts (0 for AVA-format folders of whole videos).
    Returns:
      `VideoFrames`; a missing or unreadable frame of a folder is in its `problems`.
    Raises:
      BadVideo on an empty folder, a timestamp past the end, an unreadable or short video.
    """
    kind, path = source
    if kind == "frames":
        out = _folder_frames(
            path, timestamps, fps=fps, num_frames=num_frames, max_side=max_side, offset=offset
        )
    else:
        out = _video_frames(
            path, timestamps, num_frames=num_frames, max_side=max_side, offset=offset
        )
    # The stored size: the first readable frame in window order (the first frame of the first
    # window when it is good). A header PIL cannot read makes that frame undecodable.
    for i in (i for w in out.windows for i in w):
        if out.problems[i] is None:
            try:
                out.height, out.width = _size(out.frames[i])
                break
            except OSError as e:
                out.problems[i] = (
                    "undecodable frame",
                    f"{out.names[i]}: not a readable JPEG ({e})",
                )
    return out


@tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
def _decoded_sizes(jpegs):
    """string [F] JPEGs -> int32 [F, 2] (height, width), decoded exactly as the pipeline does
    (`pipeline.make_clip`); raises if any one does not decode."""
    return tf.map_fn(
        lambda b: tf.shape(tf.io.decode_jpeg(b, channels=3))[:2],
        jpegs,
        fn_output_signature=tf.TensorSpec([2], tf.int32),
    )


@contextlib.contextmanager
def _libjpeg_messages():
    """Collects what is written to file descriptor 2 inside the block (TensorFlow's JPEG
    decoder prints libjpeg's complaint about a bad file there) -> a list, filled on exit."""
    sys.stderr.flush()
    saved, lines = os.dup(2), []
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(
                l.strip() for l in tmp.read().decode(errors="replace").splitlines() if l.strip()
            )


def check_frames(video: VideoFrames, used, chunk: int = 256):
    """Decodes the frames `used` (indices into video.frames) with TensorFlow's decoder and
    adds a problem to `video.problems` for each one that fails (naming the file, with
    libjpeg's complaint) or has another size than the video's height x width."""
    todo = [i for i in sorted(used) if video.problems[i] is None]
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        try:
            with _libjpeg_messages():
                sizes = _decoded_sizes(tf.constant([video.frames[i] for i in part])).numpy()
        except tf.errors.InvalidArgumentError:  # find which ones, one at a time
            sizes = []
            for i in part:
                try:
                    with _libjpeg_messages() as printed:
                        size = tf.shape(tf.io.decode_jpeg(video.frames[i], channels=3))[:2]
                    sizes.append(size)
                except tf.errors.InvalidArgumentError as e:
                    sizes.append(None)
                    why = re.sub(
                        r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:[^\]]*\]",
                        "",
                        e.message.strip().splitlines()[0],
                    )
                    # libjpeg's own words; TensorFlow's log lines (timestamped) are noise
                    why += "".join(
                        f"; libjpeg: {l}" for l in printed if not re.match(r"\d{4}-\d\d-\d\d ", l)
                    )
                    video.problems[i] = (
                        "undecodable frame",
                        (f"{video.names[i]}: not a decodable JPEG (tf.io.decode_jpeg: {why})"),
                    )
        for i, size in zip(part, sizes):
            if size is not None and tuple(int(v) for v in size) != (video.height, video.width):
                video.problems[i] = (
                    "frame size differs",
                    (
                        f"{video.names[i]}: {int(size[0])}x{int(size[1])} pixels where the video's "
                        f"first frame has {video.height}x{video.width}"
                    ),
                )


def read_windows(
    source, timestamps, *, num_frames: int, fps: float, max_side=None, offset: float = 0.0
):
    """JPEG windows around each timestamp of one video (`read_frames` as bytes).

    Returns:
      (windows: list of W JPEG bytes per timestamp, fps, height, width).
    Raises:
      BadVideo as `read_frames`, and on the first missing or unreadable frame.
    """
    out = read_frames(
        source, timestamps, num_frames=num_frames, fps=fps, max_side=max_side, offset=offset
    )
    for w in out.windows:
        for i in w:
            if out.problems[i]:
                raise BadVideo(*out.problems[i])
    return [[out.frames[i] for i in w] for w in out.windows], out.fps, out.height, out.width
