"""JHMDB-21: boxes from the puppet masks, the three official splits.

Layout of the download (Jhuang et al., ICCV 2013):
  puppet_mask/Class/VIDEO/puppet_mask.mat  variable `part_mask`: [H, W, T] mask of the actor
  Rename_Images/Class/VIDEO/00001.png ...  the frames
  splits/Class_test_split{1,2,3}.txt       lines `VIDEO.avi 1` (train) or `VIDEO.avi 2` (test)
One tube per video (the puppet) labelled with the video's class. The box of frame t is the
mask's extent in pixel edges: x1 = first column with mask, x2 = last column + 1 (so a
one-pixel mask is a one-pixel box), normalized by W (y likewise by H). A frame with an empty
mask has no box (the tube has a gap there).
"""

from __future__ import annotations

import glob
import os

import numpy as np

from action_tx.data.tube_layout import Tube, TubeDataError, TubeDataset, Video, check_box

SOURCE_FPS = 30.0  # JHMDB clips
MASK_KEY = "part_mask"


def mask_boxes(mask: np.ndarray):
    """[H, W, T] mask -> (frames [n] with any mask, boxes [n, 4] pixel x1,y1,x2,y2)."""
    mask = np.asarray(mask) != 0
    rows = mask.any(axis=1)  # [H, T]
    cols = mask.any(axis=0)  # [W, T]
    frames = np.flatnonzero(rows.any(axis=0))
    rows, cols = rows[:, frames], cols[:, frames]
    y1 = rows.argmax(axis=0)
    y2 = rows.shape[0] - rows[::-1].argmax(axis=0)
    x1 = cols.argmax(axis=0)
    x2 = cols.shape[0] - cols[::-1].argmax(axis=0)
    return frames, np.stack([x1, y1, x2, y2], axis=1).astype(np.float64)


def read_splits(root: str, split_index: int):
    """{class: {"train": [videos], "test": [videos]}} from splits/*_test_split{N}.txt."""
    pattern = os.path.join(glob.escape(root), "splits", f"*_test_split{split_index}.txt")
    files = sorted(glob.glob(pattern))
    if not files:
        raise TubeDataError(f"no split files: nothing matches {pattern}")
    out = {}
    for path in files:
        cls = os.path.basename(path)[: -len(f"_test_split{split_index}.txt")]
        out[cls] = {"train": [], "test": []}
        with open(path) as f:
            for line_no, line in enumerate(f, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2 or parts[1] not in ("1", "2"):
                    raise TubeDataError(
                        f"{path}:{line_no}: expected `VIDEO.avi 1|2`, got {line.strip()!r}"
                    )
                video = os.path.splitext(parts[0])[0]
                out[cls]["train" if parts[1] == "1" else "test"].append(video)
    return out


def _load_mask(path):
    import scipy.io

    try:
        mat = scipy.io.loadmat(path)
    except (OSError, ValueError, TypeError) as e:
        raise TubeDataError(f"{path}: cannot read the .mat file ({e})") from None
    if MASK_KEY not in mat:
        raise TubeDataError(
            f"{path}: no variable '{MASK_KEY}' (has "
            f"{', '.join(k for k in mat if not k.startswith('__'))})"
        )
    mask = mat[MASK_KEY]
    if mask.ndim == 2:
        mask = mask[:, :, None]
    if mask.ndim != 3:
        raise TubeDataError(f"{path}: '{MASK_KEY}' should be [H, W, T], got shape {mask.shape}")
    return mask


def _frame_count(folder):
    return sum(os.path.splitext(n)[0].isdigit() for n in os.listdir(folder))


def read(root: str, split_index: int = 1) -> TubeDataset:
    """JHMDB-21 under `root` -> `TubeDataset` of split `split_index` (1, 2 or 3).

    A video's frame count is its image folder's, or its mask's when that has more (the writer
    then reports the folder as short).
    """
    if split_index not in (1, 2, 3):
        raise TubeDataError(f"JHMDB has splits 1, 2 and 3, not {split_index}")
    per_class = read_splits(root, split_index)
    classes = sorted(per_class)
    videos, splits, problems = {}, {"train": [], "test": []}, []
    for label, cls in enumerate(classes):
        for split in ("train", "test"):
            for name in per_class[cls][split]:
                if name in videos:
                    raise TubeDataError(f"video {name} is listed twice in the split files")
                mat = os.path.join(root, "puppet_mask", cls, name, "puppet_mask.mat")
                if not os.path.isfile(mat):
                    raise TubeDataError(
                        f"{mat}: missing (video {name} of splits/{cls}_test_split{split_index}.txt)"
                    )
                mask = _load_mask(mat)
                height, width, nmask = mask.shape
                image_dir = os.path.join(root, "Rename_Images", cls, name)
                source = ("image_folder", image_dir) if os.path.isdir(image_dir) else None
                # More mask frames than images: the writer reports the video as bad (an
                # error, or skipped and listed with --skip_bad).
                nframes = max(_frame_count(image_dir), nmask) if source else nmask
                frames, pixel_boxes = mask_boxes(mask)
                keep, boxes = [], []
                for f, b in zip(frames, pixel_boxes):
                    box, reason = check_box(b, width, height, f"{name}:{f}")
                    if reason:
                        problems.append((f"{name}:{f}", reason))
                    else:
                        keep.append(f)
                        boxes.append(box)
                tubes = (
                    [Tube(label, np.asarray(keep, np.int64), np.asarray(boxes).reshape(-1, 4))]
                    if keep
                    else []
                )
                videos[name] = Video(name, nframes, tubes, source)
                splits[split].append(name)
    return TubeDataset(classes, videos, splits, problems)
