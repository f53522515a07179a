"""Trains an action detector; resumes by itself from the newest checkpoint in --model_dir.

    python tools/train.py --flagfile=configs/demo.flags [--model_dir=DIR] [--train_steps=N ...]

Strategies: --strategy=one_device | mirrored (all local GPUs) | multi_worker (cluster from
TF_CONFIG; --batch_size is the global batch, split over all replicas). Writes
DIR/ckpt-<step>, DIR/model_flags.json (the model/data flags; a restart with other model flags
is refused), TensorBoard logs in DIR/train (and DIR/eval with --eval_every), and holds
DIR/train.lock while it runs: a second trainer on DIR refuses (`action_tx.model_dir_lock`).
Flags are parsed here only; the work is `action_tx.train_lib.train`. Bad input: one
`error: ...` line, exit 2; a run that cannot go on (a full disk at a checkpoint, a lost
worker): one `error: ...` line, exit 1. A rerun of a finished run says so and exits 0.

multi_worker: start this program once per worker, each with the same flags, the same
--model_dir on a shared file system, and its own TF_CONFIG, e.g. for worker i of two:
    TF_CONFIG='{"cluster": {"worker": ["host0:port", "host1:port"]},
                "task": {"type": "worker", "index": i}}'
Worker 0 is the chief (checkpoints, logs). When a worker dies or stops answering for
--collective_timeout seconds, the others stop with one `error: ...` line and exit 1; restart
all of them to resume from the newest checkpoint.
"""

import os
import sys

import model_flags  # noqa: F401  (model/data flags; puts the repo on sys.path first)
from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Checkpoints, model_flags.json and TensorBoard logs.")
flags.DEFINE_string("train_tfrecords", None, "Glob of the training TFRecord shards.")
flags.DEFINE_string("eval_tfrecords", None, "Glob of evaluation shards (for --eval_every).")
flags.DEFINE_string("eval_groundtruth", None, "AVA ground-truth CSV of --eval_tfrecords.")
flags.DEFINE_integer("batch_size", 2, "GLOBAL batch size (split over replicas).")
flags.DEFINE_integer("train_steps", 1000, "Total training steps.")
flags.DEFINE_enum("optimizer", "sgd", ["sgd", "adamw"], "SGD with momentum, or AdamW.")
flags.DEFINE_float("learning_rate", 0.1, "Peak learning rate (paper §3.5: 0.1).")
flags.DEFINE_float("warmup_learning_rate", 0.01, "Learning rate at step 0 (paper: 0.01).")
flags.DEFINE_integer("warmup_steps", 1000, "Linear warmup steps (paper: 1000).")
flags.DEFINE_integer(
    "decay_steps", None, "Step where the cosine reaches 0 (paper: 500000); default --train_steps."
)
flags.DEFINE_list(
    "lr_steps",
    None,
    "Step decay instead of the cosine: the learning rate is "
    "divided by 10 at each of these steps (after the warmup; ACAR-Net §5 on "
    "UCF101-24: 4900,5100).",
)
flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
flags.DEFINE_float("weight_decay", 0.0, "Decoupled weight decay (kernels only).")
flags.DEFINE_float("clip_norm", None, "Clip the gradients to this global norm.")
flags.DEFINE_enum(
    "strategy", "one_device", ["one_device", "mirrored", "multi_worker"], "Distribution strategy."
)
flags.DEFINE_float(
    "collective_timeout",
    300.0,
    "multi_worker: seconds a collective may wait "
    "for the other workers before the run fails (a dead worker).",
)
flags.DEFINE_enum(
    "precision",
    "float32",
    ["float32", "mixed_bfloat16", "mixed_float16"],
    "Keras dtype policy: float32; mixed_bfloat16 (bfloat16 compute, float32 "
    "variables; ~2x faster on CPUs with AVX512-BF16 and recent GPUs); "
    "mixed_float16 (float16 compute with dynamic loss scaling, for GPUs without "
    "bfloat16).",
)
flags.DEFINE_bool("mixed_precision", False, "Alias of --precision=mixed_bfloat16.")
flags.DEFINE_bool(
    "jit_compile",
    False,
    "XLA for the forward/backward pass (off on CPUs: 5x slower there, docs/DESIGN.md).",
)
flags.DEFINE_bool("deterministic", False, "TF op determinism: bitwise repeatable runs.")
flags.DEFINE_integer("checkpoint_every", 1000, "Steps between checkpoints.")
flags.DEFINE_integer("keep_checkpoints", 5, "Checkpoints kept.")
flags.DEFINE_integer("log_every", 100, "Steps between TensorBoard scalars.")
flags.DEFINE_integer("eval_every", 0, "Steps between evaluations (0: none).")
flags.DEFINE_string(
    "init_checkpoint",
    None,
    "Converted Kinetics I3D checkpoint "
    "(tools/convert_i3d_checkpoint.py) for the trunk and any I3D head tail; "
    "used on a fresh start only.",
)
flags.DEFINE_bool("progress", True, "Show a progress bar.")


