"""AVA evaluation: frame-mAP@0.5 as the official ActivityNet evaluator, plus breakdowns.

(a) Score a detection file:

    python tools/eval.py --groundtruth=ava_val_v2.1.csv --detections=detections.csv \
        --label_map=ava_action_list_v2.1_for_activitynet_2018.pbtxt --output_json=results.json \
        [--excluded=ava_val_excluded_timestamps_v2.1.csv] [--evidence=evidence_val.csv]

prints a per-class table with the category, localization and breakdown figures and writes
them as JSON (`{"mAP@0.5IOU": ..., "per_class": {"<AVA id>": AP or null}, ...}`). The rules
are in `object_detection_ext/ava_eval.py`. Input that the official evaluator scores but that is
probably a mistake (rows without a score, zero-area boxes, a ground-truth file given as
detections, detections on videos the ground truth lacks) prints one `warning:` line each; an
empty ground truth or a bad row is one `error:` line and exit status 2. Several splits scored
as one (e.g. the val splits of synthetic data made with different seeds): give --groundtruth,
--detections and, when used, --excluded and --evidence as comma-separated lists, one entry per
split in the same order (`object_detection_ext/ava_eval_pool.py`: video ids are prefixed per
split, so equal ids in different splits stay apart).

(b) Score a model, once (`--checkpoint_path`, or the latest checkpoint of `--model_dir`) or
continuously (`--model_dir --continuous`: every checkpoint, waiting for new ones until
`--eval_timeout` seconds pass without one):

    python tools/eval.py --model_dir=runs/ava_tx --eval_tfrecords='tfrecords/val.tfrecord-*' \
        --groundtruth=ava_val.csv --label_map=action_list.pbtxt [--continuous] \
        [--flagfile=configs/ava_tx.flags] [--proposals=gt]

Model and data flags come from `--flagfile` or, without one, from `model_dir/config.json`
(written by the trainer; `model_flags.json` of older runs is read too); flags on the command
line win. `--proposals=gt` scores the classifier
on ground-truth boxes: the classification-only upper bound (Action Transformer paper, Table 1).
A damaged newest checkpoint of `--model_dir` is named in a warning line and the one before it is
scored (as the trainer resumes); `--continuous` skips a damaged one with that line. A lost or
garbled `model_dir/checkpoint` state file: the `ckpt-N.index` files are used instead.
Per checkpoint `ckpt-N`, `--output_dir` (default `model_dir/eval`) gets
`ckpt-N_detections.csv`, `ckpt-N_results.json` and TensorBoard scalars and images
(`action_tx.eval_lib`); with `--video_map` also `ckpt-N_video_results.json`.

(c) Video-mAP (`--video_map`, either mode): the per-frame detections are linked into tubes per
class and scored against the ground-truth tubes (one per video, person_id and action) at
spatio-temporal IoU 0.2, 0.5, 0.75 and 0.5:0.95 (`object_detection_ext/video_map.py`); in
file mode the JSON goes to `<output_json stem>_video.json`.
"""

import json
import os
import sys
import time

import cli  # first: TF's log level and start-up options
import model_flags  # model/data flags incl. --label_map
from absl import flags

from action_tx import config as C

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "groundtruth",
    None,
    "AVA ground-truth CSV "
    "(video_id,timestamp,x1,y1,x2,y2,action_id,person_id); with --detections, "
    "a comma-separated list scores several splits as one.",
)
flags.DEFINE_string(
    "detections",
    None,
    "AVA detection CSV "
    "(video_id,timestamp,x1,y1,x2,y2,action_id,score), or one per split "
    "(comma-separated, the order of --groundtruth).",
)
flags.DEFINE_string("output_json", None, "Where to write the results as JSON (optional).")
flags.DEFINE_string(
    "excluded",
    None,
    "Excluded-timestamps CSV (video_id,timestamp): those "
    "keyframes are removed from ground truth and detections.",
)
flags.DEFINE_string(
    "evidence",
    None,
    "Evidence CSV of the synthetic data "
    "(video_id,timestamp,person_id,action_id,evidence): adds AP per evidence type.",
)
flags.DEFINE_float("iou_threshold", 0.5, "IoU at which a detection matches a box.")
flags.DEFINE_integer(
    "max_detections_per_key",
    50,
    "Official cap on detection rows per keyframe (over all classes); 0 = no cap.",
)
flags.DEFINE_bool(
    "video_map",
    False,
    "Also link the per-frame detections into tubes per class "
    "(greedy online linking, Singh et al. 2017) and report video-mAP at "
    "spatio-temporal IoU 0.2, 0.5, 0.75 and 0.5:0.95 with per-class AP "
    "(object_detection_ext/video_map.py). A ground-truth tube is one "
    "(video, person_id, action); timestamps are frame indices or keyframe times.",
)
flags.DEFINE_float("link_iou", 0.5, "--video_map: IoU with a tube's last box to extend it.")
flags.DEFINE_integer("link_max_gap", 5, "--video_map: keyframes a tube may miss before it ends.")
flags.DEFINE_bool(
    "breakdowns",
    True,
    "Also compute localization AP and the AP by box area and by persons per keyframe.",
)


