"""Extracts frozen-trunk features of one split for feature-mode training (issue 7).

    python tools/extract_features.py --flagfile=configs/bench.flags \
        --checkpoint_dir=bench_out/model_i3d --split=train --out=bench_out/features/train
    python tools/extract_features.py --flagfile=configs/bench.flags \
        --checkpoint_dir=bench_out/model_i3d --split=val \
        --tfrecords='bench_out/tfrecords/val.tfrecord-*' --out=bench_out/features/val

Flags:
  --checkpoint_dir  trainer directory: its latest ckpt-N and model_flags.json, which rebuild the
                    detector (the checkpoint's model flags override the flagfile's).
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
  --bank            none | acfb: instead of features, write ACAR's Actor-Context Feature Bank
                    (action_tx.acfb.extract_bank) of the checkpoint's model (end-to-end or
                    feature-mode: then the split's feature folder from model_flags.json).

One pass, no augmentation, keyframes in (video_id, timestamp) order, a progress bar.
The first run plans the shards (reading each input record's video index once) into
manifest.json. Resumable: each shard is written under a temporary name (NAME.tmp), renamed
when complete and then marked done in the manifest (under a file lock, so parallel workers
never lose each other's marks); a process killed halfway loses only the shard it was writing
(its NAME.tmp is overwritten by the re-run, which skips every shard marked done). A manifest
written with other settings (checkpoint, inputs, map size, shard size, feature layer) is
refused. Bad input: one `error: ...` line, exit 2.

N parallel processes (one machine or several sharing --out on one filesystem):

    for i in $(seq 0 $((N - 1))); do
      python tools/extract_features.py --flagfile=F --checkpoint_dir=C --split=train \
          --out=features/train --num_workers=$N --worker_index=$i &
    done; wait

The features are complete when every worker has exited 0 (a re-run of any worker prints that
its shards are done); re-run a worker that failed or was killed with the same flags.
"""

import os
import sys

import model_flags  # noqa: F401  (model/data flags; puts the repo on sys.path first)
import train  # noqa: F401  (the trainer's flags, so its flagfiles parse here)
from absl import app, flags, logging

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
flags.DEFINE_enum("bank", "none", ["none", "acfb"], "acfb: write ACAR's feature bank instead.")


class InputError(Exception):
    """Bad flags or files: one line, exit status 2."""


def _checkpoint():
    """-> (latest checkpoint path, model_flags.json values); applies the model flags."""
    import tensorflow as tf

    model_dir = FLAGS.checkpoint_dir
    if not os.path.isdir(model_dir):
        raise InputError(f"--checkpoint_dir: no such directory: {model_dir}")
    if not os.path.isfile(os.path.join(model_dir, "model_flags.json")):
        raise InputError(
            f"--checkpoint_dir: {model_dir} has no model_flags.json (not a trainer directory)"
        )
    path = tf.train.latest_checkpoint(model_dir)
    if not path:
        raise InputError(f"--checkpoint_dir: no checkpoint in {model_dir}")
    for flag in FLAGS.get_flags_for_module(model_flags):
        flag.present = 0  # the checkpoint's model flags win over the flagfile's
    try:
        values = model_flags.apply_model_flags_json(model_dir)
    except ValueError as e:
        raise InputError(str(e)) from None
    return path, values


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


def _load_manifest(out, settings, files):
    """The folder's manifest: checked against `settings`, or planned (shards of whole videos,
    `features.plan_shards`) and written when absent. Workers that start together plan the
    same shards; the first to take the lock writes them, the others read them."""
    from action_tx.data import features

    def plan(manifest):
        if manifest is not None:
            return manifest
        shards = features.plan_shards(features.video_runs(files), FLAGS.shard_size)
        return {
            "settings": settings,
            "keyframes": sum(s["records"] for s in shards),
            "shards": shards,
        }

    path = os.path.join(out, features.MANIFEST)
    if not os.path.isfile(path):
        features.update_manifest(out, plan)
    manifest = features.read_manifest(out)
    if manifest.get("settings") != settings:
        diff = sorted(
            k
            for k in set(settings) | set(manifest.get("settings", {}))
            if settings.get(k) != manifest.get("settings", {}).get(k)
        )
        raise InputError(
            f"{path}: written with other settings ({', '.join(diff)} "
            "differ); use another --out or delete the folder"
        )
    return manifest


