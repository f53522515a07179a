"""Training: a custom distributed loop (not `Model.fit`) with checkpoints and resume.

    result = train_task(make_task(config))               # an ExperimentConfig's run
    result = train(model_fn=lambda: build_detector(...), dataset_fn=lambda: build_dataset(...),
                   model_dir="runs/x", train_steps=1000, strategy=make_strategy("mirrored"))

`Model.fit` is not used: Keras 3's `fit` fails under MultiWorkerMirroredStrategy
(keras-team/keras#20585). Each step runs `strategy.run` inside a `tf.function`.

The step itself (replica slices of the global batch, gradients summed over replicas, clipping,
float16 loss scaling) is built by `action_tx.train_step.make_train_step`; that module's
docstring says how.
"""

import math
import os
import time
from typing import Callable, Dict, Optional, Sequence

import keras
import tensorflow as tf

from action_tx import checkpointing, interrupt
from action_tx import precision as precision_lib
from action_tx.distribute import (  # noqa: F401  (the trainer's API, re-exported)
    PEER_ERRORS,
    STRATEGIES,
    TrainingError,
    WorkerLostError,
    check_tf_config,
    is_chief,
    make_strategy,
    op_error_text,
    peer_error_text,
)
from action_tx.lr_schedule import WarmupStepDecay  # noqa: F401
from action_tx.optimization import build_optimizer, learning_rate_schedule  # noqa: F401
from action_tx.data import pipeline
from action_tx.progress import Progress

from action_tx.train_step import make_train_step, replica_slice


def _first_batch(dataset: tf.data.Dataset, describe: str) -> Dict[str, tf.Tensor]:
    try:
        for batch in dataset.take(1):
            return batch
    except tf.errors.OpError as e:  # e.g. DataLossError: a file that is not a TFRecord
        raise TrainingError(
            f"cannot read the training data ({describe}): {op_error_text(e)}"
        ) from None
    raise TrainingError(
        f"the training data yields no batch ({describe}): no records, or "
        "fewer examples than one global batch"
    )


def _log(message: str, chief: bool = True):
    if chief:
        print(message, flush=True)


