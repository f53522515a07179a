"""Benchmark suite `perf`: the system's speed on this machine, in one report.

    python tools/benchmark.py --suite=perf --out=DIR [--preset=demo] [--quick]
        [--perf_sections=system,efficiency] [--perf_runs=demo,tx_paper_224,...]
        [--precisions=float32,mixed_bfloat16] [--device=auto|cpu|gpu]

Two sections (`--perf_sections`, default both):
efficiency: the whole detector's train step (`action_tx.bench.efficiency`): its counted
  FLOPs, achieved FLOP/s as a fraction of the same run's matmul FLOP/s in the same precision,
  and the share of the step's time in each stage, for the runs of
  `action_tx.bench.efficiency_runs` (demo model, paper-size Tx at 224 and 400 px, paper-size
  AIA; tiny ones with --quick) on `--device` (a GPU when present, under XLA).
system: runs the existing suites through their own `run` functions (input, trunk, eval, and
memory when `action_tx/bench/memory.py` exists) and adds two measurements of its own:
  - train-step consumption: clips/s of a timed training step (forward, losses, gradients,
    AdamW update, one tf.function) of the bench model (`heads_runs.BASE`, configs/bench.flags'
    fields) on batches of the input suite's TFRecords held in memory, against the input
    pipeline's clips/s;
  - SavedModel keyframes/s: the same model (random weights) exported with
    `action_tx.export.export_saved_model`, its `serving_default` timed on a uint8 clip with
    and without XLA (`tf.function(jit_compile=True)` around the loaded signature).
Writes DIR/perf.json (figures + the sub-reports + `efficiency`); the Markdown goes to
DIR/perf.md.
"""

import importlib
import importlib.util
import json
import os
import re
import shutil
import statistics
import sys
import time

import action_tx  # noqa: F401  (oneDNN before TensorFlow)
import tensorflow as tf

from action_tx.bench.runner import machine_info


def _log(message):
    print(f"[bench perf] {message}", file=sys.stderr, flush=True)


def parse_figure(report: str, pattern: str):
    """First group of `pattern` in a sub-report as float, or None (the sub-suites return
    Markdown; their headline figures are read back from it)."""
    match = re.search(pattern, report)
    return float(match.group(1).replace(",", "")) if match else None


def bench_config():
    """The bench preset's `ExperimentConfig`: `heads_runs.BASE`, configs/bench.flags' fields."""
    from action_tx import config as C
    from action_tx.bench.heads_runs import BASE

    return C.with_overrides(C.ExperimentConfig(), BASE)


def bench_detector(num_classes: int):
    """(the bench preset's detector with random weights, its config)."""
    from action_tx.model_builder import build_detector

    config = bench_config()
    return build_detector(config.model, num_classes=num_classes), config


