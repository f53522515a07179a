"""Downloaded AVA movies (and AVA-Kinetics' Kinetics clips) -> the AVA layout the converter reads.

For each movie of the annotation CSVs, the annotated segment is cut, resampled to `fps` and
scaled to a short side, and written as `OUT/videos/VID.mp4` or `OUT/frames/VID/VID_%06d.jpg`:

- AVA movies: keyframes at 902..1798 s; the segment is [902 - margin, 1798 + margin] s of the
  movie (default margin 2 s: 900-1800 s, what PySlowFast cuts; a 64-frame window at 30 fps
  reaches 1.07 s either side of its keyframe). Frame k (1-based) shows movie time
  `start + (k - 1) / fps`: convert with `--timestamp_offset=start` (900 by default).
- Kinetics clips (`kinetics=True`): keyframe timestamps are relative to the clip, so the whole
  clip is written from its time 0 (convert with `--timestamp_offset=0`); the clip must reach
  its last keyframe.

Resampling: output frame i shows the source frame on screen at time start + i / fps (the last
frame whose presentation time is <= it, exact rational arithmetic on the stream's time base),
like FFmpeg's fps filter with round=down. The short side is scaled to `short_side` (the other
side keeps the aspect ratio, rounded to even for the video codec); 0 keeps the source size.

Resume: a movie is written under a hidden temporary name (`videos/.partial-VID.mp4`,
`frames/.partial-VID/`) and renamed when complete, so a killed run leaves no file the converter
would take. A later run skips a movie whose output exists with the expected frame count and
short side, and redoes any other (temporaries of a killed run are removed first).

Per-movie failures (`BadMovie`: missing, undecodable, too short) are counted and named in the
result, never fatal.
"""

from __future__ import annotations

import collections
import csv
import glob
import multiprocessing
import os
import re
import shutil
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np
from PIL import Image

from action_tx.data.frame_source import JPEG_QUALITY
from action_tx.progress import Progress

AVA_FIRST_KEYFRAME, AVA_LAST_KEYFRAME = 902, 1798
FPS = 30
# The largest input of the papers: Action Transformer 400 x 400 (§4); SlowFast-based AIA and
# ACAR test at short side 256 (training jitter 256-320), a downscale of these frames.
DEFAULT_SHORT_SIDE = 400
DEFAULT_MARGIN = 2.0
FORMATS = ("videos", "frames")
PARTIAL = ".partial-"
_KINETICS_NAME = re.compile(r"^(.+)_\d{6}_\d{6}$")  # Kinetics: YTID_START_END.mp4


class BadMovie(Exception):
    """A movie that cannot be prepared; `reason` is one of missing / undecodable / too short."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class PrepareResult:
    """done: movies written by this run; skipped: already complete; failed: reason -> ids;
    messages: id -> the failure's message; timestamp_offset: for the converter (None when
    Kinetics clips and AVA movies would need different ones: never, one mode per run)."""

    done: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: dict = field(default_factory=dict)
    messages: dict = field(default_factory=dict)
    timestamp_offset: float = 0.0


def read_keyframes(csv_paths) -> dict:
    """{video_id: largest keyframe timestamp (s)} of AVA CSVs (video_id, timestamp, ...)."""
    last = {}
    for path in csv_paths:
        with open(path, newline="") as f:
            for row in csv.reader(f):
                if len(row) < 2 or not row[0].strip():
                    continue
                try:
                    t = float(row[1])
                except ValueError:  # a header line
                    continue
                last[row[0].strip()] = max(t, last.get(row[0].strip(), t))
    return last


def find_movie(movies_dir: str, video_id: str) -> str | None:
    """`movies_dir/VID.*`, or a Kinetics clip `VID_NNNNNN_NNNNNN.*`; None when absent."""
    names = sorted(glob.glob(os.path.join(glob.escape(movies_dir), glob.escape(video_id) + ".*")))
    if not names:
        names = [
            p
            for p in sorted(
                glob.glob(os.path.join(glob.escape(movies_dir), glob.escape(video_id) + "_*"))
            )
            if (m := _KINETICS_NAME.match(os.path.splitext(os.path.basename(p))[0]))
            and m.group(1) == video_id
        ]
    return names[0] if names else None


def output_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) with the short side scaled to `short_side` (0: unchanged), both even."""
    if short_side:
        scale = short_side / min(height, width)
        height, width = round(height * scale), round(width * scale)
    return max(2, height - height % 2), max(2, width - width % 2)


