"""Runs a trained ActionDetector once per keyframe and writes feature shards
(`action_tx.data.features` layout). The library side of `tools/extract_features.py`:
`extract_split` (the features of one split, resumable, shard by shard) and
`extract_split_bank` (ACAR's Actor-Context Feature Bank instead).

One forward pass: the stored detections are the detector's own (`ActionDetector.
detect_with_features`, its inference with class-specific NMS and every post-processing
option), and the features are pooled in the same pass."""

from __future__ import annotations

import itertools
import os
from typing import Callable, Optional, Sequence

import tensorflow as tf

from action_tx import eval_lib
from action_tx.data import chunks, features
from action_tx.data.features import encode_keyframe, transfer_labels
from action_tx.data.keyframe_stream import parse_element, select_ranges, shard_reader
from action_tx.data.pipeline import process_example
from action_tx.extraction_shards import (  # noqa: F401  (ManifestMismatch: re-exported)
    ManifestMismatch,
    check_worker,
    load_manifest,
    run_shards,
    stderr,
)
from action_tx.own_box_features import PIXELS, own_box_features


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
      feature_layer: 'trunk' (the trunk's output, Mixed_4f unless the detector's trunk ends
        at Mixed_5c) or 'Mixed_5c' (the `i3d`/`tx_i3d` head's fine-tuned Mixed_5a-5c tail on
        each RoI tube, as that head pools it: STAGE §4, HGRNN §3.1): see
        `ActionDetector.detect_with_features`.
      pixels: 'frame' (the detector's own pass over the whole frame) or 'own_box': each
        ground-truth box's features from its own pixels alone (`own_box_features`); such a
        keyframe stores no detections and no objects, and zeros for the context map and
        scene (they would see the others).
    """

    def __init__(
        self,
        detector,
        checkpoint: str,
        files: Sequence[str],
        *,
        dataset_kwargs: dict,
        map_size: int = 7,
        batch_size: int = 4,
        min_detection_score: float = 0.0,
        feature_layer: str = "trunk",
        pixels: str = "frame",
    ):
        if pixels not in PIXELS:
            raise ValueError(f"pixels must be one of {PIXELS}, got {pixels!r}")
        self.detector = detector
        self.pixels = pixels
        self.files = list(files)
        self.kwargs = dict(dataset_kwargs)
        self.map_size = map_size
        self.batch_size = batch_size
        self.min_detection_score = min_detection_score
        self.feature_layer = feature_layer
        if feature_layer == "Mixed_5c" and detector.head.tail is None:
            raise ValueError(
                f"feature_layer='Mixed_5c' needs a checkpoint whose head has an "
                f"I3D Mixed_5 tail (i3d, tx_i3d), not {type(detector.head).__name__}"
            )
        eval_lib.build_detector_on(detector, self._dataset([(0, batch_size)]))
        eval_lib.restore(detector, checkpoint)
        self._step = tf.function(self._features, reduce_retracing=True)

    def _dataset(self, ranges) -> tf.data.Dataset:
        kw = dict(self.kwargs)
        num_classes = kw.pop("num_classes")
        size = kw.pop("image_size")
        size = (size, size) if isinstance(size, int) else tuple(size)

        def fn(*element):
            ex = parse_element(element[0] if len(element) == 1 else element, num_classes)
            return process_example(
                ex, tf.constant(0, tf.int64), image_size=size, training=False, seed=0, **kw
            )

        # Records of either layout (`chunks`); ranges count keyframes.
        read_shard = shard_reader(chunks.read_layout(self.files)[0], num_classes)
        ds = select_ranges(
            tf.data.Dataset.from_tensor_slices(self.files).flat_map(read_shard), ranges
        )
        return (
            ds.map(fn, num_parallel_calls=2, deterministic=True).batch(self.batch_size).prefetch(1)
        )

    def _features(self, batch):
        """The detector's own inference pass (`ActionDetector.detect_with_features`: the
        detections `detector(batch)` gives), with the pooled features of every box kind."""
        gt_mask = tf.cast(batch["box_mask"], tf.bool)
        obj_mask = tf.cast(batch["object_mask"], tf.bool)
        if self.pixels == "own_box":
            return self._own_box(batch, gt_mask)
        out = self.detector.detect_with_features(
            batch,
            feature_layer=self.feature_layer,
            boxes={"gt": (batch["boxes"], gt_mask), "obj": (batch["objects"], obj_mask)},
        )
        features = out["feature_map"]  # [B, T'', H'', W'', C]
        k = tf.shape(out["detection_scores"])[1]
        det_mask = (tf.range(k)[None] < out["num_detections"][:, None]) & (
            out["detection_scores"] >= self.min_detection_score
        )
        # Context map: mean over T'', then area (average) pooling to M x M.
        context = tf.image.resize(
            tf.reduce_mean(features, axis=1), [self.map_size, self.map_size], method="area"
        )
        return {
            "context": context,
            "scene": tf.reduce_mean(features, axis=[1, 2, 3]),
            "gt_features": out["gt_features"],
            "gt_mask": gt_mask,
            "det_boxes": out["detection_boxes"],
            "det_scores": out["detection_scores"],
            "det_mask": det_mask,
            "det_features": out["detection_features"],
            "det_labels": transfer_labels(
                out["detection_boxes"], det_mask, batch["boxes"], gt_mask, batch["labels"]
            ),
            "obj_features": out["obj_features"],
            "obj_mask": obj_mask,
        }

    def _own_box(self, batch, gt_mask):
        """`_features` of pixels='own_box': the ground-truth actors only (class docstring)."""
        gt = own_box_features(
            self.detector, batch["clip"], batch["boxes"], gt_mask, self.feature_layer
        )
        b, c, k = tf.shape(gt)[0], tf.shape(gt)[2], tf.shape(batch["labels"])[2]
        none = tf.zeros(tf.stack([b, 0]), tf.bool)
        return {
            "context": tf.zeros(tf.stack([b, self.map_size, self.map_size, c])),
            "scene": tf.zeros(tf.stack([b, c])),
            "gt_features": gt,
            "gt_mask": gt_mask,
            "det_boxes": tf.zeros(tf.stack([b, 0, 4])),
            "det_scores": tf.zeros(tf.stack([b, 0])),
            "det_mask": none,
            "det_features": tf.zeros(tf.stack([b, 0, c])),
            "det_labels": tf.zeros(tf.stack([b, 0, k])),
            "obj_features": tf.zeros(tf.concat([tf.shape(batch["object_mask"]), [c]], 0)),
            "obj_mask": tf.zeros_like(tf.cast(batch["object_mask"], tf.bool)),
        }

    def keyframes(self, ranges, progress: Callable[[int], None] = lambda n: None):
        """-> iterator of (serialized keyframe record, feature dim C) of the input's keyframes
        in the ascending `ranges` [(start, count), ...], in order, in one pass over the input
        (`pipeline.select_ranges`); progress(n) after each batch of n."""
        for batch in self._dataset(ranges):
            out = {k: v.numpy() for k, v in self._step(batch).items()}
            b = {k: v.numpy() for k, v in batch.items() if k != "clip"}
            dim = int(out["scene"].shape[-1])
            for i in range(len(b["timestamp"])):
                g, d, o = out["gt_mask"][i], out["det_mask"][i], out["obj_mask"][i]
                record = encode_keyframe(
                    video_id=b["video_id"][i].decode(),
                    video_index=int(b["video_index"][i]),
                    timestamp=int(b["timestamp"][i]),
                    keyframe_index=int(b["keyframe_index"][i]),
                    context=out["context"][i],
                    scene=out["scene"][i],
                    gt=dict(
                        boxes=b["boxes"][i][g],
                        labels=b["labels"][i][g],
                        person_ids=b["person_ids"][i][g],
                        features=out["gt_features"][i][g],
                    ),
                    det=dict(
                        boxes=out["det_boxes"][i][d],
                        scores=out["det_scores"][i][d],
                        features=out["det_features"][i][d],
                        labels=out["det_labels"][i][d],
                    ),
                    obj=dict(
                        boxes=b["objects"][i][o],
                        classes=b["object_classes"][i][o],
                        scores=b["object_scores"][i][o],
                        features=out["obj_features"][i][o],
                    ),
                )
                yield record, dim
            progress(len(b["timestamp"]))

    def write_shard(
        self,
        path: str,
        start: int,
        count: int,
        progress: Callable[[int], None] = lambda n: None,
        keyframes=None,
    ) -> dict:
        """Writes keyframes [start, start + count) of the input to `path` (via `path.tmp`,
        renamed when complete) -> {"records", "feature_dim"}. `keyframes`: an iterator of
        `keyframes()` whose next `count` records are these (a worker's one pass over all its
        shards); default one over [start, start + count)."""
        stream = keyframes if keyframes is not None else self.keyframes([(start, count)], progress)
        tmp = path + ".tmp"
        records, dim = 0, None
        with tf.io.TFRecordWriter(tmp) as writer:
            for record, dim in itertools.islice(stream, count):
                writer.write(record)
                records += 1
        if records != count:
            os.remove(tmp)
            raise ValueError(f"{path}: expected {count} keyframes from the input, read {records}")
        os.replace(tmp, path)
        return {"records": records, "feature_dim": dim}


def extract_split(
    task,
    checkpoint: str,
    files: Sequence[str],
    out: str,
    *,
    split: str,
    map_size: int = 7,
    shard_size: int = 256,
    num_workers: int = 1,
    worker_index: int = 0,
    batch_size: int = 4,
    min_detection_score: float = 0.0,
    feature_layer: str = "trunk",
    pixels: str = "frame",
    progress: bool = True,
    log: Callable[[str], None] = stderr,
) -> dict:
    """Writes the features of one split's TFRecord `files` into `out` -> the manifest.

    Args:
      task: the end-to-end task (`action_tx.tasks.FramesTask`) of the checkpoint's config.
      checkpoint: `.../ckpt-N` of that model. split: "train" or "val" (recorded).
      num_workers, worker_index: this worker writes the shards j with j % N == i.
      The other options: see `Extractor` and tools/extract_features.py.
    Resumable: shards marked done in the manifest are skipped; a manifest of other settings
    raises ManifestMismatch.
    """
    if not task.runs_on_frames:
        raise ValueError(
            "a feature-mode model: features are extracted with an end-to-end detector checkpoint"
        )
    check_worker(num_workers, worker_index)
    os.makedirs(out, exist_ok=True)
    label_map = task.label_map
    settings = dict(
        checkpoint=os.path.abspath(checkpoint),
        tfrecords=[os.path.abspath(f) for f in files],
        split=split,
        map_size=map_size,
        shard_size=shard_size,
        min_detection_score=min_detection_score,
        num_classes=label_map.num_classes,
        feature_layer=feature_layer,
    )
    if pixels != "frame":  # recorded only when not the default: older folders stay valid
        settings["pixels"] = pixels
    manifest = load_manifest(out, settings, lambda: features.video_runs(list(files)), shard_size)

    def start(todo, update):
        kwargs = task.dataset_kwargs(training=False)
        names = ("num_classes", "num_frames", "frame_stride", "image_size", "max_boxes")
        kwargs = {k: kwargs[k] for k in names + ("max_proposals", "max_objects")}
        extractor = Extractor(
            task.build_model(),
            checkpoint,
            files,
            dataset_kwargs=kwargs,
            map_size=map_size,
            batch_size=batch_size,
            min_detection_score=min_detection_score,
            feature_layer=feature_layer,
            pixels=pixels,
        )
        # One pass over this worker's shards, as the bank's (extract_split_bank).
        stream = extractor.keyframes([(s["start"], s["records"]) for s in todo], update)
        return lambda path, start, count: extractor.write_shard(
            path, start, count, keyframes=stream
        )

    def mark(manifest, entry, info):
        entry["records"] = info["records"]
        manifest.update(
            num_classes=label_map.num_classes, feature_dim=info["feature_dim"], map_size=map_size
        )

    opts = dict(num_workers=num_workers, worker_index=worker_index, progress=progress, log=log)
    manifest = run_shards(out, manifest, start, mark, name="extract", **opts)
    log(
        f"{sum(s['records'] for s in manifest['shards'])} keyframes in "
        f"{len(manifest['shards'])} shards: {out}"
    )
    return manifest


def extract_split_bank(
    task,
    checkpoint: str,
    out: str,
    *,
    split: str,
    batch_size: int,
    files: Optional[Sequence[str]] = None,
    shard_size: int = 256,
    num_workers: int = 1,
    worker_index: int = 0,
    progress: bool = True,
    log: Callable[[str], None] = stderr,
) -> dict:
    """Writes ACAR's Actor-Context Feature Bank (`action_tx.acfb`) of the checkpoint's model
    over one split into `out` -> the bank's planning manifest (manifest.json). End to end the
    split is `files` (its TFRecords); on stored features it is the config's feature folder of
    `split`. The actors archived are those the model scores at inference (`eval_actors` in
    feature mode, the checkpoint's detections end to end).

    Sharded and resumable as `extract_split` (the same plan, lock and marks): shards of whole
    videos, worker i writes the shards j with j % num_workers == i, done shards are skipped;
    whichever worker finds every shard done writes acfb.json, the file `acfb.load_bank`
    reads. A folder holding a bank of the one-pass extraction (acfb.json, no manifest.json)
    or a manifest of other settings raises ManifestMismatch.
    """
    from action_tx import acfb

    check_worker(num_workers, worker_index)
    if os.path.isfile(os.path.join(out, acfb.MANIFEST)) and not os.path.isfile(
        os.path.join(out, features.MANIFEST)
    ):
        raise ManifestMismatch(
            f"{out}: holds a finished bank of the one-process extraction (acfb.json without "
            "manifest.json); it loads as it is; delete the folder to extract it again"
        )
    os.makedirs(out, exist_ok=True)
    settings = dict(checkpoint=os.path.abspath(checkpoint), split=split, shard_size=shard_size)
    if task.runs_on_frames:
        settings["tfrecords"] = [os.path.abspath(f) for f in files]
        runs = lambda: features.video_runs(list(files))  # noqa: E731
    else:
        folder = task.folder(split)
        settings.update(feature_dir=os.path.abspath(folder), actors=task.config.data.eval_actors)
        runs = lambda: features.folder_video_runs(folder)  # noqa: E731
    manifest = load_manifest(out, settings, runs, shard_size, acfb.SHARD_PATTERN)

    def start(todo, update):
        # One pass over this worker's shards (one read of the input): shard after shard, each
        # takes its count of keyframe rows off the stream.
        ranges = [(s["start"], s["records"]) for s in todo]
        dataset = task.eval_dataset(batch_size, split, files, keyframes=ranges)
        model = task.build_model()
        eval_lib.build_detector_on(model, dataset)
        eval_lib.restore(model, checkpoint)
        rows = acfb.bank_rows(model, dataset, update)

        def write(path, start, count):
            shard = list(itertools.islice(rows, count))
            if len(shard) != count:
                raise ValueError(
                    f"{path}: expected {count} keyframes from the input, read {len(shard)}"
                )
            return acfb.write_shard(path, shard)

        return write

    def mark(manifest, entry, info):
        entry.update(info)

    opts = dict(num_workers=num_workers, worker_index=worker_index, progress=progress, log=log)
    manifest = run_shards(out, manifest, start, mark, name="acfb bank", **opts)
    shards = manifest["shards"]
    left = sum(not s["done"] for s in shards)
    if left:
        log(f"worker {worker_index} done; {left} of {len(shards)} shards still to write: {out}")
    else:
        summary = acfb.write_summary(out, shards)
        log(f"{summary['keyframes']} keyframes in {len(shards)} bank shards: {out}")
    return manifest
