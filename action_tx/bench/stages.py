"""An ActionDetector's training step cut into stages, each runnable alone on the same inputs.

    parts = staged_forward(detector, batch)        # the training forward, stage by stage
    fns = stage_functions(detector, optimizer, batch, parts, grads)
    fns["trunk"]()  # forward + backward of the trunk alone -> a scalar to read back

The stages of `ActionDetector._forward` in training (this module repeats its composition;
tests/bench/test_stages.py checks that `staged_forward` gives the detector's own outputs):
  trunk        clip -> features (forward; backward to the trunk's weights, not to the clip).
  rpn          the proposer on the features (RPN head conv, anchor decoding, proposal NMS)
               plus the training targets: RPN anchor targets and the second-stage RoI sample
               (forward; backward to the RPN weights and the features).
  roi_pooling  ST-RoIAlign of the RoIs (and the object boxes) (backward to the features).
  head         the head on HeadInputs (backward to its weights and every float input).
  losses       `compute_losses` on the forward's outputs (backward to those outputs).
  optimizer    gradient clipping (when set) and `apply_gradients` of one step's gradients.
Each stage's backward starts from the sum of its float outputs: the same kernels as the
real backward, whose values do not matter for speed. Batches with `target_mask` (runs of
consecutive keyframes) are not supported: the benchmark feeds plain clips.
"""

from typing import Callable, Dict, Optional

import tensorflow as tf

from action_tx.heads.base import HeadInputs
from object_detection_ext import rpn
from object_detection_ext.sampling import sample_rois

STAGES = ("trunk", "rpn", "roi_pooling", "head", "losses", "optimizer")