def segment(
    last_keyframe: float,
    *,
    kinetics: bool,
    margin: float,
    fps: int,
    clip_seconds: Fraction | None = None,
) -> tuple[Fraction, int, Fraction]:
    """(start s, frames to write, time the source must reach s) of one movie."""
    if kinetics:
        reach = Fraction(last_keyframe).limit_denominator(1000)
        end = clip_seconds if clip_seconds is not None else reach
        return Fraction(0), max(1, int(end * fps)), reach
    start = Fraction(AVA_FIRST_KEYFRAME) - Fraction(margin).limit_denominator(1000)
    end = Fraction(AVA_LAST_KEYFRAME) + Fraction(margin).limit_denominator(1000)
    count = int((end - start) * fps)
    return start, count, start + Fraction(count - 1, fps)


def _open(path):
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError, ValueError) as e:
        raise BadMovie("undecodable", f"{path}: cannot open ({e})") from None
    if not container.streams.video:
        container.close()
        raise BadMovie("undecodable", f"{path}: no video stream")
    return container


def _clip_seconds(stream, container) -> Fraction | None:
    if stream.duration and stream.time_base:
        return stream.duration * stream.time_base
    if container.duration:
        return Fraction(container.duration, av.time_base)
    return None


def _resampled(
    container, stream, start: Fraction, count: int, fps: int, reach: Fraction, path: str
):
    """Yields (i, av.VideoFrame) for output frames i = 0..count-1 (see the module docstring)."""
    origin = (stream.start_time or 0) * stream.time_base
    if start > 2:  # seek near the segment instead of decoding the movie's first 15 minutes
        try:
            container.seek(
                int((start - 2 + origin) / stream.time_base), stream=stream, backward=True
            )
        except (av.FFmpegError, OSError):
            container.seek(0)
    previous, i = None, 0
    target = start
    try:
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            shown = frame.pts * stream.time_base - origin
            while i < count and target < shown:
                if previous is None:
                    raise BadMovie(
                        "undecodable",
                        f"{path}: the first decoded frame is at "
                        f"{float(shown):.3f} s, after {float(target):.3f} s",
                    )
                yield i, previous
                i += 1
                target = start + Fraction(i, fps)
            if i >= count:
                return
            previous, last_shown = frame, shown
    except (av.FFmpegError, OSError, ValueError) as e:
        raise BadMovie(
            "undecodable",
            f"{path}: decoding failed at output frame {i} "
            f"({float(start + Fraction(i, fps)):.2f} s): {e}",
        ) from None
    if previous is None:
        raise BadMovie("undecodable", f"{path}: no frame decoded")
    # The source ended: its last frame stays on screen for one source frame interval.
    rate = stream.average_rate or stream.guessed_rate or fps
    if last_shown + 1 / Fraction(rate) <= reach:
        raise BadMovie(
            "too short",
            f"{path}: the video ends at {float(last_shown):.2f} s but "
            f"the keyframes need {float(reach):.2f} s",
        )
    while i < count:
        yield i, previous
        i += 1


