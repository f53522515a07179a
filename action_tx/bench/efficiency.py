"""Whole-detector efficiency of one train step, against the same run's matmul rate.

Part of `python tools/benchmark.py --suite=perf` (issue 30 items 3 and 5). For each run of
`efficiency_runs` (the demo model, the paper-size Tx detector at 224 and 400 px, the
paper-size AIA detector; `--quick`: tiny ones) and each precision (float32, mixed_bfloat16):
  - FLOPs of one train step (trunk + RPN + ST-RoIAlign + head + losses + backward +
    optimizer update), COUNTED on the traced step function by `action_tx.bench.flops` (TF's
    registered FLOP statistics, the profiler's, plus analytic formulas for the op types TF
    registers none for: Conv3D's gradients, Einsum, 3D pooling, unary math; ops nothing
    reads, which the runtime prunes, not counted);
  - the step's achieved FLOP/s (counted FLOPs / median step time) and that as a fraction of
    the matmul FLOP/s measured in the same process in the same compute dtype (an N x N
    `tf.matmul` in a tf.function, its result summed in the graph): right before the run's
    timings, once in each of its rounds, right after; the reference is the median of these
    three figures (before, median of the rounds, after), all reported;
  - the share of the step's time in each stage of `action_tx.bench.stages` (trunk, rpn,
    roi_pooling, head, losses, optimizer), each timed alone on the inputs captured from one
    staged forward pass (forward + backward each), all stepped round-robin with the whole
    step so that a shared machine's load hits them alike; `other` = the step's median minus
    the stages' medians (what the stages do not account for, negative when the stages
    alone cost more than inside the step).
Device: `device` 'cpu', 'gpu' or 'auto' (a GPU when TensorFlow sees one). On a GPU the
gradient computation and each stage run under XLA (`jit_compile=True`, as `train_lib` does
with --jit_compile) unless `jit_compile=False`; a function with an op XLA cannot compile
there runs without it and the report says which. On a CPU XLA is off (docs/DESIGN.md: 5x
slower there).
"""

import gc
import statistics
import sys
import time
from typing import Optional, Sequence

import action_tx  # noqa: F401  (oneDNN before TensorFlow)
import keras
import tensorflow as tf

from action_tx import precision as precision_lib
from action_tx.bench import efficiency_runs, flops, stages

PRECISIONS = ("float32", "mixed_bfloat16")
COMPUTE_DTYPE = {"float32": tf.float32, "mixed_bfloat16": tf.bfloat16, "mixed_float16": tf.float16}
METHOD = (
    "FLOPs counted on the traced train-step graph (action_tx.bench.flops), over the ops its "
    "outputs or stateful ops depend on (the runtime prunes the rest): analytic formulas for "
    "the op types TF registers no statistics for (Conv3DBackpropInput/Filter, Einsum, 3D "
    "pooling, unary math), else TF's registered FLOP statistics (those of "
    "tf.compat.v1.profiler); other ops uncounted (listed). Rate: counted FLOPs / median step "
    "time; reference: same-process N x N matmul in the compute dtype timed before, within "
    "each round and after (median of the three figures). Stage shares: each stage's "
    "forward+backward timed alone on captured inputs (optimizer: clipping and "
    "apply_gradients of one step's gradients), round-robin with the step; other = step - "
    "sum of stages."
)


def _log(message):
    print(f"[bench perf] {message}", file=sys.stderr, flush=True)


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'gpu' when TensorFlow sees a GPU, else 'cpu'; 'gpu' without one raises."""
    gpus = tf.config.list_physical_devices("GPU")
    if device == "auto":
        return "gpu" if gpus else "cpu"
    if device == "gpu" and not gpus:
        raise ValueError("device 'gpu': TensorFlow sees no GPU here")
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be auto, cpu or gpu, got {device!r}")
    return device


def device_name(device: str) -> str:
    """The device in words: the GPU's name, or the CPU model and its logical cores."""
    if device == "gpu":
        details = tf.config.experimental.get_device_details(
            tf.config.list_physical_devices("GPU")[0]
        )
        return f"GPU {details.get('device_name', 'unknown')}"
    from action_tx.bench.runner import machine_info

    info = machine_info()
    return f"CPU {info['cpu']}, {info['cores']} logical cores"