def train(
    *, model_dir: str, strategy: Optional[tf.distribute.Strategy] = None, **kwargs
) -> Dict[str, object]:
    """Trains (or resumes) the model in `model_dir`.

    Returns: {"step": last step, "losses": last step's terms (floats, with grad_norm),
    "history": the terms of every step this call ran, "checkpoint": newest checkpoint path,
    "model", "optimizer"}.

    Args:
      model_fn: builds the detector (called under the strategy's scope); it must offer
        `compute_losses(outputs)` -> dict of scalar terms with `total_loss`.
      dataset_fn: the training `tf.data.Dataset` of GLOBAL batches (batch dict, batch
        `global_batch_size`), repeated; built once.
      model_dir: checkpoints `ckpt-<step>`, `config.json`, TensorBoard logs in `train/`.
      train_steps: total steps; a resumed run continues up to it.
      global_batch_size: examples per step over all replicas (split evenly).
      optimizer, learning_rate, warmup_learning_rate, warmup_steps, decay_steps (default
        train_steps), lr_steps, momentum, weight_decay: see `build_optimizer` /
        `learning_rate_schedule`.
      clip_norm: clip the summed gradients to this global norm (None: no clipping).
      checkpoint_every, keep_checkpoints, log_every: in steps.
      eval_fn, eval_every: eval_fn(model, step) -> {tag: scalar} for TensorBoard.
      init_fn: init_fn(model) on a fresh start only (e.g. Kinetics trunk weights).
      model_config: an `ExperimentConfig` (or a dict of JSON values); stored in
        model_dir/config.json, its model and data sections compared
        on resume (a mismatch raises checkpointing.CheckpointError).
      seed, deterministic: Keras global seed; op determinism (bitwise repeatable runs).
      precision: 'float32', 'mixed_bfloat16' or 'mixed_float16' (`action_tx.precision`; the
        Keras global dtype policy while the model is built and trained, restored on return;
        float16 scales the loss).
      jit_compile: XLA for the forward/backward computation (slower on CPU, see docs/DESIGN.md).
      data_description: names the input in error messages (e.g. the file pattern).

    Multi-worker (MultiWorkerMirroredStrategy): every worker calls `train` with the same
    arguments and a `model_dir` on a shared file system; the chief (worker 0, or 'chief')
    writes checkpoints, config.json and logs, the others save into a scratch folder they
    delete, and all restore from `model_dir`.

    Raises:
      TrainingError (empty input, non-finite loss, bad settings, a record whose frames do not
      decode), checkpointing.CheckpointError,
      WorkerLostError (multi-worker: another worker died or stopped answering; restart all).
      KeyboardInterrupt after Ctrl-C or SIGTERM (one worker): the step under way finishes and
      is saved, and the message names its checkpoint (`action_tx.interrupt`); a second signal
      stops at once.
    """
    strategy = strategy or make_strategy("one_device")
    resolver = getattr(strategy, "cluster_resolver", None)
    workers = (
        len(resolver.cluster_spec().as_dict().get("worker", []))
        + len(resolver.cluster_spec().as_dict().get("chief", []))
        if resolver
        else 1
    )
    try:
        with precision_lib.policy(kwargs.get("precision", "float32")):
            return _train(model_dir=model_dir, strategy=strategy, workers=workers, **kwargs)
    except tf.errors.InvalidArgumentError as e:
        if not pipeline.record_error_text(e):
            raise
        newest = (checkpointing.find_checkpoints(model_dir, log=None) or ["none"])[-1]
        raise TrainingError(f"{op_error_text(e)}; newest checkpoint: {newest}") from None
    except PEER_ERRORS as e:
        if workers < 2:
            raise
        newest = (checkpointing.find_checkpoints(model_dir, log=None) or ["none"])[-1]
        raise WorkerLostError(
            f"another worker died or stopped answering ({peer_error_text(e)}); newest "
            f"checkpoint: {newest}; restart every worker to resume from it"
        ) from None


