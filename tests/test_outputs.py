"""detections_to_ava: rows per detection and class, thin boxes dropped; detections_to_json:
x1,y1,x2,y2 boxes, actions best first above the threshold."""

import numpy as np

from action_tx.outputs import detections_to_ava, detections_to_json


def test_rows_and_thin_boxes():
    outputs = {
        # Keyframe 0: a real box, a box clipped to zero width at the frame's edge, padding.
        "detection_boxes": np.array(
            [[[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 0.4, 0.0004], [0.0, 0.0, 0.0, 0.0]]], np.float32
        ),
        "action_scores": np.array([[[0.9, 0.0], [0.8, 0.7], [0.5, 0.5]]], np.float32),
        "num_detections": np.array([2]),
    }
    rows = detections_to_ava(outputs, [b"vid"], [902], class_ids=[11, 80])
    # Only the real box with its one non-zero score: class index 0 -> AVA id 11.
    assert list(rows["video_id"]) == ["vid"] and list(rows["timestamp"]) == [902]
    assert list(rows["action_id"]) == [11]
    np.testing.assert_allclose(rows["score"], [0.9])
    np.testing.assert_allclose(rows["boxes"], [[0.1, 0.2, 0.5, 0.6]])


def test_json_order_threshold_and_rounding():
    dets = detections_to_json(
        np.array([[0.1, 0.2, 0.51234, 0.6]], np.float32),
        np.array([0.87654], np.float32),
        np.array([[0.2, 0.9, 0.2, 0.01]], np.float32),
        class_ids=[11, 12, 14, 80],
        class_names=["a", "b", "c", "d"],
        min_score=0.01,
    )
    assert len(dets) == 1
    assert dets[0]["box_x1y1x2y2"] == [0.2, 0.1, 0.6, 0.5123]
    assert dets[0]["person_score"] == 0.8765
    # Best first, ties in class order; 0.01 is not above min_score.
    assert [(a["id"], a["name"]) for a in dets[0]["actions"]] == [(12, "b"), (11, "a"), (14, "c")]
    assert [a["score"] for a in dets[0]["actions"]] == [0.9, 0.2, 0.2]