def _extract_bank(checkpoint):
    import tensorflow as tf  # noqa: F401
    from action_tx import eval_lib
    from action_tx.acfb import extract_bank
    from action_tx.data import ava

    label_map = ava.read_label_map(FLAGS.label_map)
    model = model_flags.build_model_from_flags(label_map)
    if FLAGS.input == "features":
        from action_tx.data.features import build_feature_dataset

        directory = FLAGS.feature_dir if FLAGS.split == "train" else FLAGS.eval_feature_dir
        if not directory:
            raise InputError(
                f"the checkpoint's model reads features, but model_flags.json has "
                f"no {'feature_dir' if FLAGS.split == 'train' else 'eval_feature_dir'}"
            )
        dataset = build_feature_dataset(
            directory,
            num_classes=label_map.num_classes,
            batch_size=FLAGS.batch_size,
            training=False,
            actors=FLAGS.eval_actors,
            context=FLAGS.context_keyframes,
            max_objects=FLAGS.max_objects,
        )
    else:
        from action_tx.data.pipeline import build_dataset

        dataset = build_dataset(
            _input_files()[1],
            batch_size=FLAGS.extract_batch_size,
            **model_flags.dataset_kwargs_from_flags(label_map, False),
        )
    eval_lib.build_detector_on(model, dataset)
    eval_lib.restore(model, checkpoint)
    # The actors archived are those the model scores at inference (--eval_actors in feature
    # mode, the checkpoint's detections end to end), for either split.
    extract_bank(model, dataset, FLAGS.out, progress=FLAGS.progress)


def extract():
    if not FLAGS.checkpoint_dir or not FLAGS.split or not FLAGS.out:
        raise InputError("--checkpoint_dir, --split and --out are required")
    checkpoint, _ = _checkpoint()
    if not FLAGS.label_map or not os.path.isfile(FLAGS.label_map):
        raise InputError(f"--label_map: no such file: {FLAGS.label_map}")
    os.makedirs(FLAGS.out, exist_ok=True)
    if FLAGS.bank == "acfb":
        return _extract_bank(checkpoint)
    if FLAGS.input == "features":
        raise InputError(
            f"{FLAGS.checkpoint_dir} holds a feature-mode model: features are "
            "extracted with an end-to-end detector checkpoint"
        )
    pattern, files = _input_files()
    from action_tx.data import ava, features
    from action_tx.feature_extraction import Extractor  # TensorFlow, after flag checks

    label_map = ava.read_label_map(FLAGS.label_map)
    if not 0 <= FLAGS.worker_index < FLAGS.num_workers:
        raise InputError(
            f"--worker_index={FLAGS.worker_index} must be in [0, --num_workers={FLAGS.num_workers})"
        )
    settings = dict(
        checkpoint=os.path.abspath(checkpoint),
        tfrecords=[os.path.abspath(f) for f in files],
        split=FLAGS.split,
        map_size=FLAGS.map_size,
        shard_size=FLAGS.shard_size,
        min_detection_score=FLAGS.min_detection_score,
        num_classes=label_map.num_classes,
        feature_layer=FLAGS.feature_layer,
    )
    manifest = _load_manifest(FLAGS.out, settings, files)
    todo = [
        s
        for i, s in enumerate(manifest["shards"])
        if not s["done"] and i % FLAGS.num_workers == FLAGS.worker_index
    ]
    if not todo:
        print(
            f"all {len(manifest['shards'])} shards of worker {FLAGS.worker_index} already "
            f"in {FLAGS.out}",
            file=sys.stderr,
        )
        return
    kwargs = model_flags.dataset_kwargs_from_flags(label_map, training=False)
    kwargs = {
        k: kwargs[k]
        for k in (
            "num_classes",
            "num_frames",
            "frame_stride",
            "image_size",
            "max_boxes",
            "max_proposals",
            "max_objects",
        )
    }
    extractor = Extractor(
        model_flags.build_detector_from_flags(label_map),
        checkpoint,
        files,
        dataset_kwargs=kwargs,
        map_size=FLAGS.map_size,
        batch_size=FLAGS.extract_batch_size,
        min_detection_score=FLAGS.min_detection_score,
        feature_layer=FLAGS.feature_layer,
    )
    from action_tx.progress import Progress

    bar = Progress(sum(s["records"] for s in todo), "extract", enabled=FLAGS.progress)
    for shard in todo:
        info = extractor.write_shard(
            os.path.join(FLAGS.out, shard["path"]), shard["start"], shard["records"], bar.update
        )

        def done(manifest, shard=shard, info=info):
            for entry in manifest["shards"]:
                if entry["path"] == shard["path"]:
                    entry.update(done=True, records=info["records"])
            manifest.update(
                num_classes=label_map.num_classes,
                feature_dim=info["feature_dim"],
                map_size=FLAGS.map_size,
            )
            return manifest

        manifest = features.update_manifest(FLAGS.out, done)
    bar.close()
    print(
        f"{sum(s['records'] for s in manifest['shards'])} keyframes in "
        f"{len(manifest['shards'])} shards: {FLAGS.out}",
        file=sys.stderr,
    )


def main(argv):
    logging.set_verbosity(logging.WARNING)
    try:
        if len(argv) > 1:
            raise InputError(f"unexpected arguments: {' '.join(argv[1:])}")
        extract()
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except (ValueError, OSError) as e:  # FeatureFileError, AvaFormatError, restore errors
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    model_flags.exit_on_missing_flagfile(sys.argv)
    app.run(main)
