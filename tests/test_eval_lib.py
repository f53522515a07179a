"""action_tx.eval_lib: scoring checkpoints of a tiny detector on a tiny synthetic split."""

import json
import shutil
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from action_tx.checkpointing import checkpointable
from tensorboard.backend.event_processing import event_accumulator

from action_tx import eval_lib, render, visualize
from action_tx.data import ava, convert, synthetic
from action_tx.data.pipeline import build_dataset
from action_tx.data.tfrecords import parse_example
from action_tx.model_builder import build_detector
from object_detection_ext import ava_eval

TINY_MODEL = dict(
    trunk="i3d_tiny",
    head="linear",
    anchor_sizes=(16.0, 32.0, 48.0),
    rpn_filters=32,
    post_nms_top_k=20,
    num_roi_samples=16,
    max_detections=10,
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """1 val video of 8 s (5 keyframes), a built tiny detector and one checkpoint of it."""
    root = tmp_path_factory.mktemp("eval_lib")
    synthetic.generate(str(root / "syn"), preset="tiny", seed=0, check=False, videos=3, seconds=8)
    convert.convert_split(
        str(root / "syn"),
        "val",
        str(root / "rec" / "val@1"),
        num_frames=8,
        progress=False,
        num_workers=1,
    )
    label_map = ava.read_label_map(str(root / "syn" / "annotations" / "action_list.pbtxt"))
    dataset = build_dataset(
        str(root / "rec" / "val-*"),
        batch_size=2,
        num_classes=label_map.num_classes,
        num_frames=8,
        frame_stride=1,
        image_size=64,
        training=False,
        keyframe_jpeg=True,
    )
    detector = build_detector(num_classes=label_map.num_classes, seed=0, **TINY_MODEL)
    eval_lib.build_detector_on(detector, dataset)
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=checkpointable(detector)), str(root / "model"), max_to_keep=5
    )
    return dict(
        root=root,
        label_map=label_map,
        dataset=dataset,
        detector=detector,
        checkpoint=manager.save(checkpoint_number=7),
        groundtruth=str(root / "syn" / "annotations" / "ava_val.csv"),
        evidence=str(root / "syn" / "annotations" / "evidence_val.csv"),
    )


def _events(folder):
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_evaluate_checkpoint_outputs(setup):
    out = setup["root"] / "eval"
    writer = tf.summary.create_file_writer(str(out))
    result = eval_lib.evaluate_checkpoint(
        setup["detector"],
        setup["checkpoint"],
        setup["dataset"],
        setup["label_map"],
        setup["groundtruth"],
        evidence=setup["evidence"],
        out_dir=str(out),
        summary_writer=writer,
        num_images=2,
        progress=False,
    )
    csv_path, json_path = out / "ckpt-7_detections.csv", out / "ckpt-7_results.json"
    report = json.loads(json_path.read_text())
    # The JSON is the evaluation of the CSV as written; step = the checkpoint number.
    again = ava_eval.evaluate(
        setup["groundtruth"], str(csv_path), setup["label_map"], evidence=setup["evidence"]
    )
    assert report["mAP@0.5IOU"] == again.map == result.map
    assert report["step"] == 7 and report["checkpoint"].endswith("ckpt-7")
    rows = ava.read_annotations(str(csv_path), kind="detections")[0]
    # 5 keyframes x at most 10 detections x 15 classes, every row one of the label map's ids.
    assert 0 < len(rows) <= 5 * 10 * 15
    assert set(rows.action_id.tolist()) <= set(setup["label_map"].ids)
    assert sorted(set(rows.timestamp.tolist())) == [2, 3, 4, 5, 6]
    tags = _events(out).Tags()
    assert "eval/keyframes" in tags["tensors"]
    acc = _events(out)
    scalar = acc.Tensors("eval/mAP@0.5IOU")
    assert scalar[0].step == 7
    assert float(tf.make_ndarray(scalar[0].tensor_proto)) == pytest.approx(result.map, abs=1e-7)
    assert "eval/per_class/12_stand" in tags["tensors"]
    assert "eval/evidence/self" in tags["tensors"]
    image = acc.Tensors("eval/keyframes")[0]
    # Image summaries: [width, height, png_1, png_2]; two keyframes drawn on the stored frames
    # (not the model's 64x64 input), scaled to a short side of 448, a legend strip below.
    encoded = tf.make_ndarray(image.tensor_proto)
    rows_, samples = eval_lib.predict_dataset(
        setup["detector"], setup["dataset"], setup["label_map"].ids, num_images=2, progress=False
    )
    # The source is the stored keyframe JPEG (the tiny preset stores 64x64 frames).
    record = next(
        iter(tf.data.TFRecordDataset(sorted(str(p) for p in (setup["root"] / "rec").glob("val-*"))))
    )
    ex = parse_example(record, num_classes=setup["label_map"].num_classes)
    stored = tf.io.decode_jpeg(ex["frames"][ex["keyframe_frame"]]).numpy()
    source = samples[0]["source"]
    np.testing.assert_array_equal(source, stored)
    scaled = render.scale_frame(source)
    assert min(scaled.shape[:2]) == 448
    width, height = int(encoded[0]), int(encoded[1])
    assert width == scaled.shape[1] and height > scaled.shape[0] and len(encoded) == 4
    png = tf.io.decode_png(encoded[2]).numpy()
    assert png.shape == (height, width, 3)
    # The ground truth of the first keyframe (the batch's valid boxes) is drawn dashed.
    batch = next(iter(setup["dataset"]))
    gt = batch["box_mask"][0].numpy()
    np.testing.assert_array_equal(samples[0]["gt_boxes"], batch["boxes"][0].numpy()[gt])
    assert len(samples[0]["gt_boxes"]) > 0 and samples[0]["gt_labels"].sum() > 0
    top, left, _, _ = visualize.box_to_pixels(samples[0]["gt_boxes"][0], *scaled.shape[:2])
    edge = png[top, left : left + 40]
    assert {tuple(p) for p in edge} <= set(visualize.GT_COLOURS) | {
        visualize.colour(r) for r in range(10)
    }  # dashes, or a prediction's box drawn over


