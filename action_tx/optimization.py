"""Optimizers and learning-rate schedules of the trainer (Keras 3 core)."""

import keras

from action_tx.distribute import TrainingError
from action_tx.lr_schedule import WarmupStepDecay


def learning_rate_schedule(
    *,
    learning_rate: float = 0.1,
    warmup_learning_rate: float = 0.01,
    warmup_steps: int = 1000,
    decay_steps: int = 500_000,
    final_fraction: float = 0.0,
    lr_steps=None,
):
    """Linear warmup warmup_learning_rate -> learning_rate over `warmup_steps`, then cosine decay
    to final_fraction * learning_rate at step `decay_steps` (counted from step 0, as the paper
    §3.5: "cosine annealing over the 500K iterations ... warmup from 0.01 to 0.1 for 1000").
    With `lr_steps` (ascending steps after the warmup), a step decay instead: the rate divided
    by 10 at each (`WarmupStepDecay`); decay_steps is then unused."""
    if lr_steps:
        lr_steps = [int(b) for b in lr_steps]
        if lr_steps != sorted(lr_steps) or lr_steps[0] < warmup_steps:
            raise TrainingError(
                f"lr_steps {lr_steps} must ascend and start at or after the "
                f"warmup's end ({warmup_steps})"
            )
        return WarmupStepDecay(learning_rate, warmup_learning_rate, warmup_steps, lr_steps)
    if decay_steps <= warmup_steps:
        raise TrainingError(
            f"decay_steps ({decay_steps}) must exceed warmup_steps ({warmup_steps})"
        )
    if warmup_steps <= 0:
        return keras.optimizers.schedules.CosineDecay(
            learning_rate, decay_steps, alpha=final_fraction
        )
    return keras.optimizers.schedules.CosineDecay(
        warmup_learning_rate,
        decay_steps - warmup_steps,
        alpha=final_fraction,
        warmup_target=learning_rate,
        warmup_steps=warmup_steps,
    )


def build_optimizer(
    *, optimizer: str = "sgd", learning_rate=0.1, momentum: float = 0.9, weight_decay: float = 0.0
) -> keras.optimizers.Optimizer:
    """SGD with momentum or AdamW; `learning_rate` a float or a schedule.

    Weight decay is decoupled (Keras 3's `weight_decay`) and skips biases and BatchNorm
    scale/offset, as usual for detectors (the paper does not say; TF Object Detection API
    regularizes conv/dense kernels only).
    """
    if optimizer == "sgd":
        opt = keras.optimizers.SGD(
            learning_rate, momentum=momentum, weight_decay=weight_decay or None
        )
    elif optimizer == "adamw":
        opt = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
    else:
        raise TrainingError(f"unknown optimizer {optimizer!r}; choose sgd or adamw")
    if weight_decay:
        opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return opt