def _median_seconds(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def train_step_clips_per_s(pattern: str, num_classes: int, quick: bool) -> dict:
    """Clips/s of the bench model's timed train step on in-memory batches of `pattern`."""
    from action_tx import train_lib
    from action_tx.data.pipeline import build_dataset

    detector, config = bench_detector(num_classes)
    d, t = config.data, config.train
    batch_size = t.batch_size
    ds = build_dataset(
        pattern,
        batch_size=batch_size,
        num_classes=num_classes,
        num_frames=d.num_frames,
        frame_stride=d.frame_stride,
        image_size=d.image_size,
        training=True,
        seed=0,
        max_boxes=d.max_boxes,
    )
    batches = list(ds.take(4))
    detector(batches[0], training=False)
    opt = train_lib.build_optimizer(
        optimizer=t.optimizer,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
    )
    opt.build(detector.trainable_variables)

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            loss = detector.compute_losses(detector(batch, training=True))["total_loss"]
        grads = tape.gradient(loss, detector.trainable_variables)
        opt.apply_gradients(
            [(g, v) for g, v in zip(grads, detector.trainable_variables) if g is not None]
        )
        return loss

    counter = iter(range(10**9))
    seconds = _median_seconds(
        lambda: step(batches[next(counter) % len(batches)]).numpy(),
        runs=5 if quick else 20,
        warmup=2,
    )
    return dict(
        step_s=seconds,
        clips_per_s=batch_size / seconds,
        batch_size=batch_size,
        model=f"{config.model.trunk} + {config.model.head} head, {d.num_frames} frames stride "
        f"{d.frame_stride}, {d.image_size} px, batch {batch_size}",
    )


def saved_model_keyframes_per_s(out_dir: str, num_classes: int, quick: bool) -> dict:
    """Keyframes/s of the exported bench model's serving_default, XLA off and on."""
    from action_tx.export import export_saved_model, preprocess_clip

    detector, config = bench_detector(num_classes)
    frames, size = config.data.num_frames, config.data.image_size
    detector(
        {
            "clip": preprocess_clip(
                tf.zeros([frames, size, size, 3], tf.uint8), num_frames=frames, image_size=size
            )
        },
        training=False,
    )
    export_dir = os.path.join(out_dir, "perf_saved_model")
    shutil.rmtree(export_dir, ignore_errors=True)
    export_saved_model(
        detector,
        export_dir,
        num_frames=frames,
        image_size=size,
        class_ids=list(range(1, num_classes + 1)),
        class_names=[f"class_{i}" for i in range(1, num_classes + 1)],
        frame_stride=config.data.frame_stride,
        fps=10.0,
    )
    loaded = tf.saved_model.load(export_dir)  # kept alive: the signature uses its variables
    serving = loaded.signatures["serving_default"]
    clip = tf.cast(
        tf.random.stateless_uniform(
            [frames, size, size, 3], seed=[0, 1], maxval=256, dtype=tf.int32
        ),
        tf.uint8,
    )
    runs = 5 if quick else 20
    out = {"clip": f"uint8 [{frames}, {size}, {size}, 3]"}
    for name, jit in (("xla_off", False), ("xla_on", True)):
        fn = tf.function(lambda c: serving(clip=c)["num_detections"], jit_compile=jit)
        try:
            # called within this iteration, so the late binding of `fn` is harmless
            seconds = _median_seconds(lambda: fn(clip).numpy(), runs=runs, warmup=2)  # noqa: B023
            out[name] = dict(seconds=seconds, keyframes_per_s=1.0 / seconds)
        except (tf.errors.OpError, ValueError) as e:  # e.g. an op without an XLA kernel
            text = " ".join(str(getattr(e, "message", e)).split())
            ops = sorted(set(re.findall(r"(\w+) \(No registered", text)))
            out[name] = dict(
                error=f"ops without an XLA kernel on this device: {', '.join(ops)}"
                if ops
                else text[:300]
            )
    return out


def _memory_suite():
    name = "action_tx.bench.memory"
    return importlib.import_module(name) if importlib.util.find_spec(name) else None


SECTIONS = ("system", "efficiency")


def run(
    out_dir: str,
    preset: str = "demo",
    quick: bool = False,
    sections=SECTIONS,
    runs=None,
    precisions=None,
    device: str = "auto",
    command: str = "",
) -> str:
    """The perf report (Markdown); writes out_dir/perf.json. `sections`: of SECTIONS; `runs`,
    `precisions`, `device`: the efficiency section's (`efficiency.run_suite`; None: all runs,
    float32 and mixed_bfloat16); `command`: the command line, kept in perf.json (README's
    table names it, `perf_table`)."""
    from action_tx.bench import efficiency

    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown perf sections {sorted(unknown)}; choose of {SECTIONS}")
    start = time.perf_counter()
    machine = machine_info()
    figures, reports, suite = {}, {}, None
    if "system" in sections:
        figures, reports = _system(out_dir, preset, quick)
    if "efficiency" in sections:
        _log("whole-detector efficiency")
        suite = efficiency.run_suite(
            runs=runs, precisions=precisions or efficiency.PRECISIONS, device=device, quick=quick
        )
    machine["load_average_end"] = machine_info()["load_average"]
    seconds = time.perf_counter() - start
    parts = []
    if "system" in sections:
        parts.append(to_markdown(figures, reports, machine, preset, quick, seconds))
    if suite is not None:
        if "system" not in sections:
            parts.append(_heading(machine, preset, quick, seconds))
        parts.append(efficiency.to_markdown(suite))
    with open(os.path.join(out_dir, "perf.json"), "w") as f:
        json.dump(
            dict(
                command=command,
                preset=preset,
                quick=quick,
                machine=machine,
                seconds=seconds,
                figures=figures,
                reports=reports,
                efficiency=suite,
            ),
            f,
            indent=1,
        )
    return "\n".join(parts)


def _system(out_dir: str, preset: str, quick: bool):
    """The system section's measurements -> (figures, sub-reports)."""
    from action_tx.bench import eval as eval_suite
    from action_tx.bench import input as input_suite
    from action_tx.bench import trunk as trunk_suite

    figures, reports = {}, {}
    _log("input pipeline (suite 'input')")
    reports["input"] = input_suite.run(out_dir, preset, quick)
    figures["input_clips_per_s"] = parse_figure(reports["input"], r"\*\*([\d.]+) clips/s\*\*")
    with open(os.path.join(out_dir, f"input_tfrecords_{preset}", "train_manifest.json")) as f:
        num_classes = json.load(f)["label_map"]["num_classes"]
    _log("train step of the bench model")
    figures["train_step"] = train_step_clips_per_s(
        os.path.join(out_dir, f"input_tfrecords_{preset}", "train.tfrecord-*"), num_classes, quick
    )
    _log("trunk (suite 'trunk')")
    reports["trunk"] = trunk_suite.run(out_dir, preset, quick)
    figures["trunk_forward_fraction"] = parse_figure(
        reports["trunk"], r"\| forward \|[^\n]*\| ([\d.]+) \|\n"
    )
    figures["trunk_forward_backward_fraction"] = parse_figure(
        reports["trunk"], r"\| forward\+backward \|[^\n]*\| ([\d.]+) \|\n"
    )
    figures["matmul_gflop_per_s"] = parse_figure(reports["trunk"], r"\*\*([\d.]+) GFLOP/s\*\*")
    _log("evaluator (suite 'eval')")
    reports["eval"] = eval_suite.run(out_dir, preset, quick)
    figures["eval_end_to_end_s"] = parse_figure(
        reports["eval"], r"\| evaluate\(CSV paths\), end to end[^|]*\| ([\d.]+)"
    )
    figures["eval_keyframes"] = parse_figure(reports["eval"], r"Inputs[^:]*: ([\d,]+) keyframes")
    _log("SavedModel serving, XLA off / on")
    figures["saved_model"] = saved_model_keyframes_per_s(out_dir, num_classes, quick)
    memory = _memory_suite()
    if memory is not None:
        _log("memory (suite 'memory')")
        reports["memory"] = memory.run(out_dir, preset, quick)
    return figures, reports


def _heading(machine, preset, quick, seconds) -> str:
    return "\n".join(
        [
            f"# System speed ({preset} preset{', quick' if quick else ''}): efficiency only",
            "",
            f"Machine: {machine['cpu']}, {machine['cores']} logical cores, load average (1, 5, "
            f"15 min) {', '.join(map(str, machine['load_average']))} at the start, "
            f"{', '.join(map(str, machine['load_average_end']))} at the end; suite "
            f"{seconds:.0f} s.",
            "",
        ]
    )


def _fmt(value, digits=2):
    return "n/a" if value is None else f"{value:.{digits}f}"


def _serving(entry):
    if "error" in entry:
        return f"failed: {entry['error']}"
    return f"{entry['keyframes_per_s']:.2f} keyframes/s ({entry['seconds'] * 1e3:.0f} ms)"


def to_markdown(figures, reports, machine, preset, quick, seconds) -> str:
    train = figures["train_step"]
    clips = figures.get("input_clips_per_s")
    ratio = clips / train["clips_per_s"] if clips else None
    sm = figures["saved_model"]
    lines = [
        f"# System speed ({preset} preset{', quick' if quick else ''})",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} logical cores, load average (1, 5, 15 "
        f"min) {', '.join(map(str, machine['load_average']))} at the start, "
        f"{', '.join(map(str, machine['load_average_end']))} at the end; suite {seconds:.0f} s.",
        "",
        "| measurement | figure |",
        "|---|---|",
        f"| input pipeline (suite input) | {_fmt(clips, 1)} clips/s |",
        f"| train step, {train['model']} | {train['clips_per_s']:.1f} clips/s "
        f"({train['step_s'] * 1e3:.0f} ms a step) |",
        f"| input / train-step consumption | {_fmt(ratio)}x "
        f"({'input keeps up' if ratio and ratio >= 1 else 'input-bound' if ratio else 'n/a'}) |",
        f"| trunk forward, fraction of matmul FLOP/s | "
        f"{_fmt(figures.get('trunk_forward_fraction'))} |",
        f"| trunk forward+backward, fraction of matmul FLOP/s | "
        f"{_fmt(figures.get('trunk_forward_backward_fraction'))} |",
        f"| evaluator end to end ({_fmt(figures.get('eval_keyframes'), 0)} keyframes) | "
        f"{_fmt(figures.get('eval_end_to_end_s'))} s |",
        f"| SavedModel serving_default, {sm['clip']}, XLA off | {_serving(sm['xla_off'])} |",
        f"| SavedModel serving_default, XLA on | {_serving(sm['xla_on'])} |",
        "",
        "The input suite's clips are 16 frames (the bench model reads 8): its clips/s is a "
        "lower bound for the bench model's input. The train step runs on batches held in "
        "memory, so it measures consumption alone. SavedModel: random weights (speed does not "
        "depend on them, except through the number of detections), median of timed calls "
        "after two warm-up calls.",
        "",
    ]
    if "memory" not in reports:
        lines += ["Memory suite: action_tx/bench/memory.py is not there yet.", ""]
    for name, text in reports.items():
        lines += [f"## Suite `{name}`", ""]
        lines += ["#" + line if line.startswith("#") else line for line in text.splitlines()]
        lines.append("")
    return "\n".join(lines)
