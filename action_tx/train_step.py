"""One distributed training step of `action_tx.train_lib.train`: every replica's slice of the
global batch, its gradients, their sum over replicas, clipping and the optimizer update.

Input: `dataset_fn()` yields GLOBAL batches (the batch dict of docs/DESIGN.md). Every replica
takes its own slice of the global batch (replica r gets examples [r*b, (r+1)*b)), so the
examples a step sees do not depend on the number of replicas or workers, and the plain
`tf.data` iterator is checkpointed as is. Under MultiWorkerMirroredStrategy every worker reads
the same (seeded, deterministic) global batch and keeps its replicas' slices: simple and exact,
at the cost of decoding the global batch on every worker.

Gradients: each replica's loss is divided by the number of replicas, the gradients are summed
over replicas, clipped by their global norm, and applied. Keras would clip per replica before
the all-reduce, which differs from single-device training, so clipping is done here.

Precision (`action_tx.precision`): under 'mixed_float16' each replica differentiates the loss
times the LossScaleOptimizer's dynamic scale; the summed gradients are divided by that scale
before the norm and the clipping (so both mean what they mean in float32), and handed back
multiplied by it (a power of 2: exact) to the LossScaleOptimizer, which skips the step and
halves the scale when they overflowed, and doubles it after 2000 good steps. Such a skipped
step reports grad_norm=inf and is not an error; training stops on it only once the scale is
below 1 (the gradients overflow float16 without any scaling: divergence).
"""

import tensorflow as tf


def replica_slice(batch, per_replica: int, replica_id) -> dict:
    """Replica `replica_id`'s examples [r*b, (r+1)*b) of a global batch dict (b = per_replica)."""
    begin = replica_id * per_replica
    return {k: v[begin : begin + per_replica] for k, v in batch.items()}


def make_train_step(model, opt, strategy, *, per_replica, clip_norm, scaling, jit_compile):
    """The step as a `tf.function` train_step(iterator) -> {term: float32 scalar}: the loss
    terms of `model.compute_losses` summed over replicas (each replica's divided by their
    number), with "grad_norm", the global norm of the summed gradients before clipping.

    Args:
      model: the built detector (its trainable variables as they are now are the ones updated);
      opt: its built optimizer (a LossScaleOptimizer when `scaling`); strategy: the
      `tf.distribute.Strategy` it was built under; per_replica: examples per replica;
      clip_norm: clip the summed gradients to this global norm (None: no clipping);
      scaling: float16 loss scaling (`precision.uses_loss_scaling`); jit_compile: XLA for the
      forward/backward computation.
    """
    replicas = strategy.num_replicas_in_sync
    variables = model.trainable_variables

    def grads_and_terms(batch):
        with tf.GradientTape() as tape:
            out = model(batch, training=True)
            terms = {k: tf.cast(v, tf.float32) for k, v in model.compute_losses(out).items()}
            loss = terms["total_loss"] / replicas
            if scaling:
                loss = opt.scale_loss(loss)
        return tape.gradient(loss, variables), terms

    grads_fn = tf.function(grads_and_terms, jit_compile=True) if jit_compile else grads_and_terms

    def replica_step(batch):
        ctx = tf.distribute.get_replica_context()
        grads, terms = grads_fn(replica_slice(batch, per_replica, ctx.replica_id_in_sync_group))
        used = [i for i, g in enumerate(grads) if g is not None]
        summed = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [grads[i] for i in used])
        if scaling:
            scale = tf.convert_to_tensor(opt.dynamic_scale)
            summed = [g / scale for g in summed]
        if clip_norm:
            summed, norm = tf.clip_by_global_norm(summed, clip_norm)
        else:
            norm = tf.linalg.global_norm(summed)
        if scaling:  # the LossScaleOptimizer divides by the scale and skips non-finite steps
            summed = [g * scale for g in summed]
        # The optimizer sums over replicas again: hand it 1/replicas of the summed gradient.
        opt.apply_gradients([(g / replicas, variables[i]) for g, i in zip(summed, used)])
        return {k: v / replicas for k, v in terms.items()}, norm

    @tf.function
    def train_step(it):
        terms, norm = strategy.run(replica_step, args=(next(it),))
        terms = {
            k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in terms.items()
        }
        terms["grad_norm"] = strategy.reduce(tf.distribute.ReduceOp.MEAN, norm, axis=None)
        return terms

    return train_step