def test_restore_reproduces_the_saved_model(setup):
    detector, batch = setup["detector"], next(iter(setup["dataset"]))
    saved = detector(batch, training=False)["action_scores"].numpy()
    originals = [v.numpy() for v in detector.weights]
    try:
        for v in detector.weights:  # every weight changed, then restored from ckpt-7
            v.assign(v * 0.5 + 0.01)
        eval_lib.restore(detector, setup["checkpoint"])
        np.testing.assert_allclose(
            detector(batch, training=False)["action_scores"], saved, atol=1e-5
        )
    finally:
        for v, value in zip(detector.weights, originals):
            v.assign(value)


def test_restore_errors(setup, tmp_path):
    with pytest.raises(ValueError, match="no checkpoint"):
        eval_lib.restore(setup["detector"], str(tmp_path / "ckpt-3"))
    unrelated = tf.train.CheckpointManager(
        tf.train.Checkpoint(x=tf.Variable(1.0)), str(tmp_path), 1
    ).save()
    with pytest.raises(ValueError, match="holds no weights of this model"):
        eval_lib.restore(setup["detector"], unrelated)


def test_count_keyframes_and_step(setup, tmp_path):
    assert eval_lib.count_keyframes(str(setup["root"] / "rec" / "val-*")) == 5
    assert eval_lib.count_keyframes(str(tmp_path / "none-*")) is None
    # A copied folder still counts: its manifest's shard paths name the original folder.
    moved = tmp_path / "moved"
    shutil.copytree(setup["root"] / "rec", moved)
    assert eval_lib.count_keyframes(str(moved / "val-*")) == 5
    assert eval_lib.checkpoint_step(setup["checkpoint"]) == 7
    step = tf.Variable(1234, dtype=tf.int64)
    path = tf.train.Checkpoint(step=step).save(str(tmp_path / "ckpt"))  # ckpt-1
    assert eval_lib.checkpoint_step(path) == 1234


def test_wait_for_checkpoints(tmp_path):
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(v=tf.Variable(0.0)), str(tmp_path), max_to_keep=5
    )
    first, second = manager.save(), manager.save()
    start = time.monotonic()
    seen = []
    for path in eval_lib.wait_for_checkpoints(str(tmp_path), timeout_s=1.0, poll_s=0.1):
        seen.append(path)
        if len(seen) == 2:  # a third one arrives while we "evaluate" the second
            threading.Timer(0.3, manager.save).start()
    assert seen[:2] == [first, second] and seen[2].endswith("ckpt-3") and len(seen) == 3
    assert 1.0 <= time.monotonic() - start < 10.0
    assert list(eval_lib.wait_for_checkpoints(str(tmp_path), 0.0, done=seen)) == []


def test_reduce_attention_takes_last_layer_head_mean_central_slice():
    # [B=1, N=2, layers=2, heads=2, T'=3, H'=1, W'=2]: value = 1000n + 100l + 10h + t (+ w/10).
    n, l, h, t, w = np.meshgrid(*[np.arange(s) for s in (2, 2, 2, 3, 2)], indexing="ij")
    attention = (1000 * n + 100 * l + 10 * h + t + 0.1 * w)[None, :, :, :, :, None, :]
    maps = eval_lib.attention_per_detection(
        tf.constant(attention, tf.float32), tf.constant([[1, 0, 1]])
    )
    # Detection 0 <- RoI 1: 1000 + 100 (last layer) + mean(0, 10) + t=1 + w/10.
    np.testing.assert_allclose(
        maps.numpy()[0, :, 0], [[1106.0, 1106.1], [106.0, 106.1], [1106.0, 1106.1]], rtol=1e-6
    )
    assert eval_lib.attention_per_detection(tf.zeros([1, 2, 3]), tf.constant([[0]])) is None


