"""Runs a trained ActionDetector once per keyframe and writes feature shards
(`action_tx.data.features` layout). The library side of `tools/extract_features.py`."""
from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from action_tx import eval_lib, losses
from action_tx.data.features import encode_keyframe, transfer_labels
from action_tx.data.pipeline import process_example, shard_records
from action_tx.data.tfrecords import parse_example
from action_tx.heads.base import HeadInputs
from object_detection_ext.postprocess import postprocess


class Extractor:
    """Frozen detector -> per-keyframe features.

    Args:
      detector: an `ActionDetector` with the checkpoint's model flags (not yet built).
      checkpoint: trainer checkpoint path (`.../ckpt-N`), restored into `detector`.
      files: the split's TFRecord shards, in order (keyframes in (video_id, timestamp) order).
      dataset_kwargs: `process_example` options (num_frames, frame_stride, image_size,
        max_boxes, max_proposals, max_objects) and num_classes.
      map_size: M of the context map. batch_size: keyframes per forward pass.
      min_detection_score: detections with a lower person score are not stored.
    """

    def __init__(self, detector, checkpoint: str, files: Sequence[str], *, dataset_kwargs: dict,
                 map_size: int = 7, batch_size: int = 4, min_detection_score: float = 0.0):
        self.detector = detector
        self.files = list(files)
        self.kwargs = dict(dataset_kwargs)
        self.map_size = map_size
        self.batch_size = batch_size
        self.min_detection_score = min_detection_score
        eval_lib.build_detector_on(detector, self._dataset(0, batch_size))
        eval_lib.restore(detector, checkpoint)
        self._step = tf.function(self._features, reduce_retracing=True)

    def _dataset(self, start: int, count: int) -> tf.data.Dataset:
        kw = dict(self.kwargs)
        num_classes = kw.pop("num_classes")
        size = kw.pop("image_size")
        size = (size, size) if isinstance(size, int) else tuple(size)

        def fn(shard, serialized):
            ex = dict(parse_example(serialized, num_classes=num_classes), shard=shard)
            return process_example(ex, tf.constant(0, tf.int64), image_size=size,
                                   training=False, seed=0, **kw)
        ds = tf.data.Dataset.from_tensor_slices(self.files).flat_map(
            shard_records).skip(start).take(count)
        return ds.map(fn, num_parallel_calls=2, deterministic=True).batch(
            self.batch_size).prefetch(1)

    def _features(self, batch):
        """The detector's inference path (ActionDetector.call, training=False), keeping the
        trunk features, then the pooled features of every box kind."""
        det = self.detector
        features = det.trunk(batch["clip"], training=False)         # [B, T', H', W', C]
        proposals = det.proposer(features, batch)
        rois, roi_mask = proposals["proposals"], proposals["proposal_mask"]
        roi_scores = proposals["proposal_scores"]
        pool = lambda boxes, mask: tf.reduce_mean(                 # noqa: E731  [B, n, C]
            det.roi_extractor(features, boxes, mask), axis=[2, 3, 4])
        objects = object_mask = object_features = None
        if det.use_objects:
            objects, object_mask = batch["objects"], tf.cast(batch["object_mask"], tf.bool)
            object_features = det.roi_extractor(features, objects, object_mask)
        head_out = det.head(HeadInputs(
            features=features, rois=rois, roi_mask=roi_mask,
            roi_features=det.roi_extractor(features, rois, roi_mask), roi_scores=roi_scores,
            objects=objects, object_mask=object_mask, object_features=object_features,
            video_index=batch["video_index"], timestamp=batch["timestamp"],
            keyframe_index=batch["keyframe_index"]), training=False)
        dets = postprocess(rois, roi_mask, roi_scores,
                           losses.action_probabilities(head_out.logits, det.pose_indices),
                           head_out.box_deltas, nms_iou=det.nms_iou,
                           max_detections=det.max_detections,
                           score_threshold=det.score_threshold)
        k = tf.shape(dets["detection_scores"])[1]
        det_mask = ((tf.range(k)[None] < dets["num_detections"][:, None])
                    & (dets["detection_scores"] >= self.min_detection_score))
        gt_mask = tf.cast(batch["box_mask"], tf.bool)
        obj_mask = tf.cast(batch["object_mask"], tf.bool)
        # Context map: mean over T', then area (average) pooling to M x M.
        context = tf.image.resize(tf.reduce_mean(features, axis=1),
                                  [self.map_size, self.map_size], method="area")
        return {
            "context": context, "scene": tf.reduce_mean(features, axis=[1, 2, 3]),
            "gt_features": pool(batch["boxes"], gt_mask), "gt_mask": gt_mask,
            "det_boxes": dets["detection_boxes"], "det_scores": dets["detection_scores"],
            "det_mask": det_mask, "det_features": pool(dets["detection_boxes"], det_mask),
            "det_labels": transfer_labels(dets["detection_boxes"], det_mask, batch["boxes"],
                                          gt_mask, batch["labels"]),
            "obj_features": pool(batch["objects"], obj_mask), "obj_mask": obj_mask,
        }

    def write_shard(self, path: str, start: int, count: int,
                    progress: Callable[[int], None] = lambda n: None) -> dict:
        """Writes keyframes [start, start + count) of the input to `path` (via `path.tmp`,
        renamed when complete) -> {"records", "feature_dim"}."""
        tmp = path + ".tmp"
        records, dim = 0, None
        with tf.io.TFRecordWriter(tmp) as writer:
            for batch in self._dataset(start, count):
                out = {k: v.numpy() for k, v in self._step(batch).items()}
                b = {k: v.numpy() for k, v in batch.items() if k != "clip"}
                dim = out["scene"].shape[-1]
                for i in range(len(b["timestamp"])):
                    g, d, o = out["gt_mask"][i], out["det_mask"][i], out["obj_mask"][i]
                    writer.write(encode_keyframe(
                        video_id=b["video_id"][i].decode(), video_index=int(b["video_index"][i]),
                        timestamp=int(b["timestamp"][i]),
                        keyframe_index=int(b["keyframe_index"][i]),
                        context=out["context"][i], scene=out["scene"][i],
                        gt=dict(boxes=b["boxes"][i][g], labels=b["labels"][i][g],
                                person_ids=b["person_ids"][i][g],
                                features=out["gt_features"][i][g]),
                        det=dict(boxes=out["det_boxes"][i][d], scores=out["det_scores"][i][d],
                                 features=out["det_features"][i][d],
                                 labels=out["det_labels"][i][d]),
                        obj=dict(boxes=b["objects"][i][o], classes=b["object_classes"][i][o],
                                 scores=b["object_scores"][i][o],
                                 features=out["obj_features"][i][o])))
                records += len(b["timestamp"])
                progress(len(b["timestamp"]))
        if records != count:
            os.remove(tmp)
            raise ValueError(f"{path}: expected {count} keyframes from the input, read {records}")
        os.replace(tmp, path)
        return {"records": records, "feature_dim": int(dim)}
