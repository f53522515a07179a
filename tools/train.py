"""Trains an action detector; resumes by itself from the newest checkpoint in --model_dir.

    python tools/train.py --flagfile=configs/demo.flags [--model_dir=DIR] [--train_steps=N ...]

Strategies: --strategy=one_device | mirrored (all local GPUs) | multi_worker (cluster from
TF_CONFIG; --batch_size is the global batch, split over all replicas). Writes
DIR/ckpt-<step>, DIR/config.json (the experiment config; a restart with another model or data
config is refused, naming the fields that differ), TensorBoard logs in DIR/train (and DIR/eval
with --eval_every), and holds DIR/train.lock while it runs: a second trainer on DIR refuses
(`action_tx.model_dir_lock`). Flags are parsed here only: `model_flags.experiment_config` maps
them onto an `action_tx.config.ExperimentConfig`, and `action_tx.train_lib.train_task` does the
work. A model_dir of an older run (model_flags.json, no config.json) resumes: its config.json
is written from that file first. Bad input: one `error: ...` line, exit 2; a run that cannot go
on (a full disk at a checkpoint, a lost worker): one `error: ...` line, exit 1. A rerun of a
finished run says so and exits 0.

multi_worker: start this program once per worker, each with the same flags, the same
--model_dir on a shared file system, and its own TF_CONFIG, e.g. for worker i of two:
    TF_CONFIG='{"cluster": {"worker": ["host0:port", "host1:port"]},
                "task": {"type": "worker", "index": i}}'
Worker 0 is the chief (checkpoints, logs). When a worker dies or stops answering for
--collective_timeout seconds, the others stop with one `error: ...` line and exit 1; restart
all of them to resume from the newest checkpoint.
"""

import os

import cli  # noqa: F401  (first: TF's log level and start-up options)
import model_flags
from absl import flags, logging

from action_tx import config as C

FLAGS = flags.FLAGS
T = C.TrainConfig


def _d(name):
    return model_flags.config_default(T, name)


flags.DEFINE_string("model_dir", None, "Checkpoints, config.json and TensorBoard logs.")
flags.DEFINE_string("train_tfrecords", None, "Glob of the training TFRecord shards.")
flags.DEFINE_string("eval_tfrecords", None, "Glob of evaluation shards (for --eval_every).")
flags.DEFINE_string("eval_groundtruth", None, "AVA ground-truth CSV of --eval_tfrecords.")
flags.DEFINE_integer("batch_size", _d("batch_size"), "GLOBAL batch size (split over replicas).")
flags.DEFINE_integer("train_steps", _d("train_steps"), "Total training steps.")
flags.DEFINE_enum("optimizer", _d("optimizer"), ["sgd", "adamw"], "SGD with momentum, or AdamW.")
flags.DEFINE_float("learning_rate", _d("learning_rate"), "Peak learning rate (paper §3.5: 0.1).")
flags.DEFINE_float(
    "warmup_learning_rate", _d("warmup_learning_rate"), "Learning rate at step 0 (paper: 0.01)."
)
flags.DEFINE_integer("warmup_steps", _d("warmup_steps"), "Linear warmup steps (paper: 1000).")
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
flags.DEFINE_float("momentum", _d("momentum"), "SGD momentum.")
flags.DEFINE_float("weight_decay", _d("weight_decay"), "Decoupled weight decay (kernels only).")
flags.DEFINE_float("clip_norm", None, "Clip the gradients to this global norm.")
flags.DEFINE_enum("strategy", _d("strategy"), list(C.STRATEGIES), "Distribution strategy.")
flags.DEFINE_float(
    "collective_timeout",
    _d("collective_timeout"),
    "multi_worker: seconds a collective may wait "
    "for the other workers before the run fails (a dead worker).",
)
flags.DEFINE_enum(
    "precision",
    _d("precision"),
    list(C.PRECISIONS),
    "Keras dtype policy: float32; mixed_bfloat16 (bfloat16 compute, float32 "
    "variables; ~2x faster on CPUs with AVX512-BF16 and recent GPUs); "
    "mixed_float16 (float16 compute with dynamic loss scaling, for GPUs without "
    "bfloat16).",
)
flags.DEFINE_bool("mixed_precision", False, "Alias of --precision=mixed_bfloat16.")
flags.DEFINE_bool(
    "jit_compile",
    _d("jit_compile"),
    "XLA for the forward/backward pass (off on CPUs: 5x slower there, docs/DESIGN.md).",
)
flags.DEFINE_bool(
    "deterministic", _d("deterministic"), "TF op determinism: bitwise repeatable runs."
)
flags.DEFINE_integer("checkpoint_every", _d("checkpoint_every"), "Steps between checkpoints.")
flags.DEFINE_integer("keep_checkpoints", _d("keep_checkpoints"), "Checkpoints kept.")
flags.DEFINE_integer("log_every", _d("log_every"), "Steps between TensorBoard scalars.")
flags.DEFINE_integer("eval_every", _d("eval_every"), "Steps between evaluations (0: none).")
flags.DEFINE_string(
    "init_checkpoint",
    None,
    "Converted Kinetics I3D checkpoint "
    "(tools/convert_i3d_checkpoint.py) for the trunk and any I3D head tail; "
    "used on a fresh start only.",
)
flags.DEFINE_bool("progress", _d("progress"), "Show a progress bar.")


