"""tf.data input pipeline: TFRecord shards (`action_tx.data.tfrecords`) -> batch dicts.

The batch dict (docs/DESIGN.md):
  clip float32 [B, T, H, W, 3] RGB in [-1, 1]; boxes float32 [B, N, 4] yxyx; box_mask bool
  [B, N]; labels float32 [B, N, C]; person_ids int32 [B, N] (-1 padding); proposals float32
  [B, P, 4]; proposal_scores float32 [B, P]; proposal_mask bool [B, P]; objects float32
  [B, O, 4]; object_classes int32 [B, O]; object_scores float32 [B, O]; object_mask bool [B, O];
  video_id string [B]; video_index, timestamp, keyframe_index int32 [B]; with
  `keyframe_jpeg=True` also keyframe_jpeg string [B], the keyframe's stored JPEG (full size,
  for pictures of it).
With `consecutive=True` a batch is instead a run of consecutive keyframes of the stream
(`keyframe_stream.keyframe_windows`) and also has keyframe_mask and target_mask bool [B], as
feature batches.

Shards of either record layout are read (`action_tx.data.keyframe_stream`): layout 1 (a record
per keyframe) exactly as before; layout 2 (a record per chunk of K keyframes, `chunks`) is
expanded into keyframes before the keyframe shuffle, and training shuffles chunks first.

Only TF ops (no py_function), and randomness comes from stateless ops seeded by (seed, position
of the element in the stream), so the same seed gives identical batches and
`tf.train.Checkpoint(iterator=iter(ds))` saves and restores the position.

A record whose frames do not decode stops the pipeline with an InvalidArgumentError that names
its keyframe (video_id,timestamp) and shard; `record_error_text` extracts that one line.
"""

from __future__ import annotations

import re
from typing import Sequence

import tensorflow as tf

from action_tx.data import augment, chunks, tfrecords
from action_tx.data.keyframe_stream import (  # noqa: F401  (select_ranges, shard_records: API)
    keyframe_windows,
    pack,
    parse_element,
    select_ranges,
    shard_reader,
    shard_records,
    unpack,
)
from action_tx.data.tfrecords import parse_example  # noqa: F401  (this module's API)

RECORD_ERROR = "cannot decode the frames of the record"


def _pad(t: tf.Tensor, size: int, value) -> tf.Tensor:
    """Truncates or pads the first axis of t to `size` with `value`."""
    t = t[:size]
    pad = [[0, size - tf.shape(t)[0]]] + [[0, 0]] * (len(t.shape) - 1)
    out = tf.pad(t, pad, constant_values=value)
    out.set_shape([size] + t.shape.as_list()[1:])
    return out


def _by_score(scores: tf.Tensor, *tensors):
    """Sorts tensors (first axis) by descending score, so truncation keeps the best ones."""
    order = tf.argsort(scores, direction="DESCENDING", stable=True)
    return [tf.gather(scores, order)] + [tf.gather(t, order) for t in tensors]


def _element_seeds(seed: int, index: tf.Tensor) -> tf.Tensor:
    """[3, 2] stateless seeds (crop, flip, jitter) for the element at stream position index."""
    base = tf.random.experimental.stateless_fold_in(
        tf.constant([seed, 0x5EED], tf.int64), tf.cast(index, tf.int64)
    )
    return tf.random.experimental.stateless_split(base, num=3)


def record_error_text(error: tf.errors.OpError):
    """The one line naming an undecodable record in a pipeline error, or None."""
    m = re.search(re.escape(RECORD_ERROR) + r"[^\n]*?(?=\]\s*(\n|$))", error.message or "")
    return m.group(0) if m else None


