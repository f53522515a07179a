"""Scoring a model: detections over an evaluation dataset, AVA frame-mAP, TensorBoard output.

    detector = build_detector(...)
    build_detector_on(detector, dataset)             # creates the variables
    for path in wait_for_checkpoints(model_dir, timeout_s=600):
        result = evaluate_checkpoint(detector, path, dataset, label_map, "ava_val.csv",
                                     out_dir=out_dir, summary_writer=writer)

Per checkpoint `ckpt-N` it writes `out_dir/ckpt-N_detections.csv` (AVA detection CSV),
`out_dir/ckpt-N_results.json` (`AvaEvalResult.to_json()` + step + checkpoint) and, with a
summary writer, the scalars and images listed in `write_summaries`.

Checkpoint handling (`restore`, `checkpoint_step`, `wait_for_checkpoints`) is in
`action_tx.eval_checkpoints` and the TensorBoard output (`scalars`, `render_samples`,
`write_summaries`) in `action_tx.eval_summaries`; both are re-exported here.
"""

import json
import os
import time
import types
import weakref
from typing import Optional

import numpy as np
import tensorflow as tf

from action_tx import visualize
from action_tx.data import ava, tfrecords
from action_tx.eval_checkpoints import (  # noqa: F401  (this module's API, re-exported)
    checkpoint_step,
    restore,
    wait_for_checkpoints,
)
from action_tx.eval_summaries import render_samples, scalars, write_summaries  # noqa: F401
from action_tx.outputs import detections_to_ava
from action_tx.progress import Progress
from object_detection_ext import ava_eval

_ROW_KEYS = ("video_id", "timestamp", "boxes", "action_id", "score")


def build_detector_on(detector, dataset) -> None:
    """Creates the detector's variables with one inference call on the first batch of
    `dataset`, as a checkpoint restore needs (Keras 3 builds lazily)."""
    for batch in dataset.take(1):
        detector(batch, training=False)
        return
    raise ValueError("the evaluation dataset is empty")


