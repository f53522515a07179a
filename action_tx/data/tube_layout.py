"""Tube data sets (UCF101-24, JHMDB-21) -> our AVA-format layout, keyed losslessly by frame.

AVA keys a keyframe by (video_id, integer timestamp) and the TFRecord converter reads the frame
`round((timestamp - offset) * fps) + 1` of `frames/VID/`. These data sets are annotated per frame
(25 or 30 fps), so seconds would merge 25 frames into one key. Here the timestamp *is* the
0-based frame index and the layout states `fps=1` in its README.txt (which the converter reads):
frame k of the video is `frames/VID/%05d.jpg` with number k + 1, and timestamp t reads exactly
frame t + 1. The clip window of `--num_frames` frames around it is then consecutive source
frames, as for AVA. Nothing is rounded, so two frames never share a key.

Written under `out_dir`:
  annotations/ava_{train,test}.csv    one row per (keyframe, tube box): x1,y1,x2,y2 normalized,
                                      action id (class index + 1), person id (the tube's index in
                                      its video); a keyframe on no tube is a 2-column row (a
                                      background frame: detections there are false positives).
  annotations/ava_{split}_excluded_timestamps.csv  keyframes whose annotation was bad (with
                                      skip_bad), left out of training and scoring.
  annotations/<name>_action_list.pbtxt label map, ids 1..C.
  frames/VID/00001.jpg ...            every frame (a link to a JPEG folder, else decoded).
  README.txt                          fps=1 and what the timestamps mean.
  conversion_manifest.json            counts, options, every rejected video and box (video:frame).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil

import numpy as np

from action_tx.data import ava


class TubeDataError(ValueError):
    """Input that cannot be converted: the message names the file, video or video:frame."""


@dataclasses.dataclass
class Tube:
    """label: 0-based class index. frames: [n] int64 0-based frame indices, ascending.
    boxes: [n, 4] float64 normalized [y1, x1, y2, x2]."""

    label: int
    frames: np.ndarray
    boxes: np.ndarray


@dataclasses.dataclass
class Video:
    """name: the layout's video id. nframes: frames in the video. tubes: its `Tube`s.
    source: where its frames are: ("jpeg_folder", dir), ("image_folder", dir) or
    ("video", file); None when not found."""

    name: str
    nframes: int
    tubes: list
    source: tuple | None = None


@dataclasses.dataclass
class TubeDataset:
    """class_names: [C] names. videos: name -> `Video`. splits: {"train": [...], "test": [...]}.
    problems: ("video:frame", reason) of boxes the readers found bad (not in `Video.tubes`)."""

    class_names: list
    videos: dict
    splits: dict
    problems: list = dataclasses.field(default_factory=list)


def check_box(box_xyxy, width, height, where):
    """Pixel box x1,y1,x2,y2 -> (normalized yxyx, None) or (None, reason). Coordinates up to
    one pixel outside the image are clipped (annotation tools overshoot by that much)."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    if not np.all(np.isfinite([x1, y1, x2, y2])):
        return None, "non-finite box"
    if x1 < -1 or y1 < -1 or x2 > width + 1 or y2 > height + 1:
        return None, f"box {x1:g},{y1:g},{x2:g},{y2:g} outside the {width}x{height} image"
    box = np.array(
        [max(y1, 0) / height, max(x1, 0) / width, min(y2, height) / height, min(x2, width) / width]
    )
    # The CSV keeps 3 decimals: a box narrower than that would read back empty.
    if np.round(box[2], 3) <= np.round(box[0], 3) or np.round(box[3], 3) <= np.round(box[1], 3):
        return None, f"empty box {x1:g},{y1:g},{x2:g},{y2:g}"
    return box, None


def _frames(video: Video):
    """Yields each frame of a video source as JPEG bytes (image folders and videos)."""
    from PIL import Image

    kind, path = video.source
    if kind == "image_folder":
        names = sorted(n for n in os.listdir(path) if os.path.splitext(n)[0].isdigit())
        for n in names:
            with Image.open(os.path.join(path, n)) as im:
                buf = io.BytesIO()
                im.convert("RGB").save(buf, format="JPEG", quality=90)
                yield buf.getvalue()
        return
    import av

    with av.open(path) as container:
        for frame in container.decode(container.streams.video[0]):
            buf = io.BytesIO()
            frame.to_image().convert("RGB").save(buf, format="JPEG", quality=90)
            yield buf.getvalue()