def _decode_frames(jpegs: tf.Tensor, record) -> tf.Tensor:
    """string [T] JPEGs -> uint8 [T, h, w, 3]. A failure names `record` ((shard, video_id,
    timestamp) tensors): TF has no try/except in a graph, so the decode runs in a one-element
    dataset whose errors are dropped, followed by an element that fails with the record's
    name and is only reached when the decode failed."""
    decode = lambda b: tf.map_fn(  # noqa: E731
        lambda x: tf.io.decode_jpeg(x, channels=3),
        b,
        fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
    )
    if record is None:
        return decode(jpegs)

    def fail(shard, video_id, timestamp):
        text = tf.strings.join(
            [
                RECORD_ERROR,
                " of keyframe ",
                video_id,
                ",",
                tf.strings.as_string(timestamp),
                " in shard ",
                shard,
                (
                    ": a frame is not a decodable JPEG (tf.io.decode_jpeg "
                    "failed); convert the split again (tools/create_ava_tfrecords"
                    ".py decodes every frame it stores)"
                ),
            ]
        )
        with tf.control_dependencies([tf.debugging.Assert(False, [text])]):
            return tf.zeros([0, 0, 0, 3], tf.uint8)

    good = tf.data.Dataset.from_tensors(jpegs).map(decode).ignore_errors()
    bad = tf.data.Dataset.from_tensors(tuple(record)).map(fail)
    return good.concatenate(bad).take(1).get_single_element()


def make_clip(
    frames: tf.Tensor,
    keyframe_frame: tf.Tensor,
    *,
    num_frames: int,
    frame_stride: int,
    image_size: Sequence[int],
    window=None,
    record=None,
) -> tf.Tensor:
    """Decodes the T frames around the keyframe, crops and resizes them.

    Args:
      frames: string [W] JPEG window. keyframe_frame: int32 [] position of the keyframe in it.
      num_frames, frame_stride: T and s. image_size: (H, W) of the output.
      window: optional float32 [4] yxyx crop, normalized; default the whole frame.
      record: optional (shard string [], video_id string [], timestamp int32 []) that an
        error names when a frame does not decode.
    Returns:
      float32 [T, H, W, 3] in [-1, 1].
    """
    idx = augment.select_frame_indices(
        keyframe_frame, tf.shape(frames)[0], num_frames, frame_stride
    )
    decoded = _decode_frames(tf.gather(frames, idx), record)
    if window is None:
        window = tf.constant([0.0, 0.0, 1.0, 1.0])
    clip = tf.image.crop_and_resize(
        tf.cast(decoded, tf.float32),
        tf.tile(window[None], [num_frames, 1]),
        tf.range(num_frames),
        list(image_size),
    )
    clip.set_shape([num_frames, image_size[0], image_size[1], 3])
    return clip / 127.5 - 1.0


def process_example(
    ex: dict,
    index: tf.Tensor,
    *,
    num_frames: int,
    frame_stride: int,
    image_size: Sequence[int],
    training: bool,
    seed: int,
    max_boxes: int,
    max_proposals: int,
    max_objects: int,
    min_crop_scale: float = 0.7,
    min_visible: float = 0.25,
    flip: bool = True,
    box_jitter: float = 0.0,
) -> dict:
    """One parsed example (`parse_example`, plus `shard`: string [] to name it in a decode
    error) -> one unbatched element of the batch dict.

    Training: a random square-fraction crop (boxes, proposals and objects moved, clipped, and
    dropped when less than `min_visible` of them stays in view), a random horizontal flip,
    and jitter of the ground-truth boxes by up to `box_jitter` of their size.
    index: int64 [] position of the element in the stream (seeds its randomness).
    """
    boxes, labels, pids = ex["boxes"], ex["labels"], ex["person_ids"]
    props, pscores = ex["proposals"], ex["proposal_scores"]
    objs, oclasses, oscores = ex["objects"], ex["object_classes"], ex["object_scores"]
    window = None
    if training:
        seeds = _element_seeds(seed, index)
        if min_crop_scale < 1.0:
            window = augment.sample_crop_window(seeds[0], min_crop_scale)
            boxes, keep = augment.crop_boxes(boxes, window, min_visible)
            boxes, labels, pids = [tf.boolean_mask(t, keep) for t in (boxes, labels, pids)]
            props, keep = augment.crop_boxes(props, window, min_visible)
            props, pscores = tf.boolean_mask(props, keep), tf.boolean_mask(pscores, keep)
            objs, keep = augment.crop_boxes(objs, window, min_visible)
            objs, oclasses, oscores = [tf.boolean_mask(t, keep) for t in (objs, oclasses, oscores)]
    record = (ex["shard"], ex["video_id"], ex["timestamp"]) if "shard" in ex else None
    clip = make_clip(
        ex["frames"],
        ex["keyframe_frame"],
        num_frames=num_frames,
        frame_stride=frame_stride,
        image_size=image_size,
        window=window,
        record=record,
    )
    if training:
        if flip:
            do = augment.sample_flip(seeds[1])
            clip = tf.cond(do, lambda: augment.flip_frames(clip), lambda: clip)
            boxes, props, objs = [
                tf.cond(do, lambda b=b: augment.flip_boxes(b), lambda b=b: b)
                for b in (boxes, props, objs)
            ]
        if box_jitter > 0:
            noise = augment.sample_jitter_noise(seeds[2], tf.shape(boxes)[0])
            boxes = augment.jitter_boxes(boxes, noise, box_jitter)
    pscores, props = _by_score(pscores, props)
    oscores, objs, oclasses = _by_score(oscores, objs, oclasses)
    n, p, o = tf.shape(boxes)[0], tf.shape(props)[0], tf.shape(objs)[0]
    mask = lambda count, size: tf.range(size) < count  # noqa: E731
    return {
        "clip": clip,
        "boxes": _pad(boxes, max_boxes, 0.0),
        "box_mask": mask(n, max_boxes),
        "labels": _pad(labels, max_boxes, 0.0),
        "person_ids": _pad(pids, max_boxes, -1),
        "proposals": _pad(props, max_proposals, 0.0),
        "proposal_scores": _pad(pscores, max_proposals, 0.0),
        "proposal_mask": mask(p, max_proposals),
        "objects": _pad(objs, max_objects, 0.0),
        "object_classes": _pad(oclasses, max_objects, -1),
        "object_scores": _pad(oscores, max_objects, 0.0),
        "object_mask": mask(o, max_objects),
        "video_id": ex["video_id"],
        "video_index": ex["video_index"],
        "timestamp": ex["timestamp"],
        "keyframe_index": ex["keyframe_index"],
    }