def test_render_samples_with_attention():
    frame = np.full((8, 8, 3), 50, np.uint8)
    sample = dict(
        frame=frame,
        video_id="v",
        timestamp=1,
        boxes=np.array([[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]], np.float32),
        scores=np.array([0.9, 0.8], np.float32),
        action_scores=np.array([[0.9, 0.1], [0.2, 0.7]], np.float32),
        attention=np.zeros((2, 2, 2), np.float32),
    )
    no_attention = dict(sample, frame=np.full((16, 8, 3), 50, np.uint8), attention=None)
    images, heat = eval_lib.render_samples(
        [sample, no_attention], ["a", "b"], top_k=0, attention_detections=3, min_short_side=32
    )
    # No source frame: the 8x8 model frame scaled to 32x32 (16x8 -> 64x32), a legend below;
    # one canvas for both, padded.
    key = render.render_keyframe(
        frame,
        sample["boxes"],
        sample["scores"],
        sample["action_scores"],
        ["a", "b"],
        title="v t=1s",
        top_k=0,
        min_short_side=32,
    )
    tall = render.render_keyframe(
        no_attention["frame"],
        sample["boxes"],
        sample["scores"],
        sample["action_scores"],
        ["a", "b"],
        title="v t=1s",
        top_k=0,
        min_short_side=32,
    )
    assert tall.shape[:2][1] == 32 and tall.shape[0] > 64
    assert images.shape == (2, max(key.shape[0], tall.shape[0]), 32, 3)
    np.testing.assert_array_equal(images[0, : key.shape[0]], key)
    np.testing.assert_array_equal(images[1, : tall.shape[0]], tall)
    assert tuple(images[0, 0, 5]) == visualize.colour(0)  # box 0 by score: rank 0
    assert tuple(images[0, 31, 31]) == visualize.colour(1)  # box 1: rank 1
    # Attention only for the sample that has it: both detections (not 3), stacked: each row
    # the frame with its detection, a gap, the heat panel beside it.
    assert heat.shape[0] == 1
    row = render.render_attention(
        frame,
        np.zeros((2, 2)),
        sample["boxes"][0],
        0.9,
        sample["action_scores"][0],
        ["a", "b"],
        top_k=0,
        title="v t=1s, detection 1 (person 0.90)",
        min_short_side=32,
    )
    assert heat.shape[1:3] == (2 * row.shape[0], row.shape[1])
    np.testing.assert_array_equal(heat[0, : row.shape[0]], row)
    # Zero attention: the heat panel is the frame with only its own detection's box.
    gap = row.shape[1] - 64
    assert tuple(heat[0, 0, 32 + gap]) == visualize.colour(0)
    assert tuple(heat[0, 20, 32 + gap + 20]) == (50, 50, 50)
    second = heat[0, row.shape[0] :]
    assert tuple(second[31, 31]) == visualize.colour(0) and tuple(second[0, 0]) == (50, 50, 50)


def test_scalars_tags_and_values(tmp_path):
    (tmp_path / "gt.csv").write_text("v,0001,0.1,0.1,0.5,0.5,1,0\n")
    (tmp_path / "det.csv").write_text("v,0001,0.1,0.1,0.5,0.5,1,0.5\n")
    result = ava_eval.evaluate(
        str(tmp_path / "gt.csv"), str(tmp_path / "det.csv"), {1: "bend/bow (at the waist)", 2: "x"}
    )
    tags = eval_lib.scalars(result)
    assert tags["eval/mAP@0.5IOU"] == 1.0
    assert tags["eval/per_class/1_bend_bow_at_the_waist"] == 1.0
    assert "eval/per_class/2_x" not in tags  # no ground truth: no scalar
    assert tags["eval/localization@0.5"] == 1.0 and tags["eval/persons/1"] == 1.0
    assert tags["eval/category/pose"] == 1.0


class _CountingMemoryHead:
    """A stand-in for a memory head: `stored` counts the keyframes written since the last reset."""

    inference_passes = 2
    inference_state_key = ()  # as `ActionHead`'s: no state a trace captures is replaced

    def __init__(self):
        self.stored = tf.Variable(0.0)

    def reset_inference_memory(self):
        self.stored.assign(0.0)