def _split_list(value):
    """A flag's comma-separated list of paths -> list (None -> None)."""
    return None if value is None else [v.strip() for v in value.split(",")]


def score_file(groundtruth, detections, label_map, output_json=None, **kwargs):
    """Evaluates a detection CSV, prints the table, writes JSON; returns the result.
    groundtruth / detections / kwargs' excluded and evidence may be comma-separated lists of
    paths, one per split, scored as one pooled set."""
    from object_detection_ext import ava_eval  # after flag parsing: `--help` stays instant

    start = time.perf_counter()
    if "," in groundtruth or "," in detections:
        from object_detection_ext.ava_eval_pool import pool_splits

        groundtruth, detections, kwargs["excluded"], kwargs["evidence"] = pool_splits(
            _split_list(groundtruth),
            _split_list(detections),
            _split_list(kwargs.get("excluded")),
            _split_list(kwargs.get("evidence")),
        )
    result = ava_eval.evaluate(groundtruth, detections, label_map, **kwargs)
    seconds = time.perf_counter() - start
    print(result.format_table())
    print(
        f"\nframe-mAP@{result.iou_threshold}IOU = {result.map:.6f}  "
        f"({result.counts['detections_scored']:,} of {result.counts['detection_rows']:,} "
        f"detection rows scored, {result.counts['groundtruth_keys']:,} keyframes, "
        f"{seconds:.1f} s)"
    )
    if output_json:
        os.makedirs(os.path.dirname(os.path.abspath(output_json)), exist_ok=True)
        with open(output_json, "w") as f:
            json.dump(result.to_json(), f, indent=1, sort_keys=False)
        print(f"written: {output_json}", file=sys.stderr)
    return result


def score_video_map(groundtruth, detections, label_map, output_json=None, excluded=None):
    """Video-mAP of a detection CSV: prints the table, writes JSON; returns the result."""
    from object_detection_ext import video_map

    start = time.perf_counter()
    result = video_map.evaluate(
        groundtruth,
        detections,
        label_map,
        excluded=excluded,
        link_iou=FLAGS.link_iou,
        max_gap=FLAGS.link_max_gap,
    )
    print(result.format_table())
    print(
        f"\nvideo-mAP ({result.counts['linked_tubes']:,} linked tubes, "
        f"{result.counts['groundtruth_tubes']:,} ground-truth tubes, "
        f"{time.perf_counter() - start:.1f} s)"
    )
    if output_json:
        with open(output_json, "w") as f:
            json.dump(result.to_json(), f, indent=1)
        print(f"written: {output_json}", file=sys.stderr)
    return result