def experiment_config():
    """The run's validated `ExperimentConfig` (the flags; a legacy model_dir is migrated)."""
    if FLAGS.mixed_precision:
        if FLAGS["precision"].present and FLAGS.precision != "mixed_bfloat16":
            raise cli.CliError(
                f"--mixed_precision means --precision=mixed_bfloat16, but "
                f"--precision={FLAGS.precision} is also given; give only --precision"
            )
        FLAGS.precision = "mixed_bfloat16"
    config = model_flags.experiment_config()
    config.check_train()
    return config


def _migrate_legacy(model_dir, config):
    """A model_dir trained before config.json (model_flags.json only) gets the config.json of
    its flags, so that the trainer compares the new run's config with it."""
    if not model_dir or os.path.isfile(os.path.join(model_dir, C.CONFIG_FILE)):
        return
    legacy = os.path.join(model_dir, C.LEGACY_CONFIG_FILE)
    if os.path.isfile(legacy):
        saved = model_flags.model_dir_config(model_dir)
        # Its run settings are this run's: only the model and data sections are compared.
        C.save(
            C.ExperimentConfig(
                model=saved.model, data=saved.data, train=config.train, eval=config.eval
            ),
            model_dir,
        )


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # TF's per-save INFO lines drown the progress bar
    from action_tx import model_dir_lock, train_lib

    config = experiment_config()
    if not os.path.isfile(config.data.label_map):
        raise cli.CliError(f"--label_map: no such file: {config.data.label_map}")
    t = config.train
    if t.init_checkpoint and not os.path.exists(t.init_checkpoint + ".index"):
        raise cli.CliError(
            f"--init_checkpoint: no checkpoint at {t.init_checkpoint} (no .index file)"
        )
    try:
        # Before TensorFlow runs any op: MultiWorkerMirroredStrategy configures collectives
        # at program start.
        strategy = train_lib.make_strategy(t.strategy, collective_timeout_s=t.collective_timeout)
    except train_lib.TrainingError as e:
        raise cli.CliError(e) from None
    lock = None
    if train_lib.is_chief(strategy):  # multi_worker: the chief alone writes, and locks
        try:
            lock = model_dir_lock.acquire(
                t.model_dir, log=lambda m: print(f"warning: {m}", flush=True)
            )
        except (model_dir_lock.ModelDirLocked, OSError) as e:
            raise cli.CliError(e) from None
    try:
        _train(config, strategy)
    finally:
        if lock is not None:
            lock.release()


def _train(config, strategy):
    """The run itself, with the model_dir locked."""
    from action_tx import checkpointing, train_lib
    from action_tx.tasks import make_task

    task = make_task(config)
    task.check_train_data()
    _migrate_legacy(config.train.model_dir, config)
    problem = None
    try:
        result = train_lib.train_task(
            task,
            strategy,
            on_eval=lambda step, r: print(
                f"\nstep {step}: frame-mAP@0.5 = {r.map:.4f}", flush=True
            ),
        )
    except (train_lib.WorkerLostError, checkpointing.CheckpointSaveError) as e:
        problem = (str(e), 1)  # not bad input: exit 1
    except (train_lib.TrainingError, checkpointing.CheckpointError) as e:
        problem = (str(e), 2)
    if problem:
        # Raised here, after the failed run's frames are gone: its input pipeline's threads
        # (e.g. libjpeg's complaints about a bad frame) stop before the error line is printed.
        raise cli.CliError(*problem)
    if not result["history"]:  # resumed at or past --train_steps: no step ran
        print(
            f"the run is already complete at step {result['step']} "
            f"(--train_steps={config.train.train_steps}); checkpoint: {result['checkpoint']}",
            flush=True,
        )
        return
    print(
        f"trained to step {result['step']}; checkpoint: {result['checkpoint']}; "
        f"total_loss {result['losses'].get('total_loss', float('nan')):.4f}",
        flush=True,
    )


if __name__ == "__main__":
    cli.run(main)