def model_config() -> dict:
    """The model/data flag values (those of tools/model_flags.py), for model_flags.json."""
    if FLAGS.head == "aia" and not FLAGS.aia_memory_size:
        # Resolved here from the manifests this process sees and recorded, so that eval and
        # export (which see only one split) build memory tables of the checkpoint's size.
        FLAGS.aia_memory_size = model_flags.aia_memory_size()
    return {f.name: f.value for f in FLAGS.get_flags_for_module(model_flags)}


def _init_fn(path):
    def init(detector):
        from action_tx.trunks.i3d_checkpoint import detector_i3d_parts, restore_trunk

        for part in detector_i3d_parts(detector):
            report = restore_trunk(part, path)
            print(f"initialised {part.name} from {path}: {report}", flush=True)

    return init


def _eval_fn(label_map):
    from action_tx import eval_lib
    from object_detection_ext import ava_eval
    from action_tx.data.pipeline import build_dataset

    def evaluate(detector, step):
        if FLAGS.input == "features":
            dataset = model_flags.feature_dataset_from_flags(label_map, False, FLAGS.batch_size)
        else:
            dataset = build_dataset(
                FLAGS.eval_tfrecords,
                batch_size=FLAGS.batch_size,
                **model_flags.dataset_kwargs_from_flags(label_map, False),
            )
        rows, _ = eval_lib.predict_dataset(
            detector, dataset, label_map.ids, num_images=0, progress=False
        )
        result = ava_eval.evaluate(FLAGS.eval_groundtruth, rows, label_map)
        print(f"\nstep {step}: frame-mAP@0.5 = {result.map:.4f}", flush=True)
        return eval_lib.scalars(result)

    return evaluate


def make_strategy():
    """The --strategy; made before TensorFlow runs any op (MultiWorkerMirroredStrategy must
    configure collectives at program start)."""
    from action_tx import train_lib

    return train_lib.make_strategy(FLAGS.strategy, collective_timeout_s=FLAGS.collective_timeout)


def build_train_kwargs(label_map, strategy=None) -> dict:
    """The one mapping from flags onto `train_lib.train` keyword arguments (`strategy`:
    default `make_strategy()`)."""
    from action_tx.data.pipeline import build_dataset

    pattern = FLAGS.train_tfrecords
    batch_size = FLAGS.batch_size
    if FLAGS.input == "features":
        # A feature batch: --batch_size consecutive keyframes of one video + context ones.
        dataset_fn = lambda: model_flags.feature_dataset_from_flags(  # noqa: E731
            label_map, True, FLAGS.batch_size
        )
        description = f"--feature_dir={FLAGS.feature_dir}"
        batch_size += 2 * FLAGS.context_keyframes
    else:
        dataset_fn = lambda: build_dataset(  # noqa: E731
            pattern,
            batch_size=FLAGS.batch_size,
            **model_flags.dataset_kwargs_from_flags(label_map, True),
        )
        description = f"--train_tfrecords={pattern}"
        if FLAGS.consecutive_keyframes:
            batch_size += 2 * FLAGS.context_keyframes
    return dict(
        model_fn=lambda: model_flags.build_model_from_flags(label_map),
        dataset_fn=dataset_fn,
        data_description=description,
        model_dir=FLAGS.model_dir,
        train_steps=FLAGS.train_steps,
        global_batch_size=batch_size,
        strategy=strategy or make_strategy(),
        optimizer=FLAGS.optimizer,
        learning_rate=FLAGS.learning_rate,
        warmup_learning_rate=FLAGS.warmup_learning_rate,
        warmup_steps=FLAGS.warmup_steps,
        decay_steps=FLAGS.decay_steps,
        momentum=FLAGS.momentum,
        lr_steps=[int(s) for s in FLAGS.lr_steps] if FLAGS.lr_steps else None,
        weight_decay=FLAGS.weight_decay,
        clip_norm=FLAGS.clip_norm,
        checkpoint_every=FLAGS.checkpoint_every,
        keep_checkpoints=FLAGS.keep_checkpoints,
        log_every=FLAGS.log_every,
        eval_every=FLAGS.eval_every,
        eval_fn=_eval_fn(label_map) if FLAGS.eval_every else None,
        init_fn=_init_fn(FLAGS.init_checkpoint) if FLAGS.init_checkpoint else None,
        model_config=model_config(),
        seed=FLAGS.seed,
        deterministic=FLAGS.deterministic,
        precision=run_precision(),
        jit_compile=FLAGS.jit_compile,
        progress=FLAGS.progress,
    )


def run_precision() -> str:
    """--precision, with --mixed_precision read as mixed_bfloat16."""
    return "mixed_bfloat16" if FLAGS.mixed_precision else FLAGS.precision


