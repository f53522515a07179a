"""AIA's memory cost: train step time and peak memory of the `aia` head reading ±L keyframes
through the FeatureMemory (Asynchronous Memory Update) vs through the trunk (AIA Fig. 5).

    python tools/benchmark.py --suite=memory [--quick] [--out=DIR]

Two ways of giving the M-blocks the persons of keyframes t-L..t+L, for L in 0, 10, 30:
  amu    the trunk runs on the keyframe's clip only; the neighbours are read from the head's
         FeatureMemory table (filled beforehand, as after earlier steps), AMU penalty on.
  joint  the trunk also runs on the 2L neighbouring clips of every keyframe in the same step
         (what training without a memory bank costs); their pooled persons (P_t) are
         written into the table right before the head reads it, so the head computes exactly
         what `amu` computes, on fresh features (AMU penalty off). Gradients flow through the
         centre clip only: the neighbours run in inference mode under stop_gradient (the
         cheapest joint variant: its backward pass does not grow with L).
Setting: the i3d_tiny trunk on 8x64x64 clips, 2 keyframes per step, 4 persons and 2 objects per
keyframe (ground-truth boxes, ST-RoIAlign 4 -> 2), AIAHead P,O,M,P,O,M dense, hidden 64,
dropout 0, SGD. Step times: all six configurations are built in one process, warmed up (2
steps) and stepped round-robin for 10 rounds (4 with --quick), so that the load of a shared CPU
hits them alike; reported: the median and the fastest step. Memory: each configuration in its
own fresh subprocess, 4 steps after the warm-up: the process RSS high-water mark over the whole
run (VmHWM: includes TF itself and tracing); the growth of the RSS high-water mark over the RSS
during the timed steps (VmHWM reset through /proc/self/clear_refs after the warm-up); and the
peak of TF's CPU allocator during the timed steps (tf.config.experimental.get_memory_info,
reset after the warm-up; oneDNN scratch memory outside TF's allocator is not in it).
"""

import json
import os
import statistics
import subprocess
import sys
import time

import action_tx.trunks  # noqa: F401  (sets TF_ENABLE_ONEDNN_OPTS before TF starts)

WINDOWS = (0, 10, 30)
MODES = ("amu", "joint")
CLIP = (8, 64, 64)  # frames, height, width
KEYFRAMES, PERSONS, OBJECTS, CLASSES = 2, 4, 2, 8
VIDEO_LENGTH = 100  # keyframes of the one video (>= 2 * 30 + the batch's span)