def _median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn().numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_function(dtype, n: int):
    """-> a tf.function of an n x n x n `tf.matmul` in `dtype`, the product summed in the
    graph (copying it out would measure the copy), called twice (warm-up)."""
    a = tf.cast(tf.random.stateless_normal([n, n], seed=[0, 1]), dtype)
    b = tf.cast(tf.random.stateless_normal([n, n], seed=[0, 2]), dtype)
    f = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, b), tf.float32)))
    for _ in range(2):
        f().numpy()
    return f


def _first_call(make, jit: bool, label: str, notes: dict):
    """`make(jit)`, called once (tracing, compiling); when XLA cannot compile it, `make(False)`
    instead, noting why in `notes[label]`."""
    fn = make(jit)
    try:
        fn().numpy()
        return fn
    except (tf.errors.OpError, ValueError) as e:
        if not jit:
            raise
        text = " ".join(str(getattr(e, "message", e)).split())
        notes[label] = f"XLA failed, ran without: {text[:300]}"
        _log(f"{label}: {notes[label]}")
        fn = make(False)
        fn().numpy()
        return fn


def measure(
    run: dict, precision: str, device: str, jit_compile: bool, rounds: int, matmul_n: int
) -> dict:
    """One run in one precision on `device` -> its figures (see the module docstring)."""
    with tf.device("/GPU:0" if device == "gpu" else "/CPU:0"):
        return _measure(run, precision, jit_compile, rounds, matmul_n)


