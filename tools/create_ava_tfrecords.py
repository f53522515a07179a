"""AVA-format folder -> sharded TFRecords of keyframe clips (+ <split>_manifest.json).

    python tools/create_ava_tfrecords.py --ava_dir data/synthetic_demo --split train \
        --out demo_out/tfrecords/train.tfrecord@4

Validates the annotations (bad rows listed as FILE:LINE), reads frames from
ROOT/frames/VID/ or ROOT/videos/VID.*, decodes every frame it stores with the training
pipeline's decoder, and fails with a one-line message (exit status 2) on a missing frame
folder, an unreadable or truncated video, a missing, undecodable or odd-sized frame, or bad
rows, unless --skip_bad (skip and count them in the manifest: a bad frame costs only the
keyframes whose windows hold it). Read the shards back with the glob NAME.tfrecord-* (here
demo_out/tfrecords/train.tfrecord-*): unfinished shards are hidden (.tmp-NAME) until complete,
and shards of another count under the same name are refused unless --overwrite.
Library code: action_tx/data/convert.py.

--keyframes_per_record=K > 1 writes layout 2 (action_tx/data/chunks.py): one record per K
consecutive keyframes of a video, each frame stored once instead of once per window that holds
it (at 64-frame windows and keyframes 30 frames apart, 1.11x the frames at K = 10 instead of
2.13x). Every reader (training, evaluation, feature extraction) takes either layout.

--beam runs the same conversion as an Apache Beam pipeline (`pip install -e '.[beam]'`),
writing the same shards and manifest byte for byte: on the local cores by default
(--runner=DirectRunner, one process per core), or on any runner, whose options follow the
converter's (inputs and output on a filesystem every worker mounts at the same path):

    python tools/create_ava_tfrecords.py --beam --ava_dir=/shared/ava --split=train \
        --out=/shared/tfrecords/train.tfrecord@1024 --runner=FlinkRunner \
        --flink_master=HOST:8081 --environment_type=LOOPBACK
Library code of --beam: action_tx/data/beam_convert.py.
"""

import functools
import os

import cli  # first: TF's log level and start-up options
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("ava_dir", None, "AVA-format root (annotations/, frames/ or videos/).")
flags.DEFINE_string("split", "train", "Split: reads annotations/ava_<split>*.csv and friends.")
flags.DEFINE_string("out", None, "Shards: DIR/name@N, a pattern with %05d-of-%05d, or a path.")
flags.DEFINE_integer("num_shards", None, "Number of shards when --out does not say (@N).")
flags.DEFINE_bool(
    "skip_bad",
    False,
    "Skip and count bad rows, videos and the keyframes of bad frames instead of failing.",
)
flags.DEFINE_bool(
    "overwrite",
    False,
    "Remove shards of the same name and another count (e.g. "
    "an earlier @2 when writing @3); without it they are an error.",
)
flags.DEFINE_integer("num_workers", 2, "Processes decoding videos.")
flags.DEFINE_integer("num_frames", 32, "Frames of each keyframe's window, centred on it.")
flags.DEFINE_integer(
    "keyframes_per_record",
    1,
    "K. 1: one record per keyframe holding its whole window (layout 1). K > 1: one record "
    "per K consecutive keyframes of a video, each frame stored once (layout 2; 10 for the "
    "papers' 64-frame windows: 1.11x the frames instead of 2.13x).",
)
flags.DEFINE_float(
    "fps",
    None,
    "Frame rate of JPEG frame folders (default: the fps=N of "
    "ROOT/README.txt, else AVA's 30); video files use their own.",
)
flags.DEFINE_integer("max_side", None, "Downscale frames whose longer side exceeds this.")
flags.DEFINE_float(
    "timestamp_offset",
    0.0,
    "Seconds shown by frame 1 (e.g. 900 for AVA frames extracted from the 15-minute cuts).",
)
flags.DEFINE_string("annotations", None, "Override: annotation CSV.")
flags.DEFINE_string("label_map", None, "Override: label map.")
flags.DEFINE_string("excluded", None, "Override: excluded timestamps CSV.")
flags.DEFINE_string("person_detections", None, "Override: person detections CSV.")
flags.DEFINE_string("object_detections", None, "Override: object detections CSV.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.DEFINE_bool(
    "beam",
    False,
    "Run the conversion as an Apache Beam pipeline; flags the "
    "converter does not define are Beam pipeline options (default "
    "--runner=DirectRunner on the local cores).",
)
flags.mark_flags_as_required(["ava_dir", "out"])


def main(argv):
    beam_args = argv[1:]
    if beam_args and not FLAGS.beam:
        raise cli.CliError(
            f"unknown arguments {' '.join(beam_args)} (Beam pipeline options need --beam)"
        )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from action_tx.data import ava, convert  # after flags: --help stays fast

    files = {
        k: getattr(FLAGS, k)
        for k in ("annotations", "label_map", "excluded", "person_detections", "object_detections")
    }
    try:
        if FLAGS.beam:
            try:
                import apache_beam  # noqa: F401
                from action_tx.data import beam_convert
            except ImportError as e:
                raise cli.CliError(
                    f"--beam needs apache-beam (pip install -e '.[beam]'): {e}"
                ) from None
            run = functools.partial(beam_convert.convert_split_beam, pipeline_args=beam_args)
        else:
            run = convert.convert_split
        manifest = run(
            FLAGS.ava_dir,
            FLAGS.split,
            FLAGS.out,
            num_shards=FLAGS.num_shards,
            num_frames=FLAGS.num_frames,
            keyframes_per_record=FLAGS.keyframes_per_record,
            fps=FLAGS.fps,
            max_side=FLAGS.max_side,
            timestamp_offset=FLAGS.timestamp_offset,
            skip_bad=FLAGS.skip_bad,
            num_workers=FLAGS.num_workers,
            progress=FLAGS.progress,
            overwrite=FLAGS.overwrite,
            **{k: v for k, v in files.items() if v},
        )
    except (ava.AvaFormatError, convert.ConversionError, OSError) as e:
        raise cli.CliError(e) from None  # bad input, as every tool: exit 2
    print(convert.summary(manifest))
    if FLAGS.keyframes_per_record == 1 and convert.duplication(manifest) > 2.0:
        print(
            f"note: each frame is stored {convert.duplication(manifest):.2f} times (a record per "
            "keyframe holds its whole window); --keyframes_per_record=10 stores each once "
            "(layout 2, which every reader takes)"
        )
    return 0


if __name__ == "__main__":
    # Unknown flags are left in argv (Beam pipeline options with --beam, an error without).
    cli.run(main, known_only=True)
