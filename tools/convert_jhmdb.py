"""JHMDB-21 (puppet masks, one of the three splits) -> our AVA-format layout.

    python tools/convert_jhmdb.py --jhmdb_dir=JHMDB --split=1 --out=data/jhmdb_split1 \
        [--keyframe_stride=1] [--skip_bad]
    python tools/create_ava_tfrecords.py --ava_dir=data/jhmdb_split1 --split=train \
        --out=data/jhmdb_split1/tfrecords/train.tfrecord@8

`--jhmdb_dir` holds puppet_mask/, Rename_Images/ and splits/ as downloaded. Boxes are the masks'
extents (`action_tx/data/jhmdb.py`); frames are re-encoded as JPEG. Timestamps are 0-based frame
indices and the layout says fps=1 (`action_tx/data/tube_layout.py`). Bad input fails with the
file:line or video:frame at fault unless --skip_bad (then listed in conversion_manifest.json).
"""

import cli  # first: TF's log level and start-up options
from absl import flags


FLAGS = flags.FLAGS
flags.DEFINE_string("jhmdb_dir", None, "JHMDB root: puppet_mask/, Rename_Images/, splits/.")
flags.DEFINE_string("out", None, "Output root (annotations/, frames/, README.txt, manifest).")
flags.DEFINE_integer("split", 1, "Split 1, 2 or 3.")
flags.DEFINE_integer("keyframe_stride", 1, "A keyframe every k-th frame (1: every frame).")
flags.DEFINE_bool(
    "skip_bad", False, "Exclude bad boxes and videos (listed in the manifest) instead of failing."
)
flags.mark_flags_as_required(["jhmdb_dir", "out"])


def main(argv):
    del argv
    from action_tx.data import jhmdb, tube_layout

    try:
        dataset = jhmdb.read(FLAGS.jhmdb_dir, FLAGS.split)
        manifest = tube_layout.write_layout(
            dataset,
            FLAGS.out,
            name="jhmdb21",
            keyframe_stride=FLAGS.keyframe_stride,
            source_fps=jhmdb.SOURCE_FPS,
            skip_bad=FLAGS.skip_bad,
            options={"jhmdb_dir": FLAGS.jhmdb_dir, "split": FLAGS.split},
        )
    except (tube_layout.TubeDataError, OSError) as e:
        raise cli.CliError(e) from None
    print(tube_layout.summary(FLAGS.out, manifest))
    return 0


if __name__ == "__main__":
    cli.run(main)