def _status_mb(field: str) -> float:
    """/proc/self/status field (VmRSS: resident now, VmHWM: resident high-water) in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_rss_peak() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0: "5" > /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def make_batch(window: int, mode: str, seed: int = 0) -> dict:
    """One step's inputs (numpy): `KEYFRAMES` keyframes of one video with their clip [B, W, T,
    H, W, 3] (W = 2 window + 1 clips for `joint`, the keyframe's own for `amu`), rois [B, W,
    PERSONS, 4] and objects [B, W, OBJECTS, 4] yxyx, labels [B, PERSONS, CLASSES], and
    keyframe_index / video_index / timestamp [B]."""
    import numpy as np

    rng = np.random.default_rng(seed)
    kf = np.array([40, 60], np.int32)[:KEYFRAMES]
    clips = 1 + (2 * window if mode == "joint" else 0)
    y1 = rng.uniform(0, 0.5, [KEYFRAMES, clips, PERSONS + OBJECTS, 2])
    boxes = np.concatenate([y1, y1 + 0.4], -1).astype(np.float32)  # [B, clips, N + O, 4]
    return {
        "clip": rng.uniform(-1, 1, (KEYFRAMES, clips) + CLIP + (3,)).astype(np.float32),
        "rois": boxes[:, :, :PERSONS],
        "objects": boxes[:, :, PERSONS:],
        "labels": (rng.uniform(size=[KEYFRAMES, PERSONS, CLASSES]) < 0.3).astype(np.float32),
        "keyframe_index": kf,
        "video_index": np.zeros_like(kf),
        "timestamp": kf + 900,
    }


def _make_step(mode, window):
    """-> (step(batch) -> loss, build(batch), head)."""
    import keras
    import tensorflow as tf
    from action_tx.heads.aia import AIAHead
    from action_tx.heads.base import HeadInputs
    from action_tx.trunks.i3d import make_trunk
    from object_detection_ext.st_roi_align import STRoIAlign

    keras.utils.set_random_seed(0)
    trunk = make_trunk("i3d_tiny")
    pool = STRoIAlign(crop_size=4, output_size=2)
    head = AIAHead(
        CLASSES,
        blocks="P,O,M,P,O,M",
        structure="dense",
        memory_window=window,
        use_amu=mode == "amu",
        memory_size=VIDEO_LENGTH,
        hidden_size=64,
        dropout=0.0,
    )
    opt = keras.optimizers.SGD(0.01)

    def tubes(clips, rois, training):
        """clips [K, T, H, W, 3], rois [K, N, 4] -> RoI tubes [K, N, T', 2, 2, C]."""
        return pool(trunk(clips, training=training), rois, tf.ones(tf.shape(rois)[:2], tf.bool))

    def inputs_of(batch, features, persons, objects):
        b = tf.shape(persons)[0]
        return HeadInputs(
            features=features,
            rois=batch["rois"][:, 0],
            roi_mask=tf.ones([b, PERSONS], tf.bool),
            roi_features=persons,
            roi_scores=tf.ones([b, PERSONS]),
            objects=batch["objects"][:, 0],
            object_mask=tf.ones([b, OBJECTS], tf.bool),
            object_features=objects,
            video_index=batch["video_index"],
            timestamp=batch["timestamp"],
            keyframe_index=batch["keyframe_index"],
            roi_labels=batch["labels"],
        )

    def write_neighbours(batch):
        """joint: trunk over the 2L neighbouring clips -> their persons into the table."""
        clips = batch["clip"][:, 1:]  # [B, 2L, T, H, W, 3]
        rois = batch["rois"][:, 1:]
        flat = lambda x: tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0))  # noqa: E731
        t = tubes(flat(clips), flat(rois), training=False)
        persons = tf.stop_gradient(tf.reduce_mean(t, axis=[2, 3, 4]))  # P_t, as AIA stores
        offset = tf.concat([tf.range(-window, 0), tf.range(1, window + 1)], 0)
        shift = lambda x: tf.reshape(x[:, None] + offset[None], [-1])  # noqa: E731
        head.memory.train.write(
            shift(batch["keyframe_index"]),
            tf.repeat(batch["video_index"], 2 * window),
            shift(batch["timestamp"]),
            persons,
            tf.ones(tf.shape(persons)[:2], tf.bool),
        )

    def build(batch):
        """Creates every variable eagerly (head in inference mode: it touches only the eval
        table), so that nothing is built inside the traced step."""
        features = trunk(batch["clip"][:, 0], training=False)
        persons = pool(features, batch["rois"][:, 0], tf.ones([KEYFRAMES, PERSONS], tf.bool))
        objects = pool(features, batch["objects"][:, 0], tf.ones([KEYFRAMES, OBJECTS], bool))
        head(inputs_of(batch, features, persons, objects), training=False)
        opt.build(trunk.trainable_variables + head.trainable_variables)

    @tf.function
    def step(batch):
        if mode == "joint" and window > 0:
            write_neighbours(batch)
        with tf.GradientTape() as tape:
            features = trunk(batch["clip"][:, 0], training=True)
            mask = tf.ones([KEYFRAMES, PERSONS], tf.bool)
            persons = pool(features, batch["rois"][:, 0], mask)
            objects = pool(features, batch["objects"][:, 0], tf.ones([KEYFRAMES, OBJECTS], bool))
            out = head(inputs_of(batch, features, persons, objects), training=True)
            loss = tf.reduce_mean(
                tf.nn.sigmoid_cross_entropy_with_logits(batch["labels"], out.logits)
            )
        variables = trunk.trainable_variables + head.trainable_variables
        grads = tape.gradient(loss, variables)
        opt.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
        return loss

    return step, build, head


def _ready_step(mode: str, window: int):
    """-> (step, batch): built, table filled (amu), traced and warmed up by 2 steps."""
    import numpy as np
    import tensorflow as tf

    step, build, head = _make_step(mode, window)
    batch = {k: tf.constant(v) for k, v in make_batch(window, mode).items()}
    build(batch)
    if head.uses_table and mode == "amu":
        # The table as after earlier steps: every keyframe of the video written, loss tag 1.
        kf = np.arange(VIDEO_LENGTH, dtype=np.int32)
        table = head.memory.train
        table.write(
            kf,
            np.zeros_like(kf),
            kf + 900,
            np.random.default_rng(1).normal(size=[VIDEO_LENGTH, 5, table.dim]).astype(np.float32),
            np.ones([VIDEO_LENGTH, 5], bool),
            loss_tag=1.0,
        )
    for _ in range(2):  # trace + one warm step
        step(batch).numpy()
    return step, batch


