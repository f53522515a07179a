"""Step learning-rate decay after a linear warm-up (the trainer's alternative to its cosine)."""

import keras
import tensorflow as tf


class WarmupStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup warmup_learning_rate -> learning_rate over `warmup_steps`, then the rate
    divided by `factor` at each of `boundaries` (steps, ascending): the step schedule of
    ACAR-Net §5 (UCF101-24: 0.002, /10 at 4.9k and 5.1k) and AIA §4.1."""

    def __init__(self, learning_rate, warmup_learning_rate, warmup_steps, boundaries, factor=10.0):
        super().__init__()
        self.learning_rate = float(learning_rate)
        self.warmup_learning_rate = float(warmup_learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.boundaries = [int(b) for b in boundaries]
        self.factor = float(factor)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        passed = tf.add_n(
            [tf.cast(step >= b, tf.float32) for b in self.boundaries] or [tf.zeros_like(step)]
        )
        rate = self.learning_rate * tf.pow(1.0 / self.factor, passed)
        if self.warmup_steps <= 0:
            return rate
        warm = self.warmup_learning_rate + (self.learning_rate - self.warmup_learning_rate) * (
            step / self.warmup_steps
        )
        return tf.where(step < self.warmup_steps, warm, rate)

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "warmup_learning_rate": self.warmup_learning_rate,
            "warmup_steps": self.warmup_steps,
            "boundaries": self.boundaries,
            "factor": self.factor,
        }