def _count_jpegs(folder: str) -> int:
    return sum(os.path.splitext(n)[0].isdigit() for n in os.listdir(folder))


def write_frames(video: Video, folder: str, copy: bool = False) -> None:
    """frames/VID/: a symlink to a JPEG folder (or a copy), else decoded frames %05d.jpg."""
    kind, path = video.source
    if kind == "jpeg_folder" and not copy:
        os.symlink(os.path.abspath(path), folder)
        return
    os.makedirs(folder)
    if kind == "jpeg_folder":
        names = sorted(n for n in os.listdir(path) if os.path.splitext(n)[0].isdigit())
        data = (open(os.path.join(path, n), "rb").read() for n in names)
    else:
        data = _frames(video)
    for i, jpeg in enumerate(data):
        with open(os.path.join(folder, f"{i + 1:05d}.jpg"), "wb") as f:
            f.write(jpeg)


def _split_rows(dataset: TubeDataset, names, stride: int, bad_keys: set):
    """AVA rows of one split's videos at every `stride`-th frame (0, stride, 2 stride, ...)."""
    video, ts, boxes, action, person = [], [], [], [], []
    for name in names:
        v = dataset.videos[name]
        keys = np.arange(0, v.nframes, stride)
        covered = np.zeros(v.nframes, bool)
        for i, tube in enumerate(v.tubes):
            on = tube.frames % stride == 0
            covered[tube.frames[on]] = True
            video += [name] * int(on.sum())
            ts.append(tube.frames[on])
            boxes.append(tube.boxes[on])
            action.append(np.full(int(on.sum()), tube.label + 1))
            person.append(np.full(int(on.sum()), i))
        empty = keys[~covered[keys]]
        video += [name] * len(empty)
        ts.append(empty)
        boxes.append(np.full((len(empty), 4), np.nan))
        action.append(np.full(len(empty), -1))
        person.append(np.full(len(empty), -1))
    ts = np.concatenate(ts).astype(np.int64) if ts else np.zeros(0, np.int64)
    video = np.array(video, dtype=object)
    keep = np.array([(v, int(t)) not in bad_keys for v, t in zip(video, ts)], bool)
    order = np.lexsort((np.concatenate(person)[keep] if person else [], ts[keep], video[keep]))

    def cat(parts, shape):
        return np.concatenate(parts)[keep][order] if parts else np.zeros(shape)

    return ava.Annotations(
        video_id=video[keep][order],
        timestamp=ts[keep][order],
        boxes=cat(boxes, (0, 4)),
        action_id=cat(action, 0),
        person_id=cat(person, 0),
        score=np.full(int(keep.sum()), np.nan),
        line=np.zeros(int(keep.sum()), np.int64),
    )