def proposals(detector, features, batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The rpn stage: proposer + training targets, as `ActionDetector._forward` (training).

    Returns the proposer's outputs plus rois [B, N, 4], roi_mask [B, N], roi_scores [B, N],
    roi_labels [B, N, C], roi_is_positive [B, N], roi_box_targets [B, N, 4] and, where they
    apply, roi_actor_targets [B, N], rpn_labels, rpn_box_targets.
    """
    out = dict(detector.proposer(features, batch))
    rois, roi_mask = out["proposals"], out["proposal_mask"]
    if detector.proposer.mode == "gt":
        out.update(
            rois=rois,
            roi_mask=roi_mask,
            roi_scores=out["proposal_scores"],
            roi_labels=tf.cast(batch["labels"], tf.float32),
            roi_is_positive=roi_mask,
            roi_box_targets=tf.zeros_like(rois),
        )
    else:
        sample = sample_rois(
            rois,
            roi_mask,
            batch["boxes"],
            batch["box_mask"],
            batch["labels"],
            seed=detector._next_seed(),  # noqa: SLF001  (the detector's own sampler seed)
            num_samples=detector.num_roi_samples,
            positive_fraction=detector.positive_fraction if detector.background_rois else 1.0,
        )
        roi_mask = sample["roi_mask"]
        if not detector.background_rois:
            roi_mask = roi_mask & sample["is_positive"]
        out.update(
            rois=sample["rois"],
            roi_mask=roi_mask,
            roi_scores=tf.where(sample["is_positive"], sample["max_iou"], 0.0),
            roi_labels=sample["labels"],
            roi_is_positive=sample["is_positive"],
            roi_box_targets=sample["box_targets"],
        )
        if detector.background_rois:
            out["roi_actor_targets"] = tf.cast(sample["is_positive"], tf.float32)
    if "rpn_objectness" in out:
        targets = rpn.rpn_targets(
            out["anchors"],
            batch["boxes"],
            batch["box_mask"],
            seed=detector._next_seed(),  # noqa: SLF001
        )
        out.update(rpn_labels=targets["labels"], rpn_box_targets=targets["box_targets"])
    return out


def roi_pooling(detector, features, rois, roi_mask, batch) -> Dict[str, Optional[tf.Tensor]]:
    """The roi_pooling stage -> roi_features [B, N, T', S, S, C] (T' = 1 for a head that reads
    the central slice only) and, when the detector pools objects, objects [B, O, 4],
    object_mask [B, O], object_features [B, O, T', S, S, C]."""
    out = dict(roi_features=detector.pool_rois(features, rois, roi_mask))
    out.update(objects=None, object_mask=None, object_features=None)
    if detector.use_objects:
        objects, mask = batch["objects"], tf.cast(batch["object_mask"], tf.bool)
        out.update(
            objects=objects,
            object_mask=mask,
            object_features=detector.pool_rois(features, objects, mask),
        )
    return out


def head_inputs(features, props, pooled, batch) -> HeadInputs:
    """The HeadInputs `ActionDetector._forward` gives the head in training."""
    keyframe_mask = batch.get("keyframe_mask")
    return HeadInputs(
        features=features,
        rois=props["rois"],
        roi_mask=props["roi_mask"],
        roi_features=pooled["roi_features"],
        roi_scores=props["roi_scores"],
        objects=pooled["objects"],
        object_mask=pooled["object_mask"],
        object_features=pooled["object_features"],
        video_index=batch.get("video_index"),
        timestamp=batch.get("timestamp"),
        keyframe_index=batch.get("keyframe_index"),
        keyframe_mask=tf.cast(keyframe_mask, tf.bool) if keyframe_mask is not None else None,
        roi_labels=props.get("roi_labels"),
    )


def head_outputs(props, head_out) -> Dict[str, tf.Tensor]:
    """The training outputs `ActionDetector.call` returns, from the stages' results."""
    out = {k: v for k, v in props.items() if k not in ("rois", "roi_mask", "roi_scores")}
    out.update(
        rois=props["rois"],
        roi_mask=props["roi_mask"],
        roi_scores=props["roi_scores"],
        logits=head_out.logits,
    )
    for name in ("box_deltas", "attention", "actor_logits"):
        if getattr(head_out, name) is not None:
            out[name] = getattr(head_out, name)
    return out


def staged_forward(detector, batch: Dict[str, tf.Tensor]) -> Dict[str, object]:
    """The training forward pass run stage by stage -> dict with features, props (the rpn
    stage's outputs), pooled (roi_pooling's), inputs (HeadInputs), outputs (as
    `detector(batch, training=True)`)."""
    if "target_mask" in batch:
        raise ValueError("staged_forward: batches with target_mask are not supported")
    features = detector.trunk(batch["clip"], training=True)
    props = proposals(detector, features, batch)
    pooled = roi_pooling(detector, features, props["rois"], props["roi_mask"], batch)
    inputs = head_inputs(features, props, pooled, batch)
    head_out = detector.head(inputs, training=True)
    return dict(
        features=features,
        props=props,
        pooled=pooled,
        inputs=inputs,
        outputs=head_outputs(props, head_out),
    )


def _float_sum(tensors) -> tf.Tensor:
    """float32 sum of every element of the floating tensors in `tensors` (None skipped)."""
    terms = [
        tf.reduce_sum(tf.cast(t, tf.float32))
        for t in tensors
        if t is not None and t.dtype.is_floating
    ]
    return tf.add_n(terms) if terms else tf.constant(0.0)


def _backward(tape, loss, sources) -> tf.Tensor:
    """Gradients of `loss` w.r.t. `sources` (None where unused), summed into one scalar so
    that reading it back waits for all of them."""
    grads = tape.gradient(loss, sources, unconnected_gradients=tf.UnconnectedGradients.NONE)
    return _float_sum(grads)


def stage_functions(
    detector, optimizer, batch, parts, grads, clip_norm=None, jit_compile=False
) -> Dict[str, Callable[[], tf.Tensor]]:
    """name (of STAGES) -> a tf.function of no arguments running that stage's forward and
    backward on the captured inputs of `parts` (`staged_forward`'s results, tensors) and
    returning a float32 scalar. `grads`: one step's gradients, in `detector.trainable_variables`
    order (None where a variable has none), for the optimizer stage."""
    features, props = parts["features"], parts["props"]
    inputs, outputs = parts["inputs"], parts["outputs"]
    clip = batch["clip"]
    fn = lambda f: tf.function(f, jit_compile=jit_compile)  # noqa: E731

    def trunk():
        with tf.GradientTape() as tape:
            loss = _float_sum([detector.trunk(clip, training=True)])
        return _backward(tape, loss, detector.trunk.trainable_variables)

    def rpn_stage():
        with tf.GradientTape() as tape:
            tape.watch(features)
            out = proposals(detector, features, batch)
            loss = _float_sum([out.get("rpn_objectness"), out.get("rpn_deltas")])
        return _backward(tape, loss, [features, *detector.proposer.trainable_variables])

    def roi_stage():
        with tf.GradientTape() as tape:
            tape.watch(features)
            out = roi_pooling(detector, features, props["rois"], props["roi_mask"], batch)
            loss = _float_sum([out["roi_features"], out["object_features"]])
        return _backward(tape, loss, [features])

    floats = [
        t for t in (inputs.features, inputs.roi_features, inputs.object_features) if t is not None
    ]

    def head():
        with tf.GradientTape() as tape:
            tape.watch(floats)
            out = detector.head(inputs, training=True)
            loss = _float_sum([out.logits, out.box_deltas, out.actor_logits])
        return _backward(tape, loss, [*floats, *detector.head.trainable_variables])

    watched = {
        k: v
        for k, v in outputs.items()
        if k in ("logits", "box_deltas", "actor_logits", "rpn_objectness", "rpn_deltas")
    }

    def losses():
        with tf.GradientTape() as tape:
            tape.watch(list(watched.values()))
            loss = detector.compute_losses({**outputs, **watched})["total_loss"]
        return loss + _backward(tape, loss, list(watched.values()))

    variables = detector.trainable_variables
    pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]

    def apply():
        step_grads = [g for g, _ in pairs]
        if clip_norm:
            step_grads, _ = tf.clip_by_global_norm(step_grads, clip_norm)
        optimizer.apply_gradients(zip(step_grads, [v for _, v in pairs]))
        return tf.constant(0.0)

    return dict(
        trunk=fn(trunk),
        rpn=fn(rpn_stage),
        roi_pooling=fn(roi_stage),
        head=fn(head),
        losses=fn(losses),
        optimizer=tf.function(apply),  # as the train step: the update outside XLA
    )
