"""End-to-end batches of consecutive keyframes (`build_dataset(consecutive=True)`, issue 27
item 4): window layout, and HGRNN's scene BiGRU seeing its neighbours' clips through the
detector, with context keyframes giving no loss and no detections."""

import io

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from action_tx.data import pipeline, tfrecords
from action_tx.model_builder import build_detector

C = 3


def _jpeg(value: int) -> bytes:
    rng = np.random.default_rng(value)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture
def shards(tmp_path):
    """Two shards: video v0 (timestamps 0-3) then v1 (timestamps 0-3), in converter order."""
    for s in range(2):
        with tf.io.TFRecordWriter(str(tmp_path / f"t-{s:05d}-of-00002.tfrecord")) as w:
            for t in range(4):
                w.write(
                    tfrecords.encode_example(
                        video_id=f"v{s}",
                        video_index=s,
                        timestamp=t,
                        keyframe_index=4 * s + t,
                        frames=[_jpeg(100 * s + 10 * t + k) for k in range(4)],
                        keyframe_frame=2,
                        fps=4.0,
                        height=32,
                        width=32,
                        num_classes=C,
                        boxes=[[0.2, 0.2, 0.8, 0.6]],
                        labels=[[1, 0, 1]],
                        person_ids=[0],
                        proposals=[],
                        proposal_scores=[],
                        objects=[],
                        object_classes=[],
                        object_scores=[],
                    )
                )
    return str(tmp_path / "t-*.tfrecord")


def _ds(pattern, **kw):
    args = dict(
        batch_size=2,
        num_classes=C,
        num_frames=4,
        frame_stride=1,
        image_size=32,
        max_boxes=2,
        max_proposals=2,
        max_objects=2,
        num_parallel_calls=2,
        consecutive=True,
        context=1,
    )
    args.update(kw)
    return pipeline.build_dataset(pattern, **args)


def test_windows_tile_the_stream_with_context(shards):
    batches = list(_ds(shards))
    # Stream: pad, v0 0-3, v1 0-3, pads; windows of 4 at shift 2, targets in the middle.
    got = [
        (
            b["keyframe_index"].numpy().tolist(),
            b["keyframe_mask"].numpy().tolist(),
            b["target_mask"].numpy().tolist(),
        )
        for b in batches
    ]
    assert got == [
        ([-1, 0, 1, 2], [False, True, True, True], [False, True, True, False]),
        ([1, 2, 3, 4], [True] * 4, [False, True, True, False]),
        ([3, 4, 5, 6], [True] * 4, [False, True, True, False]),
        ([5, 6, 7, -1], [True, True, True, False], [False, True, True, False]),
    ]
    assert batches[2]["video_index"].numpy().tolist() == [0, 1, 1, 1]
    assert batches[2]["timestamp"].numpy().tolist() == [3, 0, 1, 2]
    plain = next(
        iter(
            pipeline.build_dataset(
                shards,
                batch_size=1,
                num_classes=C,
                num_frames=4,
                frame_stride=1,
                image_size=32,
                max_boxes=2,
                max_proposals=2,
                max_objects=2,
            )
        )
    )
    np.testing.assert_allclose(batches[0]["clip"][1], plain["clip"][0])  # same decoding
    train = next(iter(_ds(shards, training=True, seed=3)))
    ts, vi = train["timestamp"].numpy(), train["video_index"].numpy()
    real = train["keyframe_mask"].numpy()
    assert train["clip"].shape[0] == 4 and train["target_mask"].numpy().tolist() == [
        False,
        True,
        True,
        False,
    ]
    keys = [(v, t) for v, t, r in zip(vi, ts, real) if r]
    # A run of the shuffled shards' stream: in order within each video (a window may join
    # the end of one shard to the start of the next).
    assert len(keys) >= 3 and all(
        t2 == t1 + 1 for (v1, t1), (v2, t2) in zip(keys, keys[1:]) if v1 == v2
    )


def test_hgrnn_scene_gru_sees_neighbour_clips_end_to_end(shards):
    keras.utils.set_random_seed(0)
    det = build_detector(
        num_classes=C,
        trunk="i3d_tiny",
        head="hgrnn",
        proposals="gt",
        head_options=dict(window=1, hidden_size=16, iterations=1),
    )
    batch = next(iter(_ds(shards, batch_size=1, context=1).skip(1)))  # v0 t = 0, 1, 2
    assert batch["timestamp"].numpy().tolist() == [0, 1, 2]
    out = det(batch, training=False)
    # Context keyframes: no detections.
    assert out["num_detections"].numpy().tolist()[0::2] == [0, 0]
    assert int(out["num_detections"][1]) > 0
    for neighbour in (0, 2):
        clip = batch["clip"].numpy()
        clip[neighbour] = -clip[neighbour]
        other = det(dict(batch, clip=tf.constant(clip)), training=False)
        assert not np.allclose(other["logits"][1], out["logits"][1], atol=1e-6)
    far = dict(batch, timestamp=tf.constant([0, 5, 10], tf.int32))  # not neighbours: l = 0
    clip = batch["clip"].numpy()
    clip[0] = -clip[0]
    np.testing.assert_allclose(
        det(dict(far, clip=tf.constant(clip)), training=False)["logits"][1],
        det(far, training=False)["logits"][1],
        atol=1e-5,
    )
    # Training: only the target keyframe's RoIs carry loss.
    train = det(batch, training=True)
    assert train["roi_mask"].numpy()[[0, 2]].sum() == 0 and train["roi_mask"].numpy()[1].any()
    assert np.isfinite(det.compute_losses(train)["total_loss"].numpy())


def test_stage_temporal_edges_reach_neighbour_clips_end_to_end(shards):
    keras.utils.set_random_seed(0)
    det = build_detector(
        num_classes=C,
        trunk="i3d_tiny",
        head="stage",
        proposals="gt",
        head_options=dict(use_objects=False, dropout=0.0, num_layers=1),
    )
    batch = next(iter(_ds(shards, batch_size=1, context=1).skip(1)))  # v0 t = 0, 1, 2
    out = det(batch, training=False)["logits"][1]
    clip = batch["clip"].numpy()
    clip[2] = -clip[2]
    moved = det(dict(batch, clip=tf.constant(clip)), training=False)["logits"][1]
    assert not np.allclose(moved, out, atol=1e-6)


def test_evaluation_scores_every_keyframe_once_in_consecutive_runs(shards):
    from action_tx import eval_lib

    keras.utils.set_random_seed(0)
    det = build_detector(
        num_classes=C,
        trunk="i3d_tiny",
        head="hgrnn",
        proposals="gt",
        head_options=dict(window=1, hidden_size=16, iterations=1),
    )
    rows, samples = eval_lib.predict_dataset(
        det, _ds(shards), [1, 2, 3], num_images=8, progress=False
    )
    keys = {(v, int(t)) for v, t in zip(rows["video_id"], rows["timestamp"])}
    assert keys == {(f"v{s}", t) for s in range(2) for t in range(4)}
    # One person per keyframe, C rows each: no keyframe scored twice (as context or padding).
    assert len(rows["timestamp"]) == 8 * C
    assert [(s["video_id"], s["timestamp"]) for s in samples] == sorted(keys)
