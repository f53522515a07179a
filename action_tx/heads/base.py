"""The head contract: what every relational head receives, returns and tells the model.

`ActionDetector` builds a `HeadInputs` after the trunk, the proposer and the RoI extractor, calls
`head(inputs, training=...)` and reads a `HeadOutputs`. Both are NamedTuples, so Keras 3 and
`tf.function` treat them as nested structures (fields that a head does not use stay None).
Every head subclasses `ActionHead`, whose attributes are the only way the code around a head
learns what it needs (object tubes, evaluation passes, a memory): nothing probes a head with
getattr/hasattr or reaches into its private attributes.
"""

from typing import NamedTuple, Optional

import keras
import tensorflow as tf


class HeadInputs(NamedTuple):
    """Everything a head may read. B batch, N RoIs (padded), O objects (padded), C channels.

    features:       float32 [B, T', H', W', C]   trunk features (Mixed_4f cut).
    rois:           float32 [B, N, 4]            normalized [y1, x1, y2, x2] RoIs on the keyframe.
    roi_mask:       bool    [B, N]               true for real RoIs, false for padding.
    roi_features:   float32 [B, N, T', S, S, C]  ST-RoIAlign tubes (S = 7 by default); only
                                                 the central slice, [B, N, 1, S, S, C], for a
                                                 head whose `roi_time_slices` is "centre".
    roi_scores:     float32 [B, N]               person score of each RoI (RPN objectness,
                                                 external detector score, or 1 for gt boxes;
                                                 RoIs sampled in training: IoU with the matched
                                                 ground truth, 0 for background).
    objects:        float32 [B, O, 4] or None    object boxes, normalized yxyx.
    object_mask:    bool    [B, O] or None
    object_features float32 [B, O, T', S, S, C] or None   ST-RoIAlign tubes of the objects.
    video_index:    int32   [B] or None          position of the video in the split.
    timestamp:      int32   [B] or None          keyframe time in seconds.
    keyframe_index: int32   [B] or None          global keyframe index (memory reads/writes).
    keyframe_mask:  bool    [B] or None          false for padded keyframes (feature-mode
                                                 batches); None = every keyframe is real.
    roi_labels:     float32 [B, N, num_classes] or None  training targets of the RoIs (only in
                                                 training; heads that tag memory entries with
                                                 their loss, AIA's AMU, read them).
    """

    features: tf.Tensor
    rois: tf.Tensor
    roi_mask: tf.Tensor
    roi_features: tf.Tensor
    roi_scores: Optional[tf.Tensor] = None
    objects: Optional[tf.Tensor] = None
    object_mask: Optional[tf.Tensor] = None
    object_features: Optional[tf.Tensor] = None
    video_index: Optional[tf.Tensor] = None
    timestamp: Optional[tf.Tensor] = None
    keyframe_index: Optional[tf.Tensor] = None
    keyframe_mask: Optional[tf.Tensor] = None
    roi_labels: Optional[tf.Tensor] = None


class HeadOutputs(NamedTuple):
    """What a head returns.

    logits:      float32 [B, N, num_classes]  action logits (sigmoid, or softmax over the pose
                                              classes when the loss says so).
    box_deltas:  float32 [B, N, 4] or None    class-agnostic box refinement, encoded like
                                              `object_detection_ext.box_ops.encode_boxes` with the
                                              second-stage weights; None = keep the RoI.
    attention:   float32 [B, N, ...] or None  attention maps for visualisation (head specific).
    actor_logits: float32 [B, N] or None      second-stage person logit ("is this RoI a person":
                                              the background class of a Faster R-CNN second
                                              stage, action_transformer.txt §3), 0 for padded
                                              RoIs; None for heads whose paper has no
                                              background class (the proposal score is kept).
    """

    logits: tf.Tensor
    box_deltas: Optional[tf.Tensor] = None
    attention: Optional[tf.Tensor] = None
    actor_logits: Optional[tf.Tensor] = None


class ActionHead(keras.layers.Layer):
    """Base class of the heads: `call(inputs: HeadInputs, training=None) -> HeadOutputs`, and
    the public interface the detector, the evaluation, the benchmarks and the tools use. A head
    overrides the members whose default does not describe it (a class attribute, or a property
    when it depends on the head's options).

    uses_objects: bool   the head reads object tubes (`HeadInputs.object_features`), so the
        model must pool them (batch `objects`). Default False.
    inference_passes: int   runs over an evaluation split: all but the last only fill the
        head's inference memory (`eval_lib.predict_dataset`). Default 1.
    memory: the head's long-term memory tables, None when it keeps none (default) or before
        they are built (AIA: `aia_memory.MemoryTables(train, eval)` of `FeatureMemory`).
    reset_inference_memory(): forgets every entry of the memory read at inference, before a
        split is evaluated; the training memory is kept. A no-op for a head without one.
    inference_state_key: changes whenever the head replaces state that a traced inference
        function captured as a constant or variable object (not by assigning variables): ACAR's
        `set_bank`. `eval_lib.predict_function` traces anew when it changes. Default ().
    tail: the Inception-I3D Mixed_5a-5c layers the head runs, where Kinetics weights load
        (`--init_checkpoint`, `i3d_checkpoint.detector_i3d_parts`), or None (default).
    roi_time_slices: str   "all" (default): `roi_features` are tubes over every time slice;
        "centre": the head reads only the temporally central slice T'//2, so the model pools
        only that slice ([B, N, 1, S, S, C]; Action Transformer's query, §3.2 "from the
        center clip": 1/T' of ST-RoIAlign's cost).
    tail_features(roi_features, training): each RoI's feature after `tail`, pooled as the head
        pools it before classifying (what `ActionDetector.detect_with_features` stores for the
        Mixed_5c layer). Raises ValueError for a head without a tail (default).
    """

    uses_objects = False
    inference_passes = 1
    roi_time_slices = "all"
    inference_state_key = ()
    tail = None

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Keras would cast every float field of HeadInputs to the compute dtype (bfloat16 under
        # mixed precision); `__call__` casts only the feature maps, so boxes and scores reach
        # the head in float32 (normalized coordinates need its resolution).
        self._convert_input_args = False

    def __call__(self, inputs, *args, **kwargs):
        if isinstance(inputs, HeadInputs):

            def cast(x):
                return None if x is None else tf.cast(x, self.compute_dtype)

            inputs = inputs._replace(
                features=cast(inputs.features),
                roi_features=cast(inputs.roi_features),
                object_features=cast(inputs.object_features),
            )
        return super().__call__(inputs, *args, **kwargs)

    @property
    def memory(self):
        return None

    def tail_features(self, roi_features, training=None):
        """roi_features [B, N, T', S, S, C] -> [B, N, C_tail]; no tail here: ValueError."""
        raise ValueError(
            f"{type(self).__name__} has no I3D Mixed_5 tail (heads with one: i3d, tx_i3d)"
        )

    def reset_inference_memory(self) -> None:
        """Marks every entry of the inference memory unwritten (no-op: no memory)."""
