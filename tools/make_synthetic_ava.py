"""Generates synthetic AVA in the AVA layout (spec: shared/SYNTHETIC_DATA.md).

    python tools/make_synthetic_ava.py --preset=demo --seed=0 --out=data/synthetic_demo
    python tools/make_synthetic_ava.py --preset=tiny --out=/tmp/syn --videos=4 --resolution=96x64

Every preset value can be overridden by a flag; --resolution is WIDTHxHEIGHT or one number.
"""

import sys

from absl import app, flags

from action_tx.data import synthetic

FLAGS = flags.FLAGS
flags.DEFINE_enum("preset", "demo", sorted(synthetic.PRESETS), "Size preset.")
flags.DEFINE_integer("seed", 0, "Random seed; same seed and flags give identical annotations.")
flags.DEFINE_string("out", None, "Output root folder.")
flags.DEFINE_integer("videos", None, "Number of videos (train + val).")
flags.DEFINE_integer("seconds", None, "Length of each video in seconds.")
flags.DEFINE_integer("fps", None, "Frames per second.")
flags.DEFINE_string("resolution", None, "Frame size WIDTHxHEIGHT, or N for N x N.")
flags.DEFINE_integer("people", None, "Most people per video (1-4).")
flags.DEFINE_float("val_fraction", None, "Fraction of the videos (the last ones) in val.")
flags.DEFINE_integer("skip_seconds", None, "Seconds at both ends without keyframes.")
flags.DEFINE_integer("jpeg_quality", None, "JPEG quality of the frames.")
flags.DEFINE_bool("write_videos", False, "Also write videos/VIDEO_ID.mp4 (PyAV).")
flags.DEFINE_bool("check", True, "Fail when a class or evidence type is below the spec's share.")
flags.mark_flag_as_required("out")


def _resolution(text):
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 16 or any(p % 2 for p in parts):
        raise app.UsageError(f"--resolution={text!r}: expected WIDTHxHEIGHT or N, even, >= 16")
    return parts[0], parts[-1]


def main(argv):
    del argv
    over = {
        k: getattr(FLAGS, k)
        for k in (
            "videos",
            "seconds",
            "fps",
            "people",
            "val_fraction",
            "skip_seconds",
            "jpeg_quality",
        )
    }
    over["write_videos"] = FLAGS.write_videos
    if FLAGS.resolution:
        over["width"], over["height"] = _resolution(FLAGS.resolution)
    try:
        summary = synthetic.generate(
            FLAGS.out,
            preset=FLAGS.preset,
            seed=FLAGS.seed,
            progress=True,
            check=FLAGS.check,
            **over,
        )
    except ValueError as e:
        sys.exit(f"make_synthetic_ava: {e}")
    for split, c in summary["splits"].items():
        print(
            f"{split}: {c['videos']} videos, {c['keyframes']} keyframes, "
            f"{c['person_keyframes']} person-keyframes; evidence {c['evidence']}"
        )
    print(f"wrote {FLAGS.out} in {summary['seconds']:.1f} s (see {FLAGS.out}/README.txt)")


if __name__ == "__main__":
    app.run(main)
