"""UCF101-24 (corrected annotations, `UCF101v2-GT.pkl`) -> our AVA-format layout.

    python tools/convert_ucf101_24.py --annotations=UCF101v2-GT.pkl \
        --frames_dir=ucf24/rgb-images --out=data/ucf24 [--keyframe_stride=1] [--skip_bad]
    python tools/create_ava_tfrecords.py --ava_dir=data/ucf24 --split=train \
        --out=data/ucf24/tfrecords/train.tfrecord@16
    python tools/create_ava_tfrecords.py --ava_dir=data/ucf24 --split=test \
        --out=data/ucf24/tfrecords/test.tfrecord@8

Frames come from `--frames_dir` (rgb-images/Class/v_.../00001.jpg: linked, not copied) or are
decoded from the UCF101 videos of `--videos_dir` (UCF-101/Class/v_....avi). Timestamps are
0-based frame indices and the layout says fps=1 (`action_tx/data/tube_layout.py`), so every
annotated frame is its own keyframe. Bad boxes are listed as `video:frame` and fail the run
unless --skip_bad (then excluded and listed in conversion_manifest.json).
"""

import cli  # first: TF's log level and start-up options
from absl import flags


FLAGS = flags.FLAGS
flags.DEFINE_string(
    "annotations", None, "The corrected UCF101-24 annotation pickle (UCF101v2-GT.pkl)."
)
flags.DEFINE_string("frames_dir", None, "rgb-images/ root: Class/v_.../00001.jpg.")
flags.DEFINE_string(
    "videos_dir",
    None,
    "UCF-101/ root of the videos (Class/v_....avi), used for videos without a frame folder.",
)
flags.DEFINE_string("out", None, "Output root (annotations/, frames/, README.txt, manifest).")
flags.DEFINE_integer("split", 1, "Which split of train_videos/test_videos (1-based).")
flags.DEFINE_integer("keyframe_stride", 1, "A keyframe every k-th frame (1: every frame).")
flags.DEFINE_bool(
    "skip_bad", False, "Exclude bad boxes and videos (listed in the manifest) instead of failing."
)
flags.DEFINE_bool("copy_frames", False, "Copy JPEG frame folders instead of linking them.")
flags.mark_flags_as_required(["annotations", "out"])


def main(argv):
    del argv
    from action_tx.data import tube_layout, ucf24

    try:
        dataset = ucf24.read(FLAGS.annotations, FLAGS.split, FLAGS.frames_dir, FLAGS.videos_dir)
        manifest = tube_layout.write_layout(
            dataset,
            FLAGS.out,
            name="ucf101_24",
            keyframe_stride=FLAGS.keyframe_stride,
            source_fps=ucf24.SOURCE_FPS,
            skip_bad=FLAGS.skip_bad,
            copy_frames=FLAGS.copy_frames,
            options={"annotations": FLAGS.annotations, "split": FLAGS.split},
        )
    except (tube_layout.TubeDataError, OSError) as e:
        raise cli.CliError(e) from None
    print(tube_layout.summary(FLAGS.out, manifest))
    return 0


if __name__ == "__main__":
    cli.run(main)