# --- (b) scoring a model ---
flags.DEFINE_string(
    "model_dir",
    None,
    "Trainer directory (ckpt-N files, config.json): "
    "score its latest checkpoint, or every one with --continuous.",
)
flags.DEFINE_string("checkpoint_path", None, "One checkpoint to score (.../ckpt-N).")
flags.DEFINE_string("eval_tfrecords", None, "Glob of the evaluation split's TFRecord shards.")
flags.DEFINE_string(
    "output_dir",
    None,
    "Detections CSV, JSON and TensorBoard events (default: <model_dir or checkpoint dir>/eval).",
)
flags.DEFINE_bool(
    "continuous", False, "Score every checkpoint of --model_dir, waiting for new ones."
)
flags.DEFINE_float(
    "eval_timeout", 3600.0, "--continuous: stop after this many seconds without a new checkpoint."
)
flags.DEFINE_float("eval_poll", 10.0, "--continuous: seconds between looks for checkpoints.")
flags.DEFINE_integer(
    "eval_batch_size",
    model_flags.config_default(C.EvalConfig, "batch_size"),
    "Keyframes per inference batch.",
)
flags.DEFINE_enum(
    "precision",
    model_flags.config_default(C.EvalConfig, "precision"),
    list(C.PRECISIONS),
    "Keras dtype policy the model runs in (any of them reads any checkpoint: "
    "variables are float32 in all three).",
)
flags.DEFINE_integer(
    "num_images",
    model_flags.config_default(C.EvalConfig, "num_images"),
    "Keyframes rendered to TensorBoard (eval/keyframes: the stored frame at "
    ">= 448 px, detections and ground truth with a legend; eval/attention: "
    "heat maps beside the frame, for heads that return them).",
)
flags.DEFINE_bool(
    "progress", model_flags.config_default(C.EvalConfig, "progress"), "Show a progress bar."
)
flags.DEFINE_bool(
    "empty_memory",
    False,
    "Ablation: score with the head's inference memory "
    "emptied (AIA: the M-blocks see only each keyframe's own persons), to see "
    "whether the model reads its memory. Only for a head with a memory.",
)


InputError = cli.CliError  # bad flags or files: one line, exit status 2


def _file_flags(*names, lists=False):
    """Every path of the flags `names` exists (lists: comma-separated paths, file mode)."""
    for name in names:
        value = getattr(FLAGS, name)
        for path in _split_list(value) if lists and value else [value]:
            if path and not os.path.isfile(path):
                raise InputError(f"--{name}: no such file: {path}")


def score_model():
    """Mode (b): builds the model of the experiment config and scores checkpoints."""
    if FLAGS.model_dir and FLAGS.checkpoint_path:
        raise InputError("give --model_dir or --checkpoint_path, not both")
    if FLAGS.continuous and not FLAGS.model_dir:
        raise InputError("--continuous needs --model_dir")
    model_dir = FLAGS.model_dir or os.path.dirname(os.path.abspath(FLAGS.checkpoint_path))
    if FLAGS.model_dir and not os.path.isdir(model_dir):
        raise InputError(f"--model_dir: no such directory: {model_dir}")
    if (
        FLAGS.model_dir
        and not cli.flagfile_given()
        and not any(
            os.path.isfile(os.path.join(model_dir, n))
            for n in (C.CONFIG_FILE, C.LEGACY_CONFIG_FILE)
        )
    ):
        from action_tx import checkpointing  # (imports TensorFlow)

        if not checkpointing.find_checkpoints(model_dir, log=None):
            raise InputError(
                f"--model_dir: {model_dir} holds no trained model (no "
                "config.json, no ckpt-N checkpoint): train one there "
                "with tools/train.py"
            )
    config = model_flags.config_for_model_dir(model_dir)
    config.check_eval()
    _file_flags("groundtruth", "label_map", "excluded", "evidence")
    if config.data.label_map and not os.path.isfile(config.data.label_map):
        raise InputError(f"label_map: no such file: {config.data.label_map}")

    import tensorflow as tf  # after flag checks: errors and --help stay instant
    from action_tx import checkpointing, eval_lib
    from action_tx.data.pipeline import record_error_text
    from action_tx.data.tfrecords import NotTFRecordError
    from action_tx.eval_task import TaskEvaluator
    from action_tx.tasks import make_task

    out_dir = FLAGS.output_dir or os.path.join(model_dir, "eval")
    task = make_task(config)
    try:
        # Features: --eval_actors=gt scores the ground-truth boxes (the classification-only
        # bound), detected the checkpoint's detections.
        evaluator = TaskEvaluator(task, out_dir)
    except (FileNotFoundError, NotTFRecordError) as e:  # nothing, or not only shards
        raise InputError(f"--eval_tfrecords: {e}")
    if FLAGS.empty_memory and not eval_lib.has_inference_memory(evaluator.model.head):
        raise InputError(f"--empty_memory: the head {config.model.head!r} has no inference memory")
    if config.model.proposals == "gt" and task.runs_on_frames:
        print(
            "proposals=gt: ground-truth boxes, the classification-only upper bound", file=sys.stderr
        )

    def warn(message):
        print(f"warning: {message}", file=sys.stderr, flush=True)

    def newest_readable(paths):
        """The newest of `paths` that restores, after a warning line for each damaged one."""
        try:
            return evaluator.restore_newest(paths, warn)
        except checkpointing.CheckpointError as e:  # another model's, or none readable
            raise InputError(" ".join(str(e).split()))

    def score(path):
        try:
            result = evaluator.score(
                path,
                excluded=FLAGS.excluded,
                evidence=FLAGS.evidence,
                empty_memory=FLAGS.empty_memory,
                iou_threshold=FLAGS.iou_threshold,
                max_detections_per_key=FLAGS.max_detections_per_key,
                breakdowns=FLAGS.breakdowns,
            )
        except tf.errors.OpError as e:  # e.g. a corrupt shard, a checkpoint of another model
            raise InputError(record_error_text(e) or f"{path}: {e.message.splitlines()[0]}")
        print(result.format_table())
        print(
            f"\n{os.path.basename(path)}: frame-mAP@{result.iou_threshold}IOU = "
            f"{result.map:.6f}  (written to {out_dir})",
            flush=True,
        )
        if FLAGS.video_map:
            name = os.path.basename(path)
            score_video_map(
                config.eval.groundtruth,
                os.path.join(out_dir, f"{name}_detections.csv"),
                config.data.label_map,
                os.path.join(out_dir, f"{name}_video_results.json"),
                excluded=FLAGS.excluded,
            )

    def followed():
        """Every checkpoint not yet scored, restored (`TaskEvaluator.follow`)."""
        try:
            yield from evaluator.follow(model_dir, FLAGS.eval_timeout, FLAGS.eval_poll, warn)
        except checkpointing.CheckpointMismatchError as e:
            raise InputError(" ".join(str(e).split()))

    if FLAGS.continuous:
        count = 0
        for path in followed():  # a restarted evaluator skips scored ones
            score(path)
            count += 1
        print(
            f"no new checkpoint for {FLAGS.eval_timeout:g} s: stopping after {count} evaluated",
            file=sys.stderr,
        )
        return
    # A damaged newest checkpoint: the one before it is scored, as the trainer resumes.
    path = newest_readable(
        [FLAGS.checkpoint_path]
        if FLAGS.checkpoint_path
        else checkpointing.find_checkpoints(model_dir, log=warn)
    )
    if not path:
        raise InputError(f"--model_dir: no checkpoint in {model_dir}")
    score(path)


