"""Extracts frozen-trunk features of one split for feature-mode training (issue 7), or ACAR's
feature bank (--bank=acfb).

    python tools/extract_features.py --flagfile=configs/bench.flags \
        --checkpoint_dir=bench_out/model_i3d --split=train --out=bench_out/features/train
    python tools/extract_features.py --flagfile=configs/bench.flags \
        --checkpoint_dir=bench_out/model_i3d --split=val \
        --tfrecords='bench_out/tfrecords/val.tfrecord-*' --out=bench_out/features/val

Flags:
  --checkpoint_dir  trainer directory: its latest ckpt-N and config.json (model_flags.json of
                    older runs), which rebuild the detector (the checkpoint's model and data
                    config override the flagfile's).
  --split           train | val: picks the default --tfrecords.
  --tfrecords       glob of the split's TFRecord shards (default: --train_tfrecords for train,
                    --eval_tfrecords for val, as in the flagfile). Objects are the ones the
                    converter stored from annotations/object_detections_<split>*.csv.
  --out             output folder: features-%05d-of-%05d.tfrecord shards + manifest.json
                    (layout: action_tx/data/features.py).
  --map_size        M of the stored context map (default 7).
  --shard_size      keyframes per output shard (default 256); shards hold whole videos
                    (a shard takes videos until it has at least this many keyframes).
  --num_workers, --worker_index  N parallel processes over disjoint shards of one --out:
                    worker i writes the shards j with j % N == i (see below).
  --extract_batch_size  keyframes per forward pass (default 4).
  --min_detection_score detections with a person score below this are not stored (default 0).
  --feature_layer   trunk | Mixed_5c. trunk (default): each box's ST-RoIAlign tube of the
                    trunk's output (Mixed_4f, 832-d at full width), averaged. Mixed_5c: the
                    papers' layer for STAGE (§4: "the last layer of the backbone before
                    classification", 1024-d) and HGRNN (§3.1): the Mixed_5a-5c tail that an
                    `i3d` or `tx_i3d` head checkpoint fine-tuned, run on each box's tube and
                    averaged exactly as that head does; the context map and scene feature run
                    the same tail over the whole trunk map.
  --pixels          frame | own_box. frame (default): the detector's pass over the whole
                    frame. own_box: each ground-truth box's features from a clip in which
                    every pixel outside that box is mid-grey (one trunk pass per box), so
                    nothing of the other people or objects reaches it: the blind run of the
                    heads suite's instrument check. Such a folder holds the ground-truth
                    actors only (no detections or objects; zero context map and scene).
  --bank            none | acfb: instead of features, write ACAR's Actor-Context Feature Bank
                    (action_tx.acfb) of the checkpoint's model (end-to-end or feature-mode:
                    then the split's feature folder from config.json) into --out:
                    acfb-%05d-of-%05d.npz shards of whole videos (--shard_size), planned in
                    manifest.json, and acfb.json, written when every shard is done (what
                    --acfb_bank_dir reads). Sharded, resumed and run in parallel exactly as
                    the features (below); --map_size, --feature_layer, --pixels and
                    --min_detection_score do not apply.

One pass over the input per worker (the records of other workers' shards are read through,
not run), no augmentation, keyframes in (video_id, timestamp) order, a progress bar.
The first run plans the shards (reading each input record's video index once) into
manifest.json. Resumable: each shard is written under a temporary name (NAME.tmp), renamed
when complete and then marked done in the manifest (under a file lock, so parallel workers
never lose each other's marks); a process killed halfway loses only the shard it was writing
(its NAME.tmp is overwritten by the re-run, which skips every shard marked done). A manifest
written with other settings (checkpoint, inputs, map size, shard size, feature layer) is
refused. Killed halfway, a folder holds its finished shards (marked done) and at most one
NAME.tmp per killed worker; readers refuse it until it is complete (features: "extraction
unfinished", the manifest marks a shard missing; a bank has no acfb.json until its last shard
is done), and a re-run of the killed worker with the same flags writes only its shards not
marked done. A bank folder of the one-process extraction (acfb.json without manifest.json) is
complete as it is: it is read as before and refused as an output (delete it to extract again).
Bad input: one `error: ...` line, exit 2.

N parallel processes (one machine or several sharing --out on one filesystem):

    for i in $(seq 0 $((N - 1))); do
      python tools/extract_features.py --flagfile=F --checkpoint_dir=C --split=train \
          --out=features/train --num_workers=$N --worker_index=$i &
    done; wait

The features are complete when every worker has exited 0 (a re-run of any worker prints that
its shards are done); re-run a worker that failed or was killed with the same flags. ACAR's
bank likewise: add --bank=acfb (and the stage-1 checkpoint); the worker that writes the last
shard writes acfb.json.
"""

import functools
import os