def attention_per_detection(attention, indices):
    """attention [B, N, layers, heads, T', H', W'] (the `tx` head's maps), indices [B, K] RoI
    of each detection -> [B, K, H', W']: the last layer's mean over heads at the central time
    slice, per detection. Other heads' attention layouts are not rendered (None)."""
    if attention is None or attention.shape.rank != 7:
        return None
    maps = tf.reduce_mean(attention[:, :, -1], axis=2)  # [B, N, T', H', W']
    maps = maps[:, :, tf.shape(maps)[2] // 2]  # [B, N, H', W']
    return tf.gather(maps, indices, batch_dims=1)  # [B, K, H', W']


def has_inference_memory(head) -> bool:
    """Whether `head` (an `ActionHead`) keeps a memory between keyframes at inference (AIA with
    M-blocks): it asks for more than one pass, the first filling that memory."""
    return head.inference_passes >= 2


# One inference tf.function per model (weak keys: a model's entry goes with it). An end-to-end
# benchmark scores one model over several seeds' checkpoints and val splits; a new tf.function
# per call re-traced the whole detector every time, and the tracing cost more than the
# evaluation itself on the tiny preset (issue 29).
_PREDICT_FUNCTIONS = weakref.WeakKeyDictionary()


def predict_function(detector):
    """The tf.function `batch -> dict` that `predict_dataset` runs, one per `detector`
    (cached: later calls, e.g. after another checkpoint is restored into the same model or on
    another split of the same shapes, reuse its traces; `reduce_retracing` lets batches of
    other sizes share one; a new one when the head's `inference_state_key` changed).
    Returns detection_boxes [B, K, 4], detection_scores [B, K], action_scores [B, K, C],
    num_detections [B], plus keyframe [B, H, W, 3] (the clip's frame T // 2) when the batch
    has a `clip`, and attention [B, K, H', W'] for heads whose maps `attention_per_detection`
    renders."""
    # A head that replaced captured state (ACAR's set_bank: new bank tables) needs new traces.
    key = detector.head.inference_state_key
    cached = _PREDICT_FUNCTIONS.get(detector)
    if cached is not None and cached[0] == key:
        return cached[1]
    model = weakref.ref(detector)  # the cache's value must not keep its key alive

    @tf.function(reduce_retracing=True)
    def predict(batch):
        out = model()(batch, training=False)
        keep = {
            k: out[k]
            for k in ("detection_boxes", "detection_scores", "action_scores", "num_detections")
        }
        if "clip" in batch:  # feature-mode batches have no frames to render
            clip = batch["clip"]
            keep["keyframe"] = clip[:, tf.shape(clip)[1] // 2]  # T // 2 is the keyframe
        heat = attention_per_detection(out.get("attention"), out.get("detection_indices"))
        if heat is not None:
            keep["attention"] = heat
        return keep

    _PREDICT_FUNCTIONS[detector] = (key, predict)
    return predict


def predict_dataset(
    detector,
    dataset,
    class_ids,
    *,
    num_images: int = 3,
    progress: bool = True,
    total: Optional[int] = None,
    passes: Optional[int] = None,
    empty_memory: bool = False,
):
    """Runs `detector(batch, training=False)` (in its cached tf.function, `predict_function`)
    over an evaluation dataset.

    Args:
      detector: an `ActionDetector` or `FeatureActionModel` (or any callable with their
        outputs and a `head` with the `action_tx.heads.base.ActionHead` interface).
      dataset: batch dicts of `action_tx.data.pipeline.build_dataset(..., training=False)`;
        uses `clip` [B, T, H, W, 3] in [-1, 1], `video_id` [B], `timestamp` [B], for the
        samples `boxes`, `box_mask`, `labels` (ground truth) and `keyframe_jpeg` [B] (the
        stored keyframe; `build_dataset(..., keyframe_jpeg=True)`) when present; or feature
        batches (`action_tx.data.features`): no `clip` (no samples), `keyframe_mask` and
        `target_mask` [B] (the model gives other keyframes no detections; not counted).
      class_ids: [C] AVA id of each contiguous class index (`LabelMap.ids`).
      num_images: keyframes (the first ones) whose central frame is kept for rendering.
      progress: show a progress bar on stderr. total: keyframes expected (for the bar).
      passes: runs over `dataset`; all but the last only fill the head's inference memory
        (AIA: every keyframe's persons are stored before any is scored). None: the head's
        `inference_passes`. The head's `reset_inference_memory()` is called first (no
        entries of another split).
      empty_memory: an ablation for a head with an inference memory: one pass, the memory
        reset before every batch (a head reads it before it writes), so every keyframe is
        scored as if nothing had been stored: does the model read its memory? Raises
        ValueError for a head without one (`has_inference_memory`).
    Returns:
      (rows, samples): rows = dict of AVA detection arrays (`detections_to_ava`: video_id,
      timestamp, boxes [R, 4] yxyx, action_id, score); samples = list of up to `num_images`
      dicts with frame uint8 [H, W, 3] (the keyframe, the clip's frame T // 2), source uint8
      [H0, W0, 3] (the stored keyframe) or None, video_id, timestamp, boxes [K, 4], scores [K],
      action_scores [K, C] (valid detections only, by descending score), attention
      [K, H', W'] or None, gt_boxes [G, 4] and gt_labels [G, C] or None.
    """

    predict = predict_function(detector)
    head = detector.head
    passes = passes if passes is not None else head.inference_passes
    if empty_memory:
        if not has_inference_memory(head):
            raise ValueError(
                f"empty_memory: the head {type(head).__name__} has no inference memory"
            )
        passes = 1
    head.reset_inference_memory()
    for index in range(passes - 1):  # memory passes: outputs discarded
        bar = Progress(total, f"memory pass {index + 1}", progress, unit="keyframes")
        for batch in dataset:
            predict({k: v for k, v in batch.items() if k != "keyframe_jpeg"})
            bar.update(len(batch["timestamp"]))
        bar.close()
    parts = {k: [] for k in _ROW_KEYS}
    samples = []
    bar = Progress(total, "eval", progress, unit="keyframes")
    for batch in dataset:
        if empty_memory:
            head.reset_inference_memory()
        batch = dict(batch)
        jpegs = batch.pop("keyframe_jpeg", None)  # for the pictures only, not the model
        out = {k: v.numpy() for k, v in predict(batch).items()}
        video_id, timestamp = batch["video_id"].numpy(), batch["timestamp"].numpy()
        rows = detections_to_ava(out, video_id, timestamp, class_ids)
        for k in _ROW_KEYS:
            parts[k].append(rows[k])
        # Padding and context keyframes (feature batches, consecutive runs) have no
        # detections: they are neither counted nor pictured.
        real = (
            batch["keyframe_mask"].numpy() & batch["target_mask"].numpy()
            if "target_mask" in batch
            else np.ones(len(timestamp), bool)
        )
        for b in range(len(timestamp)):
            if len(samples) >= num_images or "keyframe" not in out:
                break
            if not real[b]:
                continue
            n = int(out["num_detections"][b])
            gt = batch["box_mask"][b].numpy() if "box_mask" in batch else None
            samples.append(
                dict(
                    frame=visualize.denormalize_frame(out["keyframe"][b]),
                    source=(
                        tf.io.decode_image(jpegs[b], channels=3, expand_animations=False).numpy()
                        if jpegs is not None
                        else None
                    ),
                    video_id=video_id[b].decode(),
                    timestamp=int(timestamp[b]),
                    boxes=out["detection_boxes"][b, :n],
                    scores=out["detection_scores"][b, :n],
                    action_scores=out["action_scores"][b, :n],
                    attention=out["attention"][b, :n] if "attention" in out else None,
                    gt_boxes=batch["boxes"][b].numpy()[gt] if gt is not None else None,
                    gt_labels=batch["labels"][b].numpy()[gt] if gt is not None else None,
                )
            )
        bar.update(int(real.sum()))
    bar.close()
    if bar.done == 0:
        raise ValueError("the evaluation dataset is empty")
    rows = {k: np.concatenate(v) for k, v in parts.items()}
    return rows, samples


def count_keyframes(file_pattern) -> Optional[int]:
    """Keyframes in the shards matching `file_pattern`, from the converter's manifests
    (a shard's `keyframes`; `records` in manifests written before layout 2, one a keyframe)
    (`<split>_manifest.json` beside the shards); None when nothing matches or a shard is not
    listed in one. Raises `tfrecords.NotTFRecordError` on a match that is not a shard.
    A manifest's shards are matched by file name in its own folder, so a moved or copied
    folder still counts."""
    try:
        files = {os.path.abspath(f) for f in tfrecords.match_files(file_pattern)}
    except FileNotFoundError:
        return None
    counts = {}
    for folder in {os.path.dirname(f) for f in files}:
        for manifest in tf.io.gfile.glob(os.path.join(folder, "*_manifest.json")):
            try:
                with open(manifest) as f:
                    shards = json.load(f).get("shards", [])
                counts.update(
                    {
                        os.path.join(folder, os.path.basename(s["path"])): int(
                            s.get("keyframes", s["records"])
                        )
                        for s in shards
                    }
                )
            except (OSError, ValueError, KeyError, TypeError):
                continue
    if not files or not files <= set(counts):
        return None
    return sum(counts[f] for f in files)


def evaluate_checkpoint(
    detector,
    checkpoint_path: str,
    dataset,
    label_map,
    groundtruth_csv,
    *,
    excluded=None,
    evidence=None,
    out_dir: str,
    summary_writer=None,
    step: Optional[int] = None,
    num_images: int = 3,
    progress: bool = True,
    total: Optional[int] = None,
    empty_memory: bool = False,
    **eval_kwargs,
) -> ava_eval.AvaEvalResult:
    """Restores a checkpoint, detects over `dataset`, writes CSV + JSON (+ TensorBoard).

    Args:
      detector: a detector built with `build_detector_on` (same model flags as the trainer).
      checkpoint_path: `.../ckpt-N` (tf.train.CheckpointManager layout).
      dataset: evaluation batches (`build_dataset(..., training=False)`).
      label_map: `ava.LabelMap` (or a label-map path) of the model's classes.
      groundtruth_csv: AVA ground-truth CSV of the split.
      excluded, evidence: optional excluded-timestamps / evidence CSVs (see ava_eval.evaluate).
      out_dir: where `<ckpt>_detections.csv` and `<ckpt>_results.json` go.
      summary_writer: a `tf.summary` writer, or None for no TensorBoard output.
      step: summary step; default `checkpoint_step(checkpoint_path)`.
      num_images: keyframes rendered to TensorBoard. progress, total, empty_memory: see
        `predict_dataset`.
      **eval_kwargs: more options of `ava_eval.evaluate` (iou_threshold, breakdowns, ...).
    Returns:
      the `AvaEvalResult` of the written detection CSV.
    """
    if not isinstance(label_map, ava.LabelMap):
        label_map = ava.read_label_map(label_map)
    start = time.perf_counter()
    restore(detector, checkpoint_path)
    step = checkpoint_step(checkpoint_path) if step is None else int(step)
    rows, samples = predict_dataset(
        detector,
        dataset,
        label_map.ids,
        num_images=num_images,
        progress=progress,
        total=total,
        empty_memory=empty_memory,
    )
    os.makedirs(out_dir, exist_ok=True)
    name = os.path.basename(checkpoint_path)
    csv_path = os.path.join(out_dir, f"{name}_detections.csv")
    ava.write_annotations(csv_path, types.SimpleNamespace(**rows), kind="detections")
    # Score the file as written (3-decimal boxes, 4-decimal scores): the JSON then equals
    # what `tools/eval.py --detections` reports on the same CSV.
    result = ava_eval.evaluate(
        groundtruth_csv, csv_path, label_map, excluded=excluded, evidence=evidence, **eval_kwargs
    )
    report = dict(
        result.to_json(),
        step=step,
        checkpoint=os.path.abspath(checkpoint_path),
        detections_csv=os.path.abspath(csv_path),
        seconds=round(time.perf_counter() - start, 3),
    )
    with open(os.path.join(out_dir, f"{name}_results.json"), "w") as f:
        json.dump(report, f, indent=1)
    if summary_writer is not None:
        class_names = [label_map.names[i] for i in label_map.ids]
        write_summaries(summary_writer, result, samples, class_names, step)
    return result
