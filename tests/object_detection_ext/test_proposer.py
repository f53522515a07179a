import numpy as np
import pytest
import tensorflow as tf

from object_detection_ext.proposer import Proposer, select_proposals

BATCH = {
    "boxes": tf.constant([[[0.1, 0.1, 0.5, 0.5], [0, 0, 0, 0]]]),
    "box_mask": tf.constant([[True, False]]),
    "proposals": tf.constant([[[0.2, 0.2, 0.6, 0.6]]]),
    "proposal_scores": tf.constant([[0.7]]),
    "proposal_mask": tf.constant([[True]]),
}


def test_select_gt_and_external():
    boxes, scores, mask = select_proposals("gt", BATCH)
    np.testing.assert_allclose(boxes.numpy(), BATCH["boxes"].numpy())
    np.testing.assert_allclose(scores.numpy(), [[1.0, 0.0]])
    np.testing.assert_array_equal(mask.numpy(), [[True, False]])
    boxes, scores, mask = select_proposals("external", BATCH)
    np.testing.assert_allclose(scores.numpy(), [[0.7]], rtol=1e-6)
    with pytest.raises(KeyError, match="needs batch\\['proposal_scores'\\]"):
        select_proposals("external", {"proposals": BATCH["proposals"]})
    with pytest.raises(ValueError, match="mode must be one of"):
        select_proposals("oracle", BATCH)


def test_proposer_rpn_uses_central_slice_and_round_trips():
    layer = Proposer(
        mode="rpn",
        filters=8,
        sizes=(32.0,),
        aspect_ratios=(0.5, 1.0),
        pre_nms_top_k=50,
        post_nms_top_k=10,
    )
    base = tf.random.stateless_normal([1, 3, 4, 4, 6], seed=[0, 1])
    out = layer(base)
    assert out["proposals"].shape == (1, 10, 4) and out["anchors"].shape == (4 * 4 * 2, 4)
    assert out["rpn_objectness"].shape == (1, 32) and out["rpn_deltas"].shape == (1, 32, 4)
    # Changing the non-central slices (t = 0, 2 of T' = 3) must not change the proposals.
    other = tf.concat([base[:, :1] + 5.0, base[:, 1:2], base[:, 2:] - 5.0], axis=1)
    again = tf.function(lambda f: layer(f))(other)
    np.testing.assert_allclose(again["proposals"].numpy(), out["proposals"].numpy(), atol=1e-6)
    boxes = out["proposals"].numpy()[out["proposal_mask"].numpy()]
    assert (boxes >= 0).all() and (boxes <= 1).all()
    assert np.all(np.diff(out["proposal_scores"].numpy()[0][out["proposal_mask"].numpy()[0]]) <= 0)
    clone = Proposer.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_proposer_gt_mode_has_no_weights():
    layer = Proposer(mode="gt")
    out = layer(tf.zeros([1, 2, 3, 3, 4]), BATCH)
    np.testing.assert_allclose(out["proposal_scores"].numpy(), [[1.0, 0.0]])
    assert not layer.weights
    with pytest.raises(ValueError, match="mode must be one of"):
        Proposer(mode="oracle")
