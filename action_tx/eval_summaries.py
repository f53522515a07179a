"""TensorBoard output of an evaluation: the scalars of an `AvaEvalResult` (`scalars`) and the
rendered keyframes and attention maps of `predict_dataset`'s samples (`render_samples`), written
by `write_summaries`. Part of the evaluation library `action_tx.eval_lib`, which re-exports
these names."""

import re

import numpy as np
import tensorflow as tf

from action_tx import render, visualize
from object_detection_ext import ava_eval


def _tag(text: str) -> str:
    # TensorBoard tags: '/' makes groups, so class names like "bend/bow" are flattened.
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(text)).strip("_")


def scalars(result: ava_eval.AvaEvalResult) -> dict:
    """TensorBoard tag -> value of every finite figure of `result`."""
    out = {f"eval/mAP@{result.iou_threshold}IOU": result.map}
    for class_id, ap in result.per_class.items():
        out[f"eval/per_class/{class_id}_{_tag(result.class_names.get(class_id, ''))}"] = ap
    for name, value in result.per_category.items():
        out[f"eval/category/{_tag(name)}"] = value
    for threshold, value in result.localization.items():
        out[f"eval/localization@{threshold}"] = value
    for group, prefix in (
        ("by_evidence", "evidence"),
        ("by_area", "area"),
        ("by_persons", "persons"),
    ):
        for name, part in (getattr(result, group) or {}).items():
            out[f"eval/{prefix}/{_tag(name)}"] = part.map
    return {k: float(v) for k, v in out.items() if v is not None and np.isfinite(v)}


def render_samples(
    samples,
    class_names,
    *,
    top_k: int = 3,
    max_detections: int = 5,
    attention_detections: int = 2,
    min_short_side: int = render.MIN_SHORT_SIDE,
):
    """samples of `predict_dataset` -> (keyframes, attention or None), readable pictures
    (`action_tx.render`) drawn on each sample's `source` frame (else its model-input `frame`)
    scaled to a short side of at least `min_short_side`.

    keyframes: uint8 [S, H, W, 3], `render.render_keyframe` of each sample: the top
    `max_detections` detections with `top_k` labels, its ground truth, a legend.
    attention: uint8 [S', H2, W2, 3] for the S' samples with attention maps and a detection:
    `render.render_attention` of its A = `attention_detections` best detections stacked
    top to bottom (the frame with the detection, its heat map beside it).
    Images of different sizes are padded (`render.stack_padded`).
    """
    images, heat_images = [], []
    for s in samples:
        frame = s["source"] if s.get("source") is not None else s["frame"]
        title = f"{s['video_id']} t={s['timestamp']}s"
        images.append(
            render.render_keyframe(
                frame,
                s["boxes"],
                s["scores"],
                s["action_scores"],
                class_names,
                gt_boxes=s.get("gt_boxes"),
                gt_labels=s.get("gt_labels"),
                title=title,
                top_k=top_k,
                max_detections=max_detections,
                min_short_side=min_short_side,
            )
        )
        count = min(attention_detections, len(s["boxes"]))
        if s["attention"] is None or not count:
            continue
        heat_images.append(
            np.concatenate(
                [
                    render.render_attention(  # by score already
                        frame,
                        visualize.normalize_heatmap(s["attention"][k]),
                        s["boxes"][k],
                        s["scores"][k],
                        s["action_scores"][k],
                        class_names,
                        title=f"{title}, detection {k + 1} (person {s['scores'][k]:.2f})",
                        top_k=top_k,
                        min_short_side=min_short_side,
                    )
                    for k in range(count)
                ],
                axis=0,
            )
        )
    if not images:
        return None, None
    return (render.stack_padded(images), render.stack_padded(heat_images) if heat_images else None)


def write_summaries(summary_writer, result, samples, class_names, step: int) -> None:
    """Writes `scalars(result)` and the rendered samples (`eval/keyframes`, `eval/attention`)
    at `step`."""
    images, heat = render_samples(samples, class_names)
    with summary_writer.as_default(step=step):
        for tag, value in scalars(result).items():
            tf.summary.scalar(tag, value)
        if images is not None:
            tf.summary.image("eval/keyframes", images, max_outputs=len(images))
        if heat is not None:
            tf.summary.image("eval/attention", heat, max_outputs=len(heat))
    summary_writer.flush()
