"""Numeric precision of a run: Keras 3's own mixed precision (dtype policies), one name.

    from action_tx import precision
    with precision.policy("mixed_bfloat16"):
        model = build_detector(...)       # layers take the policy when they are made

PRECISIONS:
  float32         everything in float32.
  mixed_bfloat16  computations in bfloat16, variables float32 (Keras "mixed_bfloat16"). Same
                  exponent range as float32: no loss scaling. About 2x the float32 matmul and
                  conv rate on CPUs with AVX512-BF16 and on recent GPUs/TPUs.
  mixed_float16   computations in float16, variables float32; the optimizer is wrapped in
                  `keras.optimizers.LossScaleOptimizer` (dynamic loss scaling), since float16
                  gradients underflow below 6e-8. For GPUs without bfloat16.

What stays float32 under both mixed policies, because its range or resolution matters (each
place says so where it casts): box coding/decoding, anchors and proposals (RPN outputs are cast
to float32, `object_detection_ext.rpn_head`), every loss (`ActionDetector.compute_losses`
casts logits and deltas first), the attention softmax of the Tx unit, the sample positions of
RoI pooling, and the AIA memory tables (their own `memory_dtype`). Conv3D units run in float32
where TF's CPU kernel of the mixed dtype is broken or impractical (`action_tx.trunks.unit3d`:
bfloat16 filter gradients with fewer time steps than the kernel; float16 without a GPU).
"""

import contextlib

import keras

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def check(name: str) -> str:
    """-> `name` when it is one of PRECISIONS; raises ValueError naming the choices."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}")
    return name


def set_policy(name: str) -> None:
    """Makes `name` (of PRECISIONS) Keras's global dtype policy: layers made afterwards use it."""
    keras.mixed_precision.set_global_policy(check(name))


@contextlib.contextmanager
def policy(name: str):
    """Context in which Keras's global dtype policy is `name`; the previous one comes back."""
    previous = keras.mixed_precision.global_policy()
    set_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def uses_loss_scaling(name: str) -> bool:
    """Whether training under `name` scales the loss (float16 only)."""
    return check(name) == "mixed_float16"


def wrap_optimizer(optimizer: keras.optimizers.Optimizer, name: str) -> keras.optimizers.Optimizer:
    """`optimizer`, wrapped in a dynamic `LossScaleOptimizer` under mixed_float16."""
    if not uses_loss_scaling(name):
        return optimizer
    return keras.optimizers.LossScaleOptimizer(optimizer)