def _check_flags():
    """Cheap checks before TensorFlow does any work -> error message or None."""
    from action_tx.heads import HEADS

    if FLAGS.mixed_precision and FLAGS["precision"].present and FLAGS.precision != "mixed_bfloat16":
        return (
            f"--mixed_precision means --precision=mixed_bfloat16, but "
            f"--precision={FLAGS.precision} is also given; give only --precision"
        )
    if not FLAGS.model_dir:
        return "--model_dir is required"
    if FLAGS.input == "features":
        for name in ("feature_dir",) + (("eval_feature_dir",) if FLAGS.eval_every else ()):
            folder = getattr(FLAGS, name)
            if not folder:
                return f"--input=features needs --{name}"
            if not os.path.isfile(os.path.join(folder, "manifest.json")):
                return f"--{name}: no manifest.json in {folder} (run tools/extract_features.py)"
        if FLAGS.init_checkpoint:
            return "--init_checkpoint is for end-to-end training, not --input=features"
        if FLAGS.strategy != "one_device":
            return "--input=features trains with --strategy=one_device (a batch is one video)"
    elif not FLAGS.train_tfrecords:
        return "--train_tfrecords is required (a glob of TFRecord shards)"
    if not FLAGS.label_map:
        return "--label_map is required"
    if not os.path.isfile(FLAGS.label_map):
        return f"--label_map: no such file: {FLAGS.label_map}"
    if FLAGS.head not in HEADS:
        return f"unknown --head={FLAGS.head}; available heads: {', '.join(sorted(HEADS))}"
    if FLAGS.eval_every and FLAGS.input == "features" and not FLAGS.eval_groundtruth:
        return "--eval_every needs --eval_groundtruth"
    if (
        FLAGS.eval_every
        and FLAGS.input != "features"
        and not (FLAGS.eval_tfrecords and FLAGS.eval_groundtruth)
    ):
        return "--eval_every needs --eval_tfrecords and --eval_groundtruth"
    if FLAGS.init_checkpoint and not os.path.exists(FLAGS.init_checkpoint + ".index"):
        return f"--init_checkpoint: no checkpoint at {FLAGS.init_checkpoint} (no .index file)"
    if FLAGS.strategy == "multi_worker":
        from action_tx import train_lib

        return train_lib.check_tf_config()
    return None


def _check_data(pattern):
    """-> error message or None. An empty input would make the repeated pipeline spin."""
    import tensorflow as tf
    from action_tx import train_lib
    from action_tx.data import tfrecords

    try:
        files = tfrecords.match_files(pattern)
    except FileNotFoundError:
        return f"--train_tfrecords={pattern}: no files match"
    except tfrecords.NotTFRecordError as e:
        return f"--train_tfrecords: {e}"
    try:
        for _ in tf.data.TFRecordDataset(files).take(1):
            return None
    except tf.errors.OpError as e:
        return f"--train_tfrecords={pattern}: cannot read: {train_lib.op_error_text(e)}"
    return f"--train_tfrecords={pattern}: the {len(files)} matching file(s) hold no records"


def main(argv):
    if len(argv) > 1:
        return f"unexpected arguments: {' '.join(argv[1:])}"
    logging.set_verbosity(logging.WARNING)  # TF's per-save INFO lines drown the progress bar
    problem = _check_flags()
    if problem:
        return problem
    from action_tx import model_dir_lock, train_lib

    try:
        strategy = make_strategy()
    except train_lib.TrainingError as e:
        return " ".join(str(e).split())
    lock = None
    if train_lib.is_chief(strategy):  # multi_worker: the chief alone writes, and locks
        try:
            lock = model_dir_lock.acquire(
                FLAGS.model_dir, log=lambda m: print(f"warning: {m}", flush=True)
            )
        except (model_dir_lock.ModelDirLocked, OSError) as e:
            return " ".join(str(e).split())
    try:
        return _train(strategy)
    finally:
        if lock is not None:
            lock.release()


def _train(strategy):
    """The run itself, with the model_dir locked -> error message (, status) or None."""
    from action_tx import checkpointing, train_lib
    from action_tx.data import ava

    problem = None if FLAGS.input == "features" else _check_data(FLAGS.train_tfrecords)
    if problem:
        return problem
    try:
        label_map = ava.read_label_map(FLAGS.label_map)
        result = train_lib.train(**build_train_kwargs(label_map, strategy))
    except (train_lib.WorkerLostError, checkpointing.CheckpointSaveError) as e:
        return " ".join(str(e).split()), 1  # not bad input: exit 1 (see _run)
    except (
        train_lib.TrainingError,
        checkpointing.CheckpointError,
        ava.AvaFormatError,
        FileNotFoundError,
        ValueError,
    ) as e:
        return " ".join(str(e).split())
    if not result["history"]:  # resumed at or past --train_steps: no step ran
        print(
            f"the run is already complete at step {result['step']} "
            f"(--train_steps={FLAGS.train_steps}); checkpoint: {result['checkpoint']}",
            flush=True,
        )
        return None
    print(
        f"trained to step {result['step']}; checkpoint: {result['checkpoint']}; "
        f"total_loss {result['losses']['total_loss']:.4f}",
        flush=True,
    )
    return None


def _run(argv):
    problem = main(argv)
    if problem:
        problem, status = problem if isinstance(problem, tuple) else (problem, 2)
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(status)


if __name__ == "__main__":
    model_flags.exit_on_missing_flagfile(sys.argv)
    app.run(_run)