def write_layout(
    dataset: TubeDataset,
    out_dir: str,
    *,
    name: str,
    keyframe_stride: int = 1,
    source_fps: float | None = None,
    skip_bad: bool = False,
    copy_frames: bool = False,
    options: dict | None = None,
) -> dict:
    """Writes the layout (module docstring); returns the manifest (also written as JSON).

    Raises TubeDataError listing bad boxes (video:frame) and videos whose frames are missing or
    fewer than annotated, unless skip_bad: then those keyframes are excluded, those videos
    dropped, and all of it listed in the manifest.
    """
    if keyframe_stride < 1:
        raise TubeDataError(f"keyframe stride must be >= 1, got {keyframe_stride}")
    # Frames first (each video decoded once), then their count checked against the annotation.
    bad_videos = {}
    for names in dataset.splits.values():
        for n in names:
            v = dataset.videos[n]
            if v.source is None:
                bad_videos[n] = "no frame folder or video found"
                continue
            folder = os.path.join(out_dir, "frames", n)
            # A folder of an earlier run is reused when complete, else written again.
            if os.path.lexists(folder) and (
                not os.path.exists(folder) or _count_jpegs(folder) < v.nframes
            ):
                if os.path.islink(folder):
                    os.unlink(folder)
                else:
                    shutil.rmtree(folder)
            if not os.path.lexists(folder):
                os.makedirs(os.path.dirname(folder), exist_ok=True)
                try:
                    write_frames(v, folder, copy_frames)
                except (OSError, ValueError) as e:  # PyAV's errors are OSError/ValueError
                    bad_videos[n] = f"{v.source[1]}: unreadable ({e})"
                    continue
            have = _count_jpegs(folder)
            if have < v.nframes:
                bad_videos[n] = f"{v.source[1]}: {have} frames, the annotation says {v.nframes}"
    problems = list(dataset.problems)
    if (problems or bad_videos) and not skip_bad:
        lines = [f"{w}: {r}" for w, r in problems[:20]]
        lines += [f"{n}: {r}" for n, r in list(bad_videos.items())[:20]]
        more = len(problems) + len(bad_videos) - len(lines)
        raise TubeDataError(
            "bad input (use --skip_bad to exclude it and list it in the "
            "manifest):\n" + "\n".join(lines) + (f"\n... and {more} more" if more > 0 else "")
        )
    bad_keys = set()
    for where, _ in problems:
        video, frame = where.rsplit(":", 1)
        bad_keys.add((video, int(frame)))
    ann_dir = os.path.join(out_dir, "annotations")
    os.makedirs(ann_dir, exist_ok=True)
    label_map = ava.LabelMap(
        ids=tuple(range(1, len(dataset.class_names) + 1)),
        names={i + 1: n for i, n in enumerate(dataset.class_names)},
    )
    ava.write_label_map(os.path.join(ann_dir, f"{name}_action_list.pbtxt"), label_map)
    counts = {}
    for split, names in dataset.splits.items():
        names = sorted(n for n in names if n not in bad_videos)
        rows = _split_rows(dataset, names, keyframe_stride, bad_keys)
        ava.write_annotations(os.path.join(ann_dir, f"ava_{split}.csv"), rows)
        excluded = sorted(
            (v, t)
            for v, t in bad_keys
            if v in set(names) and t % keyframe_stride == 0 and 0 <= t < dataset.videos[v].nframes
        )
        with open(os.path.join(ann_dir, f"ava_{split}_excluded_timestamps.csv"), "w") as f:
            f.write("".join(f"{v},{t:04d}\n" for v, t in excluded))
        has_box = ~np.isnan(rows.boxes[:, 0])
        counts[split] = {
            "videos": len(names),
            "tubes": sum(len(dataset.videos[n].tubes) for n in names),
            "keyframes": len(set(zip(rows.video_id.tolist(), rows.timestamp.tolist()))),
            "boxes": int(has_box.sum()),
            "background_keyframes": int((~has_box).sum()),
            "excluded_keyframes": len(excluded),
        }
    with open(os.path.join(out_dir, "README.txt"), "w") as f:
        f.write(
            "fps=1\n\nTimestamps are 0-based frame indices: timestamp t is frames/VID/"
            "%05d.jpg number t + 1, so the converter reads it exactly at fps=1.\n"
            f"Data set: {name}; keyframes every {keyframe_stride} frame(s)"
            + (f"; the source videos run at {source_fps:g} frames per second" if source_fps else "")
            + ".\n"
        )
    manifest = {
        "dataset": name,
        "keyframe_stride": keyframe_stride,
        "timestamp": "0-based frame index",
        "layout_fps": 1,
        "source_fps": source_fps,
        "classes": list(dataset.class_names),
        "splits": counts,
        "options": options or {},
        "rejected_boxes": [{"where": w, "reason": r} for w, r in problems],
        "rejected_videos": [{"video": n, "reason": r} for n, r in sorted(bad_videos.items())],
    }
    with open(os.path.join(out_dir, "conversion_manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def summary(out_dir: str, manifest: dict) -> str:
    """One line about a `write_layout` result: videos and keyframes per split, what was rejected."""
    splits = "; ".join(
        f"{s}: {c['videos']} videos, {c['keyframes']} keyframes"
        for s, c in manifest["splits"].items()
    )
    return (
        f"wrote {out_dir}: {splits}; rejected {len(manifest['rejected_boxes'])} boxes, "
        f"{len(manifest['rejected_videos'])} videos"
    )