def _train(
    *,
    model_fn: Callable[[], keras.Model],
    dataset_fn: Callable[[], tf.data.Dataset],
    model_dir: str,
    train_steps: int,
    global_batch_size: int,
    strategy: Optional[tf.distribute.Strategy] = None,
    workers: int = 1,
    optimizer: str = "sgd",
    learning_rate: float = 0.1,
    warmup_learning_rate: float = 0.01,
    warmup_steps: int = 1000,
    decay_steps: Optional[int] = None,
    lr_steps: Optional[Sequence[int]] = None,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    clip_norm: Optional[float] = None,
    checkpoint_every: int = 1000,
    keep_checkpoints: int = 5,
    log_every: int = 100,
    eval_fn: Optional[Callable[[keras.Model, int], Dict[str, float]]] = None,
    eval_every: int = 0,
    init_fn: Optional[Callable[[keras.Model], None]] = None,
    model_config=None,
    seed: int = 0,
    deterministic: bool = False,
    precision: str = "float32",
    jit_compile: bool = False,
    progress: bool = True,
    data_description: str = "",
) -> Dict[str, object]:
    """`train` with its strategy made."""
    chief = is_chief(strategy)
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
        raise TrainingError(
            f"global batch size {global_batch_size} is not a multiple of the {replicas} replicas"
        )
    per_replica = global_batch_size // replicas
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    if model_config is not None and chief:
        # Only the chief: another worker could read config.json half written.
        checkpointing.check_model_config(model_dir, model_config)

    dataset = dataset_fn()
    first = _first_batch(dataset, data_description or "dataset_fn")
    size = int(first["clip" if "clip" in first else "keyframe_mask"].shape[0])  # frames/features
    if size != global_batch_size:
        raise TrainingError(
            f"the dataset's batch is {size}, expected the global batch {global_batch_size}"
        )
    with strategy.scope():
        model = model_fn()
        model(replica_slice(first, per_replica, 0), training=False)  # creates the variables
        schedule = learning_rate_schedule(
            learning_rate=learning_rate,
            warmup_learning_rate=warmup_learning_rate,
            warmup_steps=warmup_steps,
            decay_steps=decay_steps or train_steps,
            lr_steps=lr_steps,
        )
        opt = precision_lib.wrap_optimizer(
            build_optimizer(
                optimizer=optimizer,
                learning_rate=schedule,
                momentum=momentum,
                weight_decay=weight_decay,
            ),
            precision,
        )
        opt.build(model.trainable_variables)  # Keras 3: slots exist before the tf.function
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    iterator = iter(dataset)
    ckpt = checkpointing.make_checkpoint(model=model, optimizer=opt, step=step, iterator=iterator)
    # Non-chief workers take part in the save (collectives) but write to a scratch folder.
    save_dir = (
        model_dir
        if chief
        else os.path.join(model_dir, f".worker_{strategy.cluster_resolver.task_id}")
    )
    # Found before the manager reads the state file: when that file is lost or garbled the
    # checkpoints are found from their .index files (and the chief rewrites the state file).
    checkpoints = checkpointing.find_checkpoints(
        model_dir, log=lambda m: _log(f"warning: {m}", chief), repair=chief
    )
    manager = tf.train.CheckpointManager(ckpt, save_dir, max_to_keep=keep_checkpoints)
    restored = checkpointing.restore_latest(
        ckpt, checkpoints, log=lambda m: _log(f"warning: {m}", True)
    )
    if restored:
        _log(f"resumed from {restored} at step {int(step.numpy())}", chief)
    elif init_fn is not None:
        init_fn(model)

    scaling = precision_lib.uses_loss_scaling(precision)
    train_step = make_train_step(
        model,
        opt,
        strategy,
        per_replica=per_replica,
        clip_norm=clip_norm,
        scaling=scaling,
        jit_compile=jit_compile,
    )

    writer = (
        tf.summary.create_file_writer(os.path.join(model_dir, "train"))
        if chief
        else tf.summary.create_noop_writer()
    )
    start = int(step.numpy())
    bar = Progress(train_steps, "train", enabled=progress and chief, unit="steps", start=start)
    terms, history, t_log, s_log = {}, [], time.perf_counter(), start

    def save(at):
        bar.newline()
        path = checkpointing.save_checkpoint(manager, at)
        if not chief:
            tf.io.gfile.rmtree(save_dir)
            return None
        _log(f"checkpoint: step {at} saved to {path}", chief)
        return path

    last = manager.latest_checkpoint if chief else None
    # Ctrl-C / SIGTERM: finish the step, save it, stop (`interrupt`).
    stop = interrupt.StopRequest(enabled=workers < 2)
    try:
        with stop:
            while int(step.numpy()) < train_steps:
                try:
                    out = train_step(iterator)
                except tf.errors.OutOfRangeError:
                    raise TrainingError(
                        f"the training data ran out at step {int(step.numpy())} "
                        f"({data_description or 'dataset_fn'}); repeat it"
                    ) from None
                step.assign_add(1)
                at = int(step.numpy())
                terms = {k: float(v) for k, v in out.items()}
                if scaling:
                    terms["loss_scale"] = float(opt.dynamic_scale.numpy())
                history.append(terms)
                skipped = (
                    scaling and not math.isfinite(terms["grad_norm"]) and terms["loss_scale"] >= 1.0
                )
                if not all(
                    math.isfinite(v) for k, v in terms.items() if not (skipped and k == "grad_norm")
                ):
                    bar.close()
                    bad = ", ".join(f"{k}={v}" for k, v in terms.items() if not math.isfinite(v))
                    raise TrainingError(
                        f"non-finite loss at step {at} ({bad}); stopped without "
                        f"saving; the last good checkpoint is {last or 'none'}"
                    )
                bar.set(at, note=f"loss {terms['total_loss']:.4f}")
                if at % log_every == 0 or at == train_steps:
                    now = time.perf_counter()
                    with writer.as_default(step=at):
                        for k, v in terms.items():
                            tf.summary.scalar(
                                k if k in ("grad_norm", "loss_scale") else f"loss/{k}", v
                            )
                        tf.summary.scalar("learning_rate", float(schedule(at - 1)))
                        tf.summary.scalar(
                            "examples_per_second",
                            (at - s_log) * global_batch_size / max(now - t_log, 1e-9),
                        )
                    t_log, s_log = now, at
                if at % checkpoint_every == 0 or at == train_steps:
                    last = save(at)
                if eval_fn is not None and eval_every and at % eval_every == 0:
                    bar.newline()
                    with writer.as_default(step=at):
                        for k, v in eval_fn(model, at).items():
                            tf.summary.scalar(k, v)
                if stop.requested and at < train_steps:
                    if at % checkpoint_every:
                        last = save(at)
                    raise KeyboardInterrupt(
                        f"{stop.requested} at step {at}: checkpoint {last or 'none'} holds it; "
                        f"rerun the same command to resume"
                    )
    finally:
        bar.close()
        writer.flush()
    if start >= train_steps and restored:
        last = restored
    return {
        "step": int(step.numpy()),
        "losses": terms,
        "history": history,
        "checkpoint": last,
        "model": model,
        "optimizer": opt,
    }