class _ReadsThenWrites:
    """Scores each keyframe's one detection with what the memory held when it was read, then
    writes the batch (as AIA reads before it writes)."""

    def __init__(self, passes=2):
        self.head = _CountingMemoryHead()
        self.head.inference_passes = passes

    def __call__(self, batch, training=False):
        b = tf.shape(batch["timestamp"])[0]
        read = tf.fill([b, 1, 1], self.head.stored.read_value())
        self.head.stored.assign_add(tf.cast(b, tf.float32))
        return dict(
            detection_boxes=tf.tile(tf.constant([[[0.1, 0.1, 0.9, 0.9]]]), [b, 1, 1]),
            detection_scores=tf.ones([b, 1]),
            action_scores=read / 100.0 + 0.01,
            num_detections=tf.ones([b], tf.int32),
        )


def test_predict_dataset_empty_memory_scores_every_batch_on_an_empty_memory():
    dataset = tf.data.Dataset.from_tensor_slices(
        dict(video_id=tf.constant(["v"] * 6), timestamp=tf.range(6))
    ).batch(2)
    rows, _ = eval_lib.predict_dataset(
        _ReadsThenWrites(), dataset, [1], num_images=0, progress=False
    )
    # Default: a pass fills the memory (6 keyframes), then the scoring pass reads 6, 8, 10.
    np.testing.assert_allclose(rows["score"], [0.07, 0.07, 0.09, 0.09, 0.11, 0.11], atol=1e-6)
    rows, _ = eval_lib.predict_dataset(
        _ReadsThenWrites(), dataset, [1], num_images=0, progress=False, empty_memory=True
    )
    np.testing.assert_allclose(rows["score"], [0.01] * 6, atol=1e-6)
    with pytest.raises(ValueError, match="no inference memory"):
        eval_lib.predict_dataset(
            _ReadsThenWrites(passes=1), dataset, [1], progress=False, empty_memory=True
        )


def test_aia_checkpoint_leaves_the_eval_table_out_and_two_pass_eval_refills_it(setup, tmp_path):
    """AIA's eval memory is not checkpointed (rebuilt by the first evaluation pass, issue 31):
    a restored model scores the split as the saved one did; the train table is kept."""
    options = dict(blocks="P,M", memory_window=2, memory_size=16, hidden_size=8, dropout=0.0)
    make = lambda seed: build_detector(  # noqa: E731
        num_classes=setup["label_map"].num_classes,
        seed=0,
        **{**TINY_MODEL, "head": "aia", "head_options": options, "proposals": "gt"},
    )
    tf.keras.utils.set_random_seed(0)
    detector = make(0)
    eval_lib.build_detector_on(detector, setup["dataset"])
    tables = detector.head.memory
    rng = np.random.default_rng(0)
    for v in detector.head.trainable_variables:  # untrained blocks start as identities
        v.assign(rng.normal(scale=0.3, size=v.shape))
    tables.train.features.assign(rng.normal(size=tables.train.features.shape))
    tables.train.video.assign(np.arange(16) % 3)
    ids = setup["label_map"].ids
    rows, _ = eval_lib.predict_dataset(detector, setup["dataset"], ids, progress=False)
    assert (tables.eval.video.numpy()[:5] >= 0).all()  # the eval table is filled
    path = tf.train.Checkpoint(model=checkpointable(detector)).save(str(tmp_path / "ckpt"))

    saved = [
        (name, shape) for name, shape in tf.train.list_variables(path) if name.startswith("model/")
    ]
    assert (
        len(saved)
        == len(detector.variables) - len(tables.eval.variables)
        == len(detector.variables) - 6
    )
    table_shape = list(tables.train.features.shape)
    assert [shape for _, shape in saved].count(table_shape) == 1  # the train table only

    tf.keras.utils.set_random_seed(1)
    fresh = make(1)
    eval_lib.build_detector_on(fresh, setup["dataset"])
    before = fresh.head.memory.eval.video.numpy()  # the build call's writes
    assert (before != tables.eval.video.numpy()).any()
    eval_lib.restore(fresh, path)
    np.testing.assert_array_equal(
        fresh.head.memory.train.features.numpy(), tables.train.features.numpy()
    )
    np.testing.assert_array_equal(fresh.head.memory.eval.video.numpy(), before)  # not restored
    again, _ = eval_lib.predict_dataset(fresh, setup["dataset"], ids, progress=False)
    np.testing.assert_array_equal(again["timestamp"], rows["timestamp"])
    np.testing.assert_allclose(again["score"], rows["score"], atol=1e-5)
    # The memory pass matters: scored on an empty memory, the same model gives other scores.
    empty, _ = eval_lib.predict_dataset(
        fresh, setup["dataset"], ids, progress=False, empty_memory=True
    )
    assert np.abs(np.sort(empty["score"]) - np.sort(rows["score"])).max() > 1e-4
