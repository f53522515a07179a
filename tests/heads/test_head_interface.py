"""The public head interface of `ActionHead` (heads/base.py): every head has it, each answers
for itself, and the detector and evaluation read it (no getattr/hasattr probing)."""

import numpy as np
import tensorflow as tf

from action_tx import eval_lib
from action_tx.heads import HEADS
from action_tx.heads.aia import AIAHead
from action_tx.heads.aia_memory import FeatureMemory, MemoryTables
from action_tx.heads.base import ActionHead, HeadInputs
from action_tx.heads.stage import StageHead
from action_tx.model_builder import build_detector


def _inputs(b=2, n=3, c=4):
    rng = np.random.default_rng(0)
    return HeadInputs(
        features=tf.zeros([b, 1, 3, 3, c]),
        rois=tf.constant(np.tile([[0.1, 0.1, 0.5, 0.5]], [b, n, 1]), tf.float32),
        roi_mask=tf.ones([b, n], tf.bool),
        roi_scores=tf.ones([b, n]),
        roi_features=tf.constant(rng.normal(size=[b, n, 1, 1, 1, c]), tf.float32),
        video_index=tf.constant([0, 0]),
        timestamp=tf.constant([5, 6]),
        keyframe_index=tf.constant([1, 2]),
    )


def test_every_head_is_an_action_head_with_the_defaults_it_does_not_override():
    for name, cls in HEADS.items():
        assert issubclass(cls, ActionHead), name
    linear = HEADS["linear"](num_classes=3)
    assert (linear.uses_objects, linear.inference_passes, linear.memory, linear.tail) == (
        False,
        1,
        None,
        None,
    )
    linear.reset_inference_memory()  # a no-op without a memory
    assert not eval_lib.has_inference_memory(linear)
    i3d = HEADS["i3d"](num_classes=3, width_multiplier=0.05)
    tx_i3d = HEADS["tx_i3d"](num_classes=3, width_multiplier=0.05)
    assert i3d.tail is not None and tx_i3d.tail is tx_i3d.i3d_head.tail
    assert HEADS["tx"](num_classes=3).tail is None


def test_uses_objects_follows_the_heads_options():
    assert AIAHead(3, memory_size=8).uses_objects  # P,O,M,P,O,M
    assert not AIAHead(3, blocks="P,M", memory_size=8).uses_objects
    assert StageHead(3).uses_objects and not StageHead(3, use_objects=False).uses_objects
    # The detector pools object tubes exactly when its head reads them (unless told).
    for blocks, pooled in (("P,O", True), ("P", False)):
        det = build_detector(
            num_classes=3,
            head="aia",
            proposals="gt",
            head_options=dict(blocks=blocks, memory_window=0),
        )
        assert det.use_objects is pooled
    det = build_detector(
        num_classes=3,
        head="aia",
        proposals="gt",
        use_objects=False,
        head_options=dict(blocks="P,O", memory_window=0),
    )
    assert det.use_objects is False


def test_aia_memory_tables_and_inference_reset():
    head = AIAHead(3, blocks="P,M", memory_window=1, memory_size=8, hidden_size=4, dropout=0.0)
    assert head.memory is None and head.inference_passes == 2  # tables come with build
    assert eval_lib.has_inference_memory(head)
    head(_inputs(), training=False)  # writes the eval table
    tables = head.memory
    assert isinstance(tables, MemoryTables)
    assert isinstance(tables.train, FeatureMemory) and tables.train is not tables.eval
    assert (tables.train.num_keyframes, tables.train.max_persons, tables.train.dim) == (8, 5, 4)
    np.testing.assert_array_equal(tables.eval.video.numpy(), [-1, 0, 0, -1, -1, -1, -1, -1])
    tables.train.write([3], [0], [7], np.ones([1, 1, 4], np.float32), [[True]])
    head.reset_inference_memory()  # eval forgotten, train kept
    assert (tables.eval.video.numpy() == -1).all()
    np.testing.assert_array_equal(tables.train.video.numpy()[3], 0)
    # Without a table: no memory, one pass, nothing to reset.
    plain = AIAHead(3, blocks="P,M", memory_window=0, hidden_size=4)
    plain(_inputs(), training=False)
    assert plain.memory is None and plain.inference_passes == 1
    plain.reset_inference_memory()