def train_task(
    task,
    strategy: Optional[tf.distribute.Strategy] = None,
    on_eval: Optional[Callable[[int, object], None]] = None,
) -> Dict[str, object]:
    """Trains (or resumes) the experiment of `task` (an `action_tx.tasks.Task`): its model on
    its training data with `task.config.train`'s settings, `config.json` written into (and
    compared with, on resume) the model_dir, and with `train.eval_every` the evaluation split
    scored every that many steps (`on_eval(step, AvaEvalResult)` sees each result).

    Returns and raises as `train`.
    """
    config, t = task.config, task.config.train
    eval_fn = None
    if t.eval_every:
        from action_tx import eval_lib

        def eval_fn(model, step):
            result = task.score(model)
            if on_eval is not None:
                on_eval(step, result)
            return eval_lib.scalars(result)

    init_fn = None
    if t.init_checkpoint:

        def init_fn(model):
            from action_tx.trunks.i3d_checkpoint import detector_i3d_parts, restore_trunk

            for part in detector_i3d_parts(model):
                report = restore_trunk(part, t.init_checkpoint)
                _log(f"initialised {part.name} from {t.init_checkpoint}: {report}")

    return train(
        model_fn=task.build_model,
        dataset_fn=task.train_dataset,
        data_description=task.data_description,
        model_dir=t.model_dir,
        train_steps=t.train_steps,
        global_batch_size=task.global_batch_size,
        strategy=strategy or make_strategy(t.strategy, collective_timeout_s=t.collective_timeout),
        optimizer=t.optimizer,
        learning_rate=t.learning_rate,
        warmup_learning_rate=t.warmup_learning_rate,
        warmup_steps=t.warmup_steps,
        decay_steps=t.decay_steps,
        lr_steps=t.lr_steps,
        momentum=t.momentum,
        weight_decay=t.weight_decay,
        clip_norm=t.clip_norm,
        checkpoint_every=t.checkpoint_every,
        keep_checkpoints=t.keep_checkpoints,
        log_every=t.log_every,
        eval_every=t.eval_every,
        eval_fn=eval_fn,
        init_fn=init_fn,
        model_config=config,
        seed=config.model.seed,
        deterministic=t.deterministic,
        precision=t.precision,
        jit_compile=t.jit_compile,
        progress=t.progress,
    )