def _measure(run, precision, jit_compile, rounds, matmul_n) -> dict:
    from action_tx.config import ModelConfig
    from action_tx.model_builder import build_detector
    from action_tx.optimization import build_optimizer

    dtype = COMPUTE_DTYPE[precision]
    _log(f"{run['name']} {precision}: matmul {matmul_n}^2 {dtype.name} before")
    matmul_fn = matmul_function(dtype, matmul_n)
    matmul_flop = 2 * matmul_n**3
    matmul_before = matmul_flop / _median_time(matmul_fn, 5)
    data, train = run["data"], dict(run["train"])
    clip_norm = train.pop("clip_norm", None)
    keras.utils.set_random_seed(0)
    with precision_lib.policy(precision):
        detector = build_detector(ModelConfig(**run["model"]), num_classes=data["num_classes"])
        batch = {k: tf.constant(v) for k, v in efficiency_runs.make_batch(data).items()}
        # Creates the variables. In training mode: an inference pass pools all post-NMS
        # proposals (300 at paper size), which the step never does (it pools the sampled
        # RoIs), and at 400 px that pooling alone exhausted this machine's memory.
        detector(batch, training=True)
        opt = precision_lib.wrap_optimizer(build_optimizer(**train), precision)
        opt.build(detector.trainable_variables)
    variables = detector.trainable_variables
    scale = precision_lib.uses_loss_scaling(precision)  # mixed_float16: as train_lib does
    notes = {}

    def make_step(jit):
        def grads_and_loss():
            return _grads(detector, batch, variables, opt if scale else None)

        grads_fn = tf.function(grads_and_loss, jit_compile=jit)

        @tf.function
        def step():
            grads, loss = grads_fn()
            used = [(g, v) for g, v in zip(grads, variables) if g is not None]
            step_grads = [g for g, _ in used]
            if clip_norm:
                step_grads, _ = tf.clip_by_global_norm(step_grads, clip_norm)
            opt.apply_gradients(zip(step_grads, [v for _, v in used]))
            return loss

        return step

    _log(f"{run['name']} {precision}: tracing and counting the train step")
    start = time.perf_counter()
    step = _first_call(make_step, jit_compile, "train_step", notes)
    # The graph traced for the call above (a jit step's graph is the same graph: the
    # compilation happens below it).
    step_flops = flops.count_flops(step.get_concrete_function())
    # Eager, not traced: tracing the model twice more costs more than one eager pass.
    parts = stages.staged_forward(detector, batch)
    grads, _ = _grads(detector, batch, variables, opt if scale else None)
    fns = {}
    for name in stages.STAGES:
        fns[name] = _first_call(
            lambda jit, name=name: stages.stage_functions(
                detector, opt, batch, parts, grads, clip_norm=clip_norm, jit_compile=jit
            )[name],
            jit_compile and name != "optimizer",
            name,
            notes,
        )
    stage_flops = {
        name: flops.count_flops(fn.get_concrete_function()).total for name, fn in fns.items()
    }
    setup_s = time.perf_counter() - start
    _log(f"{run['name']} {precision}: set up in {setup_s:.0f} s; {rounds} timed rounds")
    # One matmul call per round too: on a shared machine the load changes within minutes.
    times = {name: [] for name in ("step", *stages.STAGES, "matmul")}
    for fn in (step, *fns.values()):  # a warm-up call after the first
        fn().numpy()
    for r in range(rounds):
        for name, fn in (("step", step), *fns.items(), ("matmul", matmul_fn)):
            t0 = time.perf_counter()
            fn().numpy()
            times[name].append(time.perf_counter() - t0)
        _log(f"  round {r + 1}/{rounds}: step {times['step'][-1]:.3f} s")
    _log(f"{run['name']} {precision}: matmul after")
    matmul_after = matmul_flop / _median_time(matmul_fn, 5)
    median = {k: statistics.median(v) for k, v in times.items()}
    matmul_rounds = matmul_flop / median.pop("matmul")
    matmul = statistics.median([matmul_before, matmul_rounds, matmul_after])
    step_s = median["step"]
    shares = {name: median[name] / step_s for name in stages.STAGES}
    shares["other"] = 1.0 - sum(shares.values())
    achieved = step_flops.total / step_s
    out = dict(
        run=run["name"],
        description=run["description"],
        precision=precision,
        jit_compile=jit_compile,
        xla_fallbacks=notes,
        setup_s=round(setup_s, 1),
        rounds=rounds,
        step_s=step_s,
        step_s_all=[round(t, 4) for t in times["step"]],
        flops=step_flops.to_json(),
        step_flops=step_flops.total,
        achieved_flop_per_s=achieved,
        matmul_n=matmul_n,
        matmul_dtype=dtype.name,
        matmul_flop_per_s_before=matmul_before,
        matmul_flop_per_s_after=matmul_after,
        matmul_flop_per_s_rounds=matmul_rounds,
        matmul_flop_per_s=matmul,
        fraction_of_matmul=achieved / matmul,
        stage_s=median,
        stage_shares=shares,
        stage_flops=stage_flops,
        stage_fraction_of_matmul={
            n: stage_flops[n] / median[n] / matmul for n in stages.STAGES if median[n] > 0
        },
        non_trunk_share=1.0 - shares["trunk"],
        # Of the counted FLOPs, the share whose op outputs are in the compute dtype (under a
        # mixed policy some ops stay float32: losses, box coding, CPU Conv3D fallbacks).
        compute_dtype_flop_share=step_flops.by_dtype.get(dtype.name, 0) / step_flops.total,
    )
    out["stage_shares"]["losses_and_optimizer"] = shares["losses"] + shares["optimizer"]
    return out


def _grads(detector, batch, variables, scaling_optimizer=None):
    """-> (one step's gradients in `variables` order, None where a variable has none; the
    loss). With a `scaling_optimizer` (a LossScaleOptimizer) the loss is scaled first."""
    with tf.GradientTape() as tape:
        loss = detector.compute_losses(detector(batch, training=True))["total_loss"]
        scaled = scaling_optimizer.scale_loss(loss) if scaling_optimizer is not None else loss
    return tape.gradient(scaled, variables), loss