def measure_memory(mode: str, window: int, steps: int = 4) -> dict:
    """Peak memory of one configuration in THIS process (run it in a fresh one)."""
    import tensorflow as tf

    step, batch = _ready_step(mode, window)
    # The process's own high-water mark (VmHWM): getrusage's ru_maxrss survives exec on Linux,
    # so a child of a large parent (e.g. tools/benchmark.py --suite=perf) would report the
    # parent's peak.
    process_peak = _status_mb("VmHWM")
    # Peaks of the timed steps only (tracing allocates too): the RSS high-water mark reset to
    # the RSS now, and TF's CPU allocator peak reset.
    can_reset = _reset_rss_peak()
    rss_before = _status_mb("VmRSS")
    tf.config.experimental.reset_memory_stats("CPU:0")
    for _ in range(steps):
        step(batch).numpy()
    step_peak = _status_mb("VmHWM") if can_reset else float("nan")
    peak_rss = max(process_peak, step_peak) if can_reset else process_peak
    return {
        "mode": mode,
        "window": window,
        "clips_per_keyframe": 1 + (2 * window if mode == "joint" else 0),
        "peak_rss_mb": peak_rss,
        "step_rss_growth_mb": step_peak - rss_before,
        "tf_cpu_peak_mb": tf.config.experimental.get_memory_info("CPU:0")["peak"] / 2**20,
    }


def measure_times(configs, rounds: int = 10) -> dict:
    """{(mode, window): [step seconds] * rounds}, every configuration built in this process and
    stepped round-robin, so that a change of the machine's load hits all of them alike."""
    ready = {c: _ready_step(*c) for c in configs}
    times = {c: [] for c in configs}
    for i in range(rounds):
        print(f"  timing round {i + 1}/{rounds}", file=sys.stderr, flush=True)
        for c, (step, batch) in ready.items():
            start = time.perf_counter()
            step(batch).numpy()
            times[c].append(time.perf_counter() - start)
    return times


def _measure_in_subprocess(mode, window, steps):
    code = (
        "import json, sys; from action_tx.bench.memory import measure_memory; "
        "print(json.dumps(measure_memory(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, "-c", code, mode, str(window), str(steps)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode:
        raise RuntimeError(f"memory benchmark {mode} L={window} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(rows) -> str:
    """Markdown of the measured rows (list of `measure` dicts)."""
    base = {r["mode"]: r for r in rows if r["window"] == 0}
    lines = [
        "# Memory benchmark: AIA memory (AMU) vs reading the ±L clips through the trunk",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        f"Load average at the end (1, 5, 15 min): "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores.",
        "",
        "| mode | L | clips / keyframe | step median (s) | x L=0 | step min (s) | x L=0 "
        "| peak RSS (MB) | step RSS growth (MB) | TF CPU peak (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b = base.get(r["mode"], {"step_s": float("nan"), "min_step_s": float("nan")})
        lines.append(
            f"| {r['mode']} | {r['window']} | {r['clips_per_keyframe']} | "
            f"{r['step_s']:.3f} | {r['step_s'] / b['step_s']:.2f} | "
            f"{r['min_step_s']:.3f} | {r['min_step_s'] / b['min_step_s']:.2f} | "
            f"{r['peak_rss_mb']:.0f} | "
            f"{r['step_rss_growth_mb']:.0f} | {r['tf_cpu_peak_mb']:.1f} |"
        )
    for key, what in (("step_s", "median"), ("min_step_s", "fastest")):
        amu = {r["window"]: r[key] for r in rows if r["mode"] == "amu"}
        joint = {r["window"]: r[key] for r in rows if r["mode"] == "joint"}
        if 0 not in amu or 0 not in joint or max(amu) == 0 or max(amu) not in joint:
            continue
        big = max(amu)
        ok, grows = amu[big] <= 1.15 * amu[0], joint[big] > joint[0]
        lines += [
            "",
            f"Check (AIA Fig. 5), {what} step: AMU at L={big} is "
            f"{amu[big] / amu[0]:.2f}x L=0 ({'within' if ok else 'NOT within'} 1.15x); "
            f"joint at L={big} is {joint[big] / joint[0]:.2f}x L=0 "
            f"({'grows' if grows else 'does NOT grow'}).",
        ]
    return "\n".join(lines) + "\n"


def run(out_dir, preset, quick):
    """Runs every configuration, writes memory.json to `out_dir`, returns the Markdown report
    (`preset` unused: synthetic tensors, no data set)."""
    del preset
    rounds = 4 if quick else 10
    configs = [(m, w) for m in MODES for w in WINDOWS]
    rows = []
    for i, (mode, window) in enumerate(configs):
        print(
            f"[{i + 1}/{len(configs)}] peak memory, {mode} L={window} (fresh process) ...",
            file=sys.stderr,
            flush=True,
        )
        rows.append(_measure_in_subprocess(mode, window, 4))
    print(
        f"step times: {len(configs)} configurations round-robin, {rounds} rounds ...",
        file=sys.stderr,
        flush=True,
    )
    times = measure_times(configs, rounds)
    for r in rows:
        t = times[(r["mode"], r["window"])]
        r.update(step_s=statistics.median(t), min_step_s=min(t), step_times_s=t)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "memory.json"), "w") as f:
            json.dump(rows, f, indent=1)
    return report(rows)