def _write(frames, kind: str, path: str, video_id: str, size, fps: int) -> int:
    height, width = size
    written = 0
    if kind == "frames":
        os.makedirs(path)
        for i, frame in frames:
            image = frame.to_image().resize((width, height), Image.BILINEAR)
            image.save(os.path.join(path, f"{video_id}_{i + 1:06d}.jpg"), quality=JPEG_QUALITY)
            written += 1
        return written
    with av.open(path, "w", format="mp4") as out:
        stream = out.add_stream(
            "libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"crf": "18"} if stream.codec_context.name == "libx264" else {}
        for i, frame in frames:
            image = frame.reformat(width=width, height=height, format="yuv420p")
            image.pts, image.time_base = i, Fraction(1, fps)
            out.mux(stream.encode(image))
            written += 1
        out.mux(stream.encode(None))
    return written


def output_path(out_dir: str, kind: str, video_id: str, partial: bool = False) -> str:
    name = (PARTIAL if partial else "") + video_id
    return os.path.join(out_dir, kind, name + (".mp4" if kind == "videos" else ""))


def count_frames(path: str, kind: str) -> tuple[int, int]:
    """(frames, short side) of a prepared movie; (0, 0) when absent or unreadable."""
    try:
        if kind == "frames":
            names = sorted(n for n in os.listdir(path) if n.endswith(".jpg"))
            if not names:
                return 0, 0
            with Image.open(os.path.join(path, names[0])) as im:
                return len(names), min(im.size)
        with av.open(path) as container:
            stream = container.streams.video[0]
            count = stream.frames or sum(1 for _ in container.decode(stream))
            return count, min(stream.width, stream.height)
    except (OSError, av.FFmpegError, ValueError, IndexError):
        return 0, 0


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


def prepare_movie(task: dict) -> tuple[str, str, str]:
    """One movie -> (video_id, "done" | "skipped" | reason, message). `task`: video_id,
    movies_dir, out_dir, kind, last_keyframe, kinetics, margin, fps, short_side."""
    vid, kind, fps = task["video_id"], task["kind"], task["fps"]
    final = output_path(task["out_dir"], kind, vid)
    partial = output_path(task["out_dir"], kind, vid, partial=True)
    try:
        source = find_movie(task["movies_dir"], vid)
        if source is None:
            raise BadMovie("missing", f"no {os.path.join(task['movies_dir'], vid)}.* file")
        with _open(source) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            start, count, reach = segment(
                task["last_keyframe"],
                kinetics=task["kinetics"],
                margin=task["margin"],
                fps=fps,
                clip_seconds=_clip_seconds(stream, container),
            )
            size = output_size(stream.height, stream.width, task["short_side"])
            if os.path.exists(final):
                if count_frames(final, kind) == (count, min(size)):
                    return vid, "skipped", ""
                _remove(final)  # incomplete or written with other options: redo
            _remove(partial)  # left by a killed run
            frames = _resampled(container, stream, start, count, fps, reach, source)
            written = _write(frames, kind, partial, vid, size, fps)
        if written != count or count_frames(partial, kind) != (count, min(size)):
            raise BadMovie("undecodable", f"{source}: wrote {written} of {count} frames")
        os.replace(partial, final)
        return vid, "done", ""
    except BadMovie as e:
        _remove(partial)
        return vid, e.reason, str(e)


def prepare(
    movies_dir: str,
    annotation_csvs,
    out_dir: str,
    *,
    kind: str = "videos",
    short_side: int = DEFAULT_SHORT_SIDE,
    fps: int = FPS,
    margin: float = DEFAULT_MARGIN,
    kinetics: bool = False,
    num_workers: int = 1,
    progress: bool = True,
) -> PrepareResult:
    """Prepares every movie named in `annotation_csvs` (see the module docstring).

    Args:
      movies_dir: folder of downloaded movies / clips (any container PyAV reads).
      annotation_csvs: AVA annotation CSVs (video_id, timestamp, ...) naming the movies.
      out_dir: AVA-format root: `videos/` or `frames/` is written there.
      kind: "videos" (mp4, H.264 CRF 18 when available) or "frames" (JPEG quality 90).
      short_side: pixels of the short side (0: the source's). fps: output frame rate.
      margin: seconds kept around the first and last AVA keyframes.
      kinetics: the movies are Kinetics clips with clip-relative timestamps.
      num_workers: processes, one movie each. progress: show a progress bar (movies).
    """
    if kind not in FORMATS:
        raise ValueError(f"kind must be one of {FORMATS}, got {kind!r}")
    last = read_keyframes(annotation_csvs)
    os.makedirs(os.path.join(out_dir, kind), exist_ok=True)
    tasks = [
        dict(
            video_id=v,
            movies_dir=movies_dir,
            out_dir=out_dir,
            kind=kind,
            last_keyframe=t,
            kinetics=kinetics,
            margin=margin,
            fps=fps,
            short_side=short_side,
        )
        for v, t in sorted(last.items())
    ]
    result = PrepareResult(
        timestamp_offset=0.0
        if kinetics
        else float(segment(0, kinetics=False, margin=margin, fps=fps)[0])
    )
    failed = collections.defaultdict(list)
    bar = Progress(len(tasks), "prepare", progress, unit="movies")
    pool = multiprocessing.get_context("fork").Pool(num_workers) if num_workers > 1 else None
    try:
        done = pool.imap_unordered(prepare_movie, tasks) if pool else map(prepare_movie, tasks)
        for vid, status, message in done:
            if status == "done":
                result.done.append(vid)
            elif status == "skipped":
                result.skipped.append(vid)
            else:
                failed[status].append(vid)
                result.messages[vid] = message
            bar.update(1, note=f"{sum(map(len, failed.values()))} failed")
    finally:
        bar.close()
        if pool:
            pool.terminate()
    result.done.sort()
    result.skipped.sort()
    result.failed = {k: sorted(v) for k, v in sorted(failed.items())}
    return result


def read_frames(path: str, kind: str, indices) -> dict:
    """{index: uint8 [H, W, 3]} of frames `indices` (0-based) of a prepared movie (checks,
    tests); one decode pass for a video."""
    wanted, got = set(indices), {}
    if kind == "frames":
        vid = os.path.basename(path)
        for i in wanted:
            with Image.open(os.path.join(path, f"{vid}_{i + 1:06d}.jpg")) as im:
                got[i] = np.asarray(im.convert("RGB"))
        return got
    with av.open(path) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                got[i] = frame.to_ndarray(format="rgb24")
            if len(got) == len(wanted):
                break
    if len(got) != len(wanted):
        raise IndexError(f"{path}: no frames {sorted(wanted - set(got))}")
    return got