def run_suite(
    runs: Optional[Sequence[str]] = None,
    precisions: Sequence[str] = PRECISIONS,
    device: str = "auto",
    quick: bool = False,
    jit_compile: Optional[bool] = None,
    rounds: Optional[int] = None,
) -> dict:
    """Every run of `runs` (names in efficiency_runs; None: RUNS, QUICK_RUNS when `quick`) in
    every precision -> dict(method, device, device_name, jit_compile, results=[measure's])."""
    device = resolve_device(device)
    jit = (device == "gpu") if jit_compile is None else bool(jit_compile)
    matmul_n = 1024 if quick else (8192 if device == "gpu" else 4096)
    rounds = rounds or (2 if quick else 3)
    results = []
    for run in efficiency_runs.find(runs, quick):
        for precision in precisions:
            results.append(
                measure(run, precision_lib.check(precision), device, jit, rounds, matmul_n)
            )
            keras.backend.clear_session()  # the run's model is gone: free its memory
            gc.collect()
    return dict(
        method=METHOD,
        device=device,
        device_name=device_name(device),
        jit_compile=jit,
        results=results,
    )


def _g(x):
    return f"{x / 1e9:.1f}"


def to_markdown(suite: dict) -> str:
    """The efficiency section of the perf report."""
    lines = [
        "## Whole-detector train step vs the same-run matmul rate",
        "",
        f"Device: {suite['device_name']} ({suite['device']}); XLA "
        f"{'on' if suite['jit_compile'] else 'off'}.",
        "",
        "| run | precision | step (s) | GFLOP / step | GFLOP/s | matmul GFLOP/s (before, "
        "rounds, after) | fraction of matmul | trunk | rpn | roi pool | head | losses | optimizer "
        "| other | not trunk |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in suite["results"]:
        s = r["stage_shares"]
        lines.append(
            f"| {r['run']} | {r['precision']} | {r['step_s']:.3f} | {_g(r['step_flops'])} | "
            f"{_g(r['achieved_flop_per_s'])} | {_g(r['matmul_flop_per_s'])} "
            f"({_g(r['matmul_flop_per_s_before'])}, {_g(r['matmul_flop_per_s_rounds'])}, "
            f"{_g(r['matmul_flop_per_s_after'])}) | "
            f"{r['fraction_of_matmul']:.2f} | "
            + " | ".join(f"{s[k]:.3f}" for k in (*stages.STAGES, "other"))
            + f" | {r['non_trunk_share']:.3f} |"
        )
    lines += ["", "Runs: " + "; ".join(f"{r['run']}: {r['description']}" for r in _unique(suite))]
    lines += ["", f"Method: {suite['method']}", ""]
    for r in suite["results"]:
        lines.append(
            f"- {r['run']} {r['precision']}: {r['compute_dtype_flop_share']:.1%} of the counted "
            f"FLOPs in {r['matmul_dtype']}; setup (tracing, first calls) {r['setup_s']:.0f} s; "
            f"step times {r['step_s_all']} s"
        )
        if r["xla_fallbacks"]:
            lines.append(f"- {r['run']} {r['precision']}: {r['xla_fallbacks']}")
        uncounted = r["flops"]["uncounted_output_elements"]
        if uncounted:
            total = sum(uncounted.values())
            lines.append(
                f"- {r['run']} {r['precision']}: uncounted float ops output {total:,} elements "
                f"({total / max(r['step_flops'], 1):.2%} of the counted FLOPs at one per "
                f"element): {', '.join(sorted(uncounted))}"
            )
    return "\n".join(lines) + "\n"


def _unique(suite):
    seen = {}
    for r in suite["results"]:
        seen.setdefault(r["run"], r)
    return list(seen.values())