import cli  # first: TF's log level and start-up options
import model_flags  # model/data flags
import train  # noqa: F401  (the trainer's flags, so its flagfiles parse here)
from absl import flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint_dir", None, "Trainer directory of the checkpoint.")
flags.DEFINE_enum("split", None, ["train", "val"], "Split to extract.")
flags.DEFINE_string("tfrecords", None, "Glob of the split's TFRecord shards.")
flags.DEFINE_string("out", None, "Output folder.")
flags.DEFINE_integer("map_size", 7, "M: context map size.")
flags.DEFINE_integer(
    "shard_size",
    256,
    "Keyframes per output shard (whole videos: a shard "
    "takes videos until it holds at least this many).",
)
flags.DEFINE_integer(
    "num_workers",
    1,
    "Parallel extraction processes sharing --out; each "
    "writes the shards i with i % num_workers == --worker_index.",
)
flags.DEFINE_integer("worker_index", 0, "This process's index in [0, --num_workers).")
flags.DEFINE_integer("extract_batch_size", 4, "Keyframes per forward pass.")
flags.DEFINE_float("min_detection_score", 0.0, "Detections below this score are not stored.")
flags.DEFINE_enum(
    "feature_layer",
    "trunk",
    ["trunk", "Mixed_5c"],
    "trunk: the trunk's output (Mixed_4f); Mixed_5c: the checkpoint's fine-tuned "
    "I3D head tail on each RoI tube (STAGE, HGRNN: 1024-d I3D features).",
)
flags.DEFINE_enum(
    "pixels",
    "frame",
    ["frame", "own_box"],
    "frame: the whole frame; own_box: each ground-truth box's features from its own pixels "
    "alone (everything else grey).",
)
flags.DEFINE_enum("bank", "none", ["none", "acfb"], "acfb: write ACAR's feature bank instead.")


InputError = cli.CliError  # bad flags or files: one line, exit status 2


def _checkpoint():
    """-> (latest checkpoint path, the checkpoint's ExperimentConfig): its config.json (or
    model_flags.json) wins over the flagfile's model and data flags."""
    from action_tx import checkpointing

    model_dir = FLAGS.checkpoint_dir
    if not os.path.isdir(model_dir):
        raise InputError(f"--checkpoint_dir: no such directory: {model_dir}")
    config = model_flags.model_dir_config(model_dir)
    if config is None:
        raise InputError(
            f"--checkpoint_dir: {model_dir} has no config.json (not a trainer directory)"
        )
    # Not tf.train.latest_checkpoint: with the `checkpoint` state file lost it finds nothing,
    # while find_checkpoints falls back on the ckpt-*.index files (and says so).
    checkpoints = checkpointing.find_checkpoints(model_dir, log=logging.warning)
    if not checkpoints:
        raise InputError(f"--checkpoint_dir: no checkpoint in {model_dir}")
    return checkpoints[-1], config


def _input_files():
    pattern = FLAGS.tfrecords or (
        FLAGS.train_tfrecords if FLAGS.split == "train" else FLAGS.eval_tfrecords
    )
    if not pattern:
        raise InputError(
            f"--tfrecords is required for --split={FLAGS.split} (or --"
            f"{'train' if FLAGS.split == 'train' else 'eval'}_tfrecords)"
        )
    from action_tx.data import tfrecords

    try:
        return pattern, tfrecords.match_files(pattern)
    except (FileNotFoundError, tfrecords.NotTFRecordError) as e:
        raise InputError(f"--tfrecords: {e}") from None


def extract():
    if not FLAGS.checkpoint_dir or not FLAGS.split or not FLAGS.out:
        raise InputError("--checkpoint_dir, --split and --out are required")
    if not 0 <= FLAGS.worker_index < FLAGS.num_workers:
        raise InputError(
            f"--worker_index={FLAGS.worker_index} must be in [0, --num_workers={FLAGS.num_workers})"
        )
    checkpoint, config = _checkpoint()
    label_map_path = config.data.label_map
    if not label_map_path or not os.path.isfile(label_map_path):
        raise InputError(f"--label_map: no such file: {label_map_path}")
    from action_tx import feature_extraction  # TensorFlow, after flag checks
    from action_tx.tasks import make_task

    task = make_task(config)
    # Both write shards of whole videos into --out, sharded and resumed alike.
    shards = dict(
        shard_size=FLAGS.shard_size,
        num_workers=FLAGS.num_workers,
        worker_index=FLAGS.worker_index,
        progress=FLAGS.progress,
    )
    if FLAGS.bank == "acfb":
        # Frames: this split's TFRecords; features: the config's folder of the split.
        files = _input_files()[1] if task.runs_on_frames else None
        batch = FLAGS.extract_batch_size if task.runs_on_frames else FLAGS.batch_size
        write = functools.partial(
            feature_extraction.extract_split_bank, batch_size=batch, files=files
        )
    elif not task.runs_on_frames:
        raise InputError(
            f"{FLAGS.checkpoint_dir} holds a feature-mode model: features are "
            "extracted with an end-to-end detector checkpoint"
        )
    else:
        files = _input_files()[1]

        def write(task, checkpoint, out, **kwargs):
            return feature_extraction.extract_split(
                task,
                checkpoint,
                files,
                out,
                map_size=FLAGS.map_size,
                batch_size=FLAGS.extract_batch_size,
                min_detection_score=FLAGS.min_detection_score,
                feature_layer=FLAGS.feature_layer,
                pixels=FLAGS.pixels,
                **kwargs,
            )

    try:
        write(task, checkpoint, FLAGS.out, split=FLAGS.split, **shards)
    except feature_extraction.ManifestMismatch as e:
        raise InputError(e) from None


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    extract()


if __name__ == "__main__":
    cli.run(main)
