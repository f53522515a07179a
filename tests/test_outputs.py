"""detections_to_ava: rows per detection and class, thin boxes dropped."""

import numpy as np

from action_tx.outputs import detections_to_ava


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
