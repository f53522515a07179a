import numpy as np
import tensorflow as tf

from object_detection_ext.postprocess import postprocess

ROIS = np.array([[[0, 0, 0.5, 0.5], [0, 0, 0.5, 0.45], [0.5, 0.5, 1, 1], [0, 0, 1, 1]]], np.float32)
MASK = np.array([[True, True, True, False]])
SCORES = np.array([[0.9, 0.8, 0.7, 1.0]], np.float32)
PROBS = np.array([[[0.5, 1], [1, 1], [0.2, 0.4], [1, 1]]], np.float32)


def test_postprocess_nms_scores_and_refinement(run):
    deltas = np.zeros([1, 4, 4], np.float32)
    deltas[0, 2, 0] = 1.0  # dy = 1 / 10 of the height .5: [.55, .5, 1.05, 1] -> clipped at 1
    out = run(postprocess, ROIS, MASK, SCORES, PROBS, deltas, nms_iou=0.5, max_detections=3)
    # RoI 1 overlaps RoI 0 at IoU .9 and is suppressed; RoI 3 is padding.
    np.testing.assert_allclose(
        out["detection_boxes"][0], [[0, 0, 0.5, 0.5], [0.55, 0.5, 1, 1], [0, 0, 0, 0]], atol=1e-5
    )
    np.testing.assert_allclose(out["detection_scores"][0], [0.9, 0.7, 0.0], rtol=1e-6)
    np.testing.assert_allclose(
        out["action_scores"][0], [[0.45, 0.9], [0.14, 0.28], [0, 0]], rtol=1e-5
    )
    np.testing.assert_array_equal(out["num_detections"], [2])
    np.testing.assert_array_equal(out["detection_indices"][0, :2], [0, 2])


def test_postprocess_without_deltas_and_score_threshold(run):
    out = run(
        postprocess, ROIS, MASK, SCORES, PROBS, nms_iou=0.95, max_detections=4, score_threshold=0.75
    )
    np.testing.assert_array_equal(out["num_detections"], [2])
    np.testing.assert_allclose(out["detection_boxes"][0, :2], ROIS[0, :2], atol=1e-6)
    np.testing.assert_allclose(out["action_scores"][0, 1], [0.8, 0.8], rtol=1e-6)


def test_postprocess_exports_in_a_saved_model(tmp_path):
    class Module(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([None, None, 4], tf.float32),
                tf.TensorSpec([None, None], tf.bool),
                tf.TensorSpec([None, None], tf.float32),
                tf.TensorSpec([None, None, 2], tf.float32),
            ]
        )
        def detect(self, rois, mask, scores, probs):
            return postprocess(rois, mask, scores, probs, nms_iou=0.5, max_detections=3)

    tf.saved_model.save(Module(), str(tmp_path))
    loaded = tf.saved_model.load(str(tmp_path))
    out = loaded.detect(
        tf.constant(ROIS), tf.constant(MASK), tf.constant(SCORES), tf.constant(PROBS)
    )
    np.testing.assert_array_equal(out["num_detections"].numpy(), [2])
    np.testing.assert_allclose(out["detection_scores"].numpy()[0], [0.9, 0.7, 0.0], rtol=1e-6)


# Class-specific NMS (HGRNN §3.3) on the same boxes, IoU 0.5. Class scores = person x prob:
#   class 0: A .9 x .5 = .45, B .8 x 1 = .8, C .7 x .2 = .14 -> B kept, A suppressed (IoU .9)
#   class 1: A .9,            B .8,          C .28           -> A kept, B suppressed
# so A and B both survive (one class each) and C survives both; rows by person score.
def test_class_specific_nms_zeroes_suppressed_classes(run):
    out = run(
        postprocess,
        ROIS,
        MASK,
        SCORES,
        PROBS,
        nms_iou=0.5,
        max_detections=4,
        class_specific_nms=True,
    )
    np.testing.assert_array_equal(out["num_detections"], [3])
    np.testing.assert_array_equal(out["detection_indices"][0, :3], [0, 1, 2])
    np.testing.assert_allclose(
        out["detection_boxes"][0], np.concatenate([ROIS[0, :3], np.zeros([1, 4])]), atol=1e-6
    )
    np.testing.assert_allclose(out["detection_scores"][0], [0.9, 0.8, 0.7, 0.0], rtol=1e-6)
    np.testing.assert_allclose(
        out["action_scores"][0], [[0, 0.9], [0.8, 0], [0.14, 0.28], [0, 0]], rtol=1e-5, atol=1e-7
    )


def test_class_specific_nms_caps_each_class_and_the_rows(run):
    # One box per class: class 0 keeps B, class 1 keeps A; the single row is A (best person
    # score), carrying only its class-1 score.
    out = run(
        postprocess,
        ROIS,
        MASK,
        SCORES,
        PROBS,
        nms_iou=0.5,
        max_detections=1,
        class_specific_nms=True,
    )
    np.testing.assert_array_equal(out["num_detections"], [1])
    np.testing.assert_allclose(out["detection_boxes"][0], ROIS[0, :1], atol=1e-6)
    np.testing.assert_allclose(out["action_scores"][0], [[0, 0.9]], rtol=1e-5, atol=1e-7)
    # Person score threshold .75 drops C; no overlap suppression at IoU .95: A and B keep all.
    out = run(
        postprocess,
        ROIS,
        MASK,
        SCORES,
        PROBS,
        nms_iou=0.95,
        max_detections=3,
        score_threshold=0.75,
        class_specific_nms=True,
    )
    np.testing.assert_array_equal(out["num_detections"], [2])
    np.testing.assert_allclose(
        out["action_scores"][0], [[0.45, 0.9], [0.8, 0.8], [0, 0]], rtol=1e-5, atol=1e-7
    )


def test_class_specific_nms_exports_in_a_saved_model(tmp_path):
    class Module(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([None, None, 4], tf.float32),
                tf.TensorSpec([None, None], tf.bool),
                tf.TensorSpec([None, None], tf.float32),
                tf.TensorSpec([None, None, 2], tf.float32),
            ]
        )
        def detect(self, rois, mask, scores, probs):
            return postprocess(
                rois, mask, scores, probs, nms_iou=0.5, max_detections=4, class_specific_nms=True
            )

    tf.saved_model.save(Module(), str(tmp_path))
    loaded = tf.saved_model.load(str(tmp_path))
    out = loaded.detect(
        tf.constant(ROIS), tf.constant(MASK), tf.constant(SCORES), tf.constant(PROBS)
    )
    np.testing.assert_array_equal(out["num_detections"].numpy(), [3])
    np.testing.assert_allclose(
        out["action_scores"].numpy()[0, :2], [[0, 0.9], [0.8, 0]], rtol=1e-5, atol=1e-7
    )
