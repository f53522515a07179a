"""eval_lib.predict_function: one inference tf.function per model, traced once for repeated
evaluations (issue 29: re-tracing on every call dominated the heads suite's evaluations)."""

import gc
import weakref

import numpy as np
import pytest
import tensorflow as tf

from action_tx import eval_lib
from action_tx.checkpointing import checkpointable
from action_tx.data import ava, convert, synthetic
from action_tx.data.pipeline import build_dataset
from action_tx.model_builder import build_detector
from test_eval_lib import TINY_MODEL  # the same tiny detector as the eval-lib tests


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The val split of 2 tiny videos of 8 s (batches of 2 keyframes) and its label map."""
    root = tmp_path_factory.mktemp("predict_cache")
    synthetic.generate(str(root / "syn"), preset="tiny", seed=0, check=False, videos=2, seconds=8)
    convert.convert_split(
        str(root / "syn"), "val", str(root / "rec" / "val@1"), num_frames=8, progress=False
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
    )
    return dict(root=root, label_map=label_map, dataset=dataset)


def _detector(setup, seed):
    tf.keras.utils.set_random_seed(seed)
    detector = build_detector(num_classes=setup["label_map"].num_classes, seed=seed, **TINY_MODEL)
    eval_lib.build_detector_on(detector, setup["dataset"])
    return detector


def _predict(detector, setup):
    rows, _ = eval_lib.predict_dataset(
        detector, setup["dataset"], setup["label_map"].ids, num_images=0, progress=False
    )
    return rows


def test_a_second_evaluation_reuses_the_traces_and_gives_the_same_rows(setup):
    detector = _detector(setup, 0)
    first = _predict(detector, setup)
    predict = eval_lib.predict_function(detector)
    traces = predict.experimental_get_tracing_count()
    assert traces >= 1 and len(first["score"]) > 0
    second = _predict(detector, setup)
    assert eval_lib.predict_function(detector) is predict
    assert predict.experimental_get_tracing_count() == traces  # no new trace
    for key in ("video_id", "timestamp", "action_id"):
        np.testing.assert_array_equal(second[key], first[key])
    np.testing.assert_allclose(second["boxes"], first["boxes"], atol=1e-6)
    np.testing.assert_allclose(second["score"], first["score"], atol=1e-6)


def test_a_restored_checkpoint_is_scored_by_the_cached_function(setup, tmp_path):
    """Seeds of one run share a model: each checkpoint restored into it must be scored with
    its own weights (the traces read the variables, not copies of them)."""
    other = _detector(setup, 1)
    path = tf.train.Checkpoint(model=checkpointable(other)).save(str(tmp_path / "ckpt"))
    expected = _predict(other, setup)
    detector = _detector(setup, 0)
    before = _predict(detector, setup)
    traces = eval_lib.predict_function(detector).experimental_get_tracing_count()
    eval_lib.restore(detector, path)
    after = _predict(detector, setup)
    assert eval_lib.predict_function(detector).experimental_get_tracing_count() == traces
    assert eval_lib.predict_function(detector) is not eval_lib.predict_function(other)
    np.testing.assert_allclose(after["score"], expected["score"], atol=1e-5)
    assert len(after["score"]) != len(before["score"]) or not np.allclose(
        after["score"], before["score"], atol=1e-4
    )


def test_the_cache_does_not_keep_a_model_alive(setup):
    detector = _detector(setup, 2)
    _predict(detector, setup)
    assert detector in eval_lib._PREDICT_FUNCTIONS
    alive = weakref.ref(detector)
    del detector
    gc.collect()
    assert alive() is None


class _Head:
    inference_passes = 1
    inference_state_key = ()

    def reset_inference_memory(self):
        pass


class _CapturedScore:
    """A model whose score is a Python-held tensor that a trace captures as a constant (as
    ACAR's bank tables are captured variable objects)."""

    def __init__(self, score):
        self.head, self.score = _Head(), tf.constant(score)

    def __call__(self, batch, training=False):
        b = tf.shape(batch["timestamp"])[0]
        return dict(
            detection_boxes=tf.tile(tf.constant([[[0.1, 0.1, 0.9, 0.9]]]), [b, 1, 1]),
            detection_scores=tf.ones([b, 1]),
            action_scores=tf.fill([b, 1, 1], self.score),
            num_detections=tf.ones([b], tf.int32),
        )


def test_a_new_inference_state_key_re_traces():
    dataset = tf.data.Dataset.from_tensor_slices(
        dict(video_id=tf.constant(["v"] * 4), timestamp=tf.range(4))
    ).batch(2)
    model = _CapturedScore(0.5)

    def scores():
        return eval_lib.predict_dataset(model, dataset, [1], num_images=0, progress=False)[0][
            "score"
        ]

    np.testing.assert_allclose(scores(), [0.5] * 4)
    model.score = tf.constant(0.25)  # replaced, not assigned: the trace still holds 0.5
    np.testing.assert_allclose(scores(), [0.5] * 4)
    model.head.inference_state_key = (1,)  # what ACARHead.set_bank does
    np.testing.assert_allclose(scores(), [0.25] * 4)
