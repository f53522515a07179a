"""Inception-I3D trunk speed on this machine, as a fraction of a float32 matmul's FLOP/s.

    python tools/benchmark.py --suite=trunk [--quick]

Measures, in one process: (1) a 4096x4096 float32 `tf.matmul` in a `tf.function`, its result
summed in the graph (the reference ceiling); (2) the full-width trunk (Conv3d_1a_7x7..Mixed_4f)
on a batch-1 64x224x224 clip (32 frames with --quick): forward (inference BatchNorm) and
forward+backward (training BatchNorm, gradients of every trainable weight), each in a
`tf.function`, warm-up then the median of a few runs; (3) one `i3d_tiny` training step.
FLOPs are counted analytically: 2 x conv multiply-adds; backward = 2 x forward (input and
filter gradients) minus the stem's input gradient, which is never computed.
"""

import os
import statistics
import sys
import time

import action_tx.trunks  # noqa: F401  (sets TF_ENABLE_ONEDNN_OPTS before TF starts)
import tensorflow as tf

from action_tx.trunks.i3d import InceptionI3D, make_trunk


def _median_time(fn, runs, warmup=1, label=""):
    """Median wall time of `fn()` (which returns a tensor that is read back)."""
    for _ in range(warmup):
        fn().numpy()
    times = []
    for i in range(runs):
        start = time.perf_counter()
        fn().numpy()
        times.append(time.perf_counter() - start)
        print(f"  {label} run {i + 1}/{runs}: {times[-1]:.3f} s", file=sys.stderr, flush=True)
    return statistics.median(times)


def _matmul_flops_per_s(n=4096, runs=5):
    a = tf.random.stateless_normal([n, n], seed=[0, 1])
    b = tf.random.stateless_normal([n, n], seed=[0, 2])
    # Reduced in the graph: copying the 64 MB product out each call would halve the figure.
    f = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    t = _median_time(f, runs, warmup=2, label="matmul")
    return 2 * n**3 / t, t


def _trunk_times(model, clip, runs):
    @tf.function
    def forward():
        return tf.reduce_sum(model(clip, training=False))

    @tf.function
    def forward_backward():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(clip, training=True))
        grads = tape.gradient(loss, model.trainable_weights)
        return tf.add_n([tf.reduce_sum(g) for g in grads])

    return (
        _median_time(forward, runs, label="forward"),
        _median_time(forward_backward, runs, label="forward+backward"),
    )


def run(out_dir, preset, quick):
    """Returns the Markdown report (`out_dir`, `preset` unused: the suite needs no data)."""
    del out_dir, preset
    from tensorflow.python.util import _pywrap_util_port  # only place that reports oneDNN

    frames, runs = (32, 2) if quick else (64, 3)
    print("matmul 4096x4096 ...", file=sys.stderr, flush=True)
    ceiling, t_mm = _matmul_flops_per_s(runs=3 if quick else 5)

    shape = (1, frames, 224, 224, 3)
    model = InceptionI3D(final_endpoint="Mixed_4f")
    model.build(shape)
    clip = tf.random.stateless_uniform(shape, seed=[1, 2], minval=-1, maxval=1)
    print(f"I3D Mixed_4f {frames}x224x224 ...", file=sys.stderr, flush=True)
    t_fwd, t_fb = _trunk_times(model, clip, runs)
    f_fwd = model.flops(shape)
    stem = model.blocks[0]
    f_fb = 3 * f_fwd - stem.flops(shape)  # no gradient for the clip itself

    tiny = make_trunk("i3d_tiny")
    tiny_shape = (2, 8, 112, 112, 3)
    tiny.build(tiny_shape)
    tiny_clip = tf.random.stateless_uniform(tiny_shape, seed=[3, 4], minval=-1, maxval=1)
    print("i3d_tiny 2x8x112x112 ...", file=sys.stderr, flush=True)
    _, t_tiny = _trunk_times(tiny, tiny_clip, runs=3)

    rows = [("forward", t_fwd, f_fwd), ("forward+backward", t_fb, f_fb)]
    lines = [
        "# Trunk benchmark: Inception-I3D to Mixed_4f",
        "",
        f"TensorFlow {tf.__version__}, "
        f"oneDNN {'on' if _pywrap_util_port.IsMklEnabled() else 'off'}, "
        f"{len(tf.config.list_physical_devices('CPU'))} CPU device(s); float32, tf.function, "
        f"median of {runs} runs after one warm-up. Load average at the end (1, 5, 15 min): "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores: other "
        "processes share the CPU, so compare fractions of the matmul, not absolute times.",
        "",
        f"Reference: float32 matmul 4096x4096 (result reduced in the graph): "
        f"{t_mm * 1e3:.1f} ms, **{ceiling / 1e9:.1f} GFLOP/s**.",
        "",
        f"Full-width I3D, batch 1, {frames}x224x224x3 -> Mixed_4f "
        f"{model.compute_output_shape(shape)[1:]}:",
        "",
        "| pass | time (s) | GFLOP | GFLOP/s | fraction of matmul |",
        "|---|---|---|---|---|",
    ]
    for name, t, flops in rows:
        lines.append(
            f"| {name} | {t:.3f} | {flops / 1e9:.1f} | {flops / t / 1e9:.1f} | "
            f"{flops / t / ceiling:.2f} |"
        )
    lines += [
        "",
        "FLOPs: 2 x conv multiply-adds counted from the layer shapes (pooling, BatchNorm, "
        "ReLU not counted); forward+backward = 3 x forward - the stem's input gradient.",
        "",
        f"i3d_tiny preset (width 0.25), batch 2, 8x112x112: one training step "
        f"(forward+backward) {t_tiny:.3f} s.",
        "",
    ]
    return "\n".join(lines)