def build_dataset(
    file_pattern: str | Sequence[str],
    *,
    batch_size: int,
    num_classes: int,
    num_frames: int = 8,
    frame_stride: int = 2,
    image_size: int | Sequence[int] = 224,
    training: bool = False,
    seed: int = 0,
    max_boxes: int = 16,
    max_proposals: int = 32,
    max_objects: int = 16,
    shuffle_buffer: int = 256,
    repeat: bool | None = None,
    min_crop_scale: float = 0.7,
    min_visible: float = 0.25,
    flip: bool = True,
    box_jitter: float = 0.0,
    num_parallel_calls: int = tf.data.AUTOTUNE,
    num_threads: int | None = None,
    cycle_length: int = 4,
    keyframe_jpeg: bool = False,
    consecutive: bool = False,
    context: int = 0,
    keyframes: Sequence[tuple[int, int]] | None = None,
) -> tf.data.Dataset:
    """TFRecord shards -> dataset of batch dicts (see the module docstring).

    Args:
      file_pattern: glob(s) of the shards (`tfrecords.match_files`: a match that is not a
        shard is an error); files are read in sorted order.
      batch_size: B. num_classes: C. num_frames, frame_stride: T and s.
      image_size: H (square) or (H, W). training: shuffle, repeat and augment.
      seed: drives file order, shuffling and augmentation: same seed, same batches.
      max_boxes, max_proposals, max_objects: N, P, O (extra proposals/objects are dropped
        lowest score first, extra boxes last in file order).
      repeat: default `training`. The last partial batch is dropped when training.
      num_threads: size of a private thread pool (e.g. 2 to use two cores); None = TF default.
      keyframe_jpeg: add `keyframe_jpeg`, the keyframe's encoded frame as stored.
      consecutive: batches of `batch_size` consecutive keyframes in the converter's (video_id,
        timestamp) order plus `context` keyframes on each side (B = batch_size + 2 * context;
        `keyframe_stream.keyframe_windows`), with keyframe_mask and target_mask [B] (false:
        padding; false: context, no loss and no detections), as feature batches have: what
        heads with temporal parts need end to end (HGRNN §3.2's scene BiGRU over t-l..t+l,
        STAGE §3's temporal edges between consecutive clips). Each shard is read in order
        (no interleaving) and training shuffles shards and whole windows, so no keyframe
        leaves its run.
      keyframes: ascending ranges (start, count), evaluation only: just the keyframes
        [start, start + count) of each, of the shards read in order (a sharded extraction's
        whole videos), in one pass that reads through the records between them.

    The record layout is that of the first record (`chunks.read_layout`). Layout 2 (chunks of
    K keyframes): training shuffles shuffle_buffer // K chunks, then expands them and
    shuffles shuffle_buffer keyframes, so that a batch mixes chunks.
    """
    if keyframes is not None and training:
        raise ValueError("keyframes=(start, count) selects evaluation records only")
    files = tfrecords.match_files(file_pattern)
    layout, per_record = chunks.read_layout(files)
    read_shard = shard_reader(layout, num_classes)
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    repeat = training if repeat is None else repeat
    ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
        ds = ds.shuffle(len(files), seed=seed)
    if repeat:
        ds = ds.repeat()
    # Evaluation reads the shards one after the other: keyframes come in the converter's
    # (video_id, timestamp) order. Training mixes `cycle_length` shards.
    cycle = min(cycle_length, len(files)) if training else 1
    calls = (
        num_parallel_calls
        if num_parallel_calls == tf.data.AUTOTUNE
        else min(num_parallel_calls, cycle)
    )
    if keyframes is not None:  # evaluation: one shard after the other, in order
        ds = select_ranges(ds.flat_map(read_shard), keyframes)
    if consecutive:
        size = batch_size + 2 * context
        if keyframes is None:
            ds = ds.flat_map(read_shard)
        if layout != 1:  # keyframe dicts: variable-length entries serialized to batch
            ds = ds.map(pack)
        ds = keyframe_windows(ds, batch_size, context)
        if training and shuffle_buffer > 1:  # the same keyframes in memory as without runs
            ds = ds.shuffle(max(1, shuffle_buffer // size), seed=seed)
        ds = ds.unbatch()
    elif keyframes is None:
        ds = ds.interleave(
            shard_records, cycle_length=cycle, num_parallel_calls=calls, deterministic=True
        )
        if training and shuffle_buffer > 1 and layout != 1:  # chunks, then their keyframes
            ds = ds.shuffle(max(1, shuffle_buffer // per_record), seed=seed)
        if layout != 1:
            ds = ds.flat_map(
                lambda shard, r: chunks.record_keyframes(r, num_classes).map(
                    lambda ex: dict(ex, shard=shard)
                )
            )
        if training and shuffle_buffer > 1:
            ds = ds.shuffle(shuffle_buffer, seed=seed)

    def fn(index, element):
        if consecutive:
            element, valid, target = element
            if layout != 1:
                element = unpack(element, num_classes)
        ex = parse_element(element, num_classes)
        out = process_example(
            ex,
            index,
            num_frames=num_frames,
            frame_stride=frame_stride,
            image_size=image_size,
            training=training,
            seed=seed,
            max_boxes=max_boxes,
            max_proposals=max_proposals,
            max_objects=max_objects,
            min_crop_scale=min_crop_scale,
            min_visible=min_visible,
            flip=flip,
            box_jitter=box_jitter,
        )
        if keyframe_jpeg:
            out["keyframe_jpeg"] = ex["frames"][ex["keyframe_frame"]]
        if consecutive:
            out.update(keyframe_mask=valid, target_mask=target)
            # Padding: nobody's neighbour, no memory row (as in feature batches).
            for key in ("video_index", "keyframe_index"):
                out[key] = tf.where(valid, out[key], -1)
        return out

    ds = ds.enumerate().map(fn, num_parallel_calls=num_parallel_calls, deterministic=True)
    if consecutive:
        ds = ds.batch(size, drop_remainder=True).prefetch(1)
    else:
        ds = ds.batch(batch_size, drop_remainder=training).prefetch(1)
    options = tf.data.Options()
    options.deterministic = True
    # The decode guard (`_decode_frames`) reads a one-element dataset per record, a stateful
    # op to tf.data; it keeps nothing between records, so an iterator checkpoint may skip it.
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    if num_threads:
        options.threading.private_threadpool_size = num_threads
    return ds.with_options(options)
