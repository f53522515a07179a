"""Downloaded AVA movies + the official annotation CSVs -> the AVA layout of
tools/create_ava_tfrecords.py: the annotated segment (900-1800 s by default), 30 fps, short
side 400 px, as videos/VID.mp4 or frames/VID/VID_%06d.jpg.

    python tools/prepare_ava.py --movies_dir=downloads/ava_movies \
        --annotations_dir=downloads/ava_annotations --out_dir=data/ava --num_workers=8
    python tools/create_ava_tfrecords.py --ava_dir=data/ava --split=train \
        --timestamp_offset=900 --out=data/ava_tfrecords/train.tfrecord@256

Copies the annotation files (*.csv, *.pbtxt) into OUT/annotations/ and prepares every movie of
the ava_<split>*.csv files of --splits. AVA-Kinetics: --kinetics with the folder of Kinetics
clips (VID.* or VID_START_END.*) and their CSVs (timestamps relative to the clip); convert
with --timestamp_offset=0. Resumable: a rerun skips movies already written whole (checked by
frame count and size) and redoes the rest. A missing, undecodable or too short movie is
reported by name and the others go on; exit status 2 when any failed.
Library code: action_tx/data/prepare.py.
"""

import glob
import os
import shutil
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "movies_dir", None, "Folder of the downloaded movies (any container PyAV reads), named VID.ext."
)
flags.DEFINE_string("annotations_dir", None, "Folder of the official annotation files.")
flags.DEFINE_string("out_dir", None, "AVA-format root to write (annotations/, videos/ or frames/).")
flags.DEFINE_list("splits", ["train", "val"], "Movies of annotations_dir/ava_<split>*.csv.")
flags.DEFINE_enum("format", "videos", ["videos", "frames"], "Write mp4 videos or JPEG folders.")
flags.DEFINE_integer(
    "short_side",
    400,
    "Short side in pixels (0: keep the source's). 400: "
    "the Action Transformer's input; 256-320 (SlowFast, AIA, ACAR) downscale it.",
)
flags.DEFINE_integer("fps", 30, "Output frame rate (AVA's frames are at 30 fps).")
flags.DEFINE_float(
    "margin", 2.0, "Seconds kept before the first (902 s) and after the last (1798 s) keyframe."
)
flags.DEFINE_bool(
    "kinetics",
    False,
    "AVA-Kinetics clips: timestamps relative to the clip, the whole clip is written.",
)
flags.DEFINE_integer("num_workers", 2, "Processes, one movie each.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.mark_flags_as_required(["movies_dir", "annotations_dir", "out_dir"])


def _annotation_csvs(folder, splits):
    found = []
    for split in splits:
        found += [
            p
            for p in sorted(glob.glob(os.path.join(glob.escape(folder), f"*{split}*.csv")))
            if "excluded" not in p and "detection" not in p and "predicted" not in p
        ]
    return found


def main(argv):
    del argv
    from action_tx.data import prepare

    csvs = _annotation_csvs(FLAGS.annotations_dir, FLAGS.splits)
    if not csvs:
        print(
            f"error: no annotation CSV of splits {','.join(FLAGS.splits)} in "
            f"{FLAGS.annotations_dir}",
            file=sys.stderr,
        )
        return 1
    annotations = os.path.join(FLAGS.out_dir, "annotations")
    os.makedirs(annotations, exist_ok=True)
    for path in glob.glob(os.path.join(glob.escape(FLAGS.annotations_dir), "*")):
        if path.endswith((".csv", ".pbtxt", ".txt")) and os.path.isfile(path):
            shutil.copy2(path, annotations)
    result = prepare.prepare(
        FLAGS.movies_dir,
        csvs,
        FLAGS.out_dir,
        kind=FLAGS.format,
        short_side=FLAGS.short_side,
        fps=FLAGS.fps,
        margin=FLAGS.margin,
        kinetics=FLAGS.kinetics,
        num_workers=FLAGS.num_workers,
        progress=FLAGS.progress,
    )
    failed = sum(len(v) for v in result.failed.values())
    print(
        f"prepared {len(result.done)} movie(s), {len(result.skipped)} already done, "
        f"{failed} failed; convert with --ava_dir={FLAGS.out_dir} "
        f"--timestamp_offset={result.timestamp_offset:g}"
    )
    for reason, ids in result.failed.items():
        print(f"failed ({reason}): {len(ids)}: {', '.join(ids)}", file=sys.stderr)
        for vid in ids:
            print(f"  {vid}: {result.messages[vid]}", file=sys.stderr)
    return 2 if failed else 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
