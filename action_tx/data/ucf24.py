"""UCF101-24 with the corrected annotations of Singh et al. (the pickle `UCF101v2-GT.pkl`).

The pickle is a dict with these keys (the format the ACT/MOC code bases distribute):
  labels:        [24] class names; a tube's label is an index into it.
  gttubes:       {video: {label: [array [n, 5] of (frame, x1, y1, x2, y2)]}}, frames 1-based,
                 boxes in pixels.
  nframes:       {video: number of frames}.
  train_videos, test_videos: one list of videos per split (UCF101-24 has one split).
  resolution:    {video: (height, width)}.
Videos are named `Class/v_Class_gGG_cCC`; the layout's video id is the part after the slash.
Frames come from `rgb-images/Class/v_.../00001.jpg` folders or from the UCF101 videos
(`UCF-101/Class/v_....avi`).
"""

from __future__ import annotations

import glob
import os
import pickle

import numpy as np

from action_tx.data.tube_layout import Tube, TubeDataError, TubeDataset, Video, check_box

KEYS = ("labels", "gttubes", "nframes", "train_videos", "test_videos", "resolution")
SOURCE_FPS = 25.0  # UCF101 videos


def load_pickle(path):
    """The annotation dict; the original is a Python 2 pickle (latin1 strings)."""
    try:
        with open(path, "rb") as f:
            data = pickle.load(f, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError) as e:
        raise TubeDataError(f"{path}: cannot read the annotation pickle ({e})") from None
    if not isinstance(data, dict):
        raise TubeDataError(f"{path}: expected a dict, got {type(data).__name__}")
    missing = [k for k in KEYS if k not in data]
    if missing:
        raise TubeDataError(
            f"{path}: missing key(s) {', '.join(missing)} (has {', '.join(sorted(map(str, data)))})"
        )
    return data


def _video_id(video: str) -> str:
    return video.rsplit("/", 1)[-1]


def find_source(video: str, frames_dir=None, videos_dir=None):
    """("jpeg_folder", dir) under frames_dir, else ("video", file) under videos_dir, else None.
    Both are tried as `<dir>/Class/v_...` and `<dir>/v_...`."""
    for root in filter(None, [frames_dir]):
        for rel in (video, _video_id(video)):
            if os.path.isdir(os.path.join(root, rel)):
                return "jpeg_folder", os.path.join(root, rel)
    for root in filter(None, [videos_dir]):
        for rel in (video, _video_id(video)):
            found = sorted(glob.glob(glob.escape(os.path.join(root, rel)) + ".*"))
            if found:
                return "video", found[0]
    return None


def read(path, split_index: int = 1, frames_dir=None, videos_dir=None) -> TubeDataset:
    """UCF101-24 annotations -> `TubeDataset` with splits train/test of `split_index` (1-based).

    Raises TubeDataError naming the file and the video (structure errors); bad boxes are
    collected in `problems` as "video:frame" (frame 0-based, as the layout's timestamps).
    """
    data = load_pickle(path)
    labels = [str(n) for n in data["labels"]]
    splits = {}
    for split in ("train", "test"):
        lists = data[f"{split}_videos"]
        if not 1 <= split_index <= len(lists):
            raise TubeDataError(
                f"{path}: {split}_videos has {len(lists)} split(s), asked for split {split_index}"
            )
        splits[split] = [str(v) for v in lists[split_index - 1]]
    videos, problems, ids = {}, [], {}
    for video in splits["train"] + splits["test"]:
        vid = _video_id(video)
        if ids.setdefault(vid, video) != video:
            raise TubeDataError(f"{path}: videos {ids[vid]} and {video} share the id {vid}")
        for key in ("nframes", "resolution", "gttubes"):
            if video not in data[key]:
                raise TubeDataError(
                    f"{path}: video {video} of the split lists has no '{key}' entry"
                )
        nframes = int(data["nframes"][video])
        height, width = (int(v) for v in data["resolution"][video])
        tubes = []
        for label, tube_list in sorted(data["gttubes"][video].items()):
            if not 0 <= int(label) < len(labels):
                raise TubeDataError(
                    f"{path}: video {video}: label {label} outside 0..{len(labels) - 1}"
                )
            for k, arr in enumerate(tube_list):
                arr = np.asarray(arr, np.float64)
                if arr.ndim != 2 or arr.shape[1] != 5 or not len(arr):
                    raise TubeDataError(
                        f"{path}: video {video} label {label} tube {k}: "
                        f"expected an [n, 5] array, got shape {arr.shape}"
                    )
                frames, boxes = [], []
                for row in arr:
                    frame = int(row[0]) - 1
                    where = f"{vid}:{frame}"
                    if row[0] != int(row[0]):
                        raise TubeDataError(
                            f"{path}: video {video} label {label} tube {k}: "
                            f"frame {row[0]:g} is not an integer"
                        )
                    if not 0 <= frame < nframes:
                        problems.append(
                            (
                                where,
                                f"tube {k} of label {label}: frame {row[0]:g} outside 1..{nframes}",
                            )
                        )
                        continue
                    box, reason = check_box(row[1:], width, height, where)
                    if reason:
                        problems.append((where, reason))
                        continue
                    frames.append(frame)
                    boxes.append(box)
                if frames:
                    order = np.argsort(frames, kind="stable")
                    tubes.append(
                        Tube(
                            int(label),
                            np.asarray(frames, np.int64)[order],
                            np.asarray(boxes)[order],
                        )
                    )
        videos[vid] = Video(vid, nframes, tubes, find_source(video, frames_dir, videos_dir))
    return TubeDataset(
        labels, videos, {s: [_video_id(v) for v in vs] for s, vs in splits.items()}, problems
    )