def main(argv):
    del argv
    model_mode = bool(FLAGS.model_dir or FLAGS.checkpoint_path)
    from object_detection_ext.ava_eval import AvaEvalWarning  # after flag parsing

    cli.one_line_warnings(AvaEvalWarning)
    if model_mode == bool(FLAGS.detections):
        raise InputError(
            "choose one mode: --detections (score a detection file) or "
            "--model_dir/--checkpoint_path (score a model)"
        )
    if model_mode:
        return score_model()
    missing = [f"--{name}" for name in ("groundtruth", "label_map") if not getattr(FLAGS, name)]
    if missing:
        raise InputError(f"scoring a detection file needs {', '.join(missing)}")
    _file_flags("groundtruth", "detections", "excluded", "evidence", lists=True)
    _file_flags("label_map")
    counts = {
        n: len(_split_list(getattr(FLAGS, n)))
        for n in ("groundtruth", "detections", "excluded", "evidence")
        if getattr(FLAGS, n)
    }
    if len(set(counts.values())) > 1:
        raise InputError(
            "pooled splits: give the same number of comma-separated files to "
            + ", ".join(f"--{n} ({c})" for n, c in counts.items())
        )
    score_file(
        FLAGS.groundtruth,
        FLAGS.detections,
        FLAGS.label_map,
        FLAGS.output_json,
        excluded=FLAGS.excluded,
        evidence=FLAGS.evidence,
        iou_threshold=FLAGS.iou_threshold,
        max_detections_per_key=FLAGS.max_detections_per_key,
        breakdowns=FLAGS.breakdowns,
    )
    if FLAGS.video_map:
        if len(_split_list(FLAGS.groundtruth)) > 1:
            raise InputError("--video_map scores one split (no comma-separated lists)")
        out = FLAGS.output_json and os.path.splitext(FLAGS.output_json)[0] + "_video.json"
        score_video_map(
            FLAGS.groundtruth, FLAGS.detections, FLAGS.label_map, out, excluded=FLAGS.excluded
        )


if __name__ == "__main__":
    cli.run(main)
