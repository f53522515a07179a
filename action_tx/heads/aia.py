"""`aia`: Asynchronous Interaction Aggregation (aia_interaction_aggregation.txt).

Person features P_t, object features O_t and memory features M_t (the persons of keyframes
t-L..t+L of the same video) are fed to an Interaction Aggregation structure of P-, O- and
M-blocks (§3.2, `aia_blocks.InteractionBlock`) whose output is classified. The memory is an
`aia_memory.FeatureMemory` table, read and written by the Asynchronous Memory Update
(§3.3, Algorithm 1).

No actor (background) logit: AIA classifies the actions of a separate Faster R-CNN person
detector's boxes (§4.1: detections with confidence > 0.8 at inference), with action classes
only, so the proposal / detector person score is kept as is.

Design decisions (the paper is silent; each follows what the authors' release plausibly does):
- Person / object vectors: the RoI tubes averaged over T', S, S, then a linear projection to
  `hidden_size` (one per input kind). The memory stores the person features P_t themselves,
  the RoIAlign crops of the trunk's features (§3.1: "the memory features consist of person
  features in consecutive clips"), pooled and stop gradient, as the release does (it stores
  the pooled RoI features and reduces them with its own `mem_dim_reduce` when read); M-blocks
  read them through their own projection `memory_proj`. So only the trunk's updates make an
  entry stale: end to end AMU matters; on frozen features (feature mode) nothing goes stale.
- Memory entries hold up to `memory_persons` persons per keyframe ("a certain number of persons
  are sampled from each neighbour clip", §3.1; the release keeps 5 a second), each person once,
  as in the release (it trains on one ground-truth box per person and stores detections at
  inference): the RoIs after NMS at IoU 0.5 by score, best first. In training only RoIs with a
  positive label (persons, not sampled background), scored by their IoU with their person, so
  the best of a person's sampled boxes is kept and its duplicates are suppressed; at inference
  the person scores.
- M̂_t holds the current keyframe's own persons at offset 0 (Algorithm 1 line 13), stop
  gradient like the neighbours (as the release does), not penalised.
- err and δ (Algorithm 1): err is the loss of the previous training step, +inf before the first
  (line 2); δ_t is the loss of the step that wrote entry t (line 16). The loss is this head's
  own sigmoid cross-entropy of the batch (mean over real RoIs) from `roi_labels`, so tag and err
  are always the same quantity whatever loss the model trains with (only their ratio matters).
- Two tables: training reads/writes `train` memory; inference (training=False) reads/writes a
  separate `eval` memory, since train and eval splits share keyframe indices and evaluation
  during training must not clobber the training memory. Like the release (which extracts the
  test split's person features first), evaluation runs the split twice (`inference_passes` = 2):
  `eval_lib.predict_dataset` calls `reset_inference_memory()`, runs a pass that only fills the
  eval memory, then the scoring pass. No penalty at inference (nothing is stale). So the eval
  table is left out of checkpoints (`transient_variables`).
- M-blocks add a learned embedding per memory offset (2L + 1) to their keys and values, as the
  release does by default (TEMPORAL_POSITION); without it the memory is an unordered set and
  "watched someone 3 s ago" reads the same as "30 s ago" or "in 3 s" (`temporal_position`).
- Dense Serial IA (eq. 1) starts as a serial stack, as the release initialises it: each
  block's weights put softmax ~1 on the latest output (`aia_blocks.serial_start`).
- Parallel IA (Figure 4a): one branch per block type (the blocks of that type, in order), the
  branch outputs averaged (the paper only says "merge them at last").
- Padded persons, objects and empty memory slots get zero attention (the release attends to
  zero padding, Figure 4's caption; masking is cleaner and is what the issue asks).
"""

from typing import Sequence, Union

import keras
import tensorflow as tf

from action_tx.heads.aia_blocks import (
    STRUCTURES,
    InteractionBlock,
    aggregate,
    amu_penalty,
    parse_blocks,
    serial_start,
)
from action_tx.heads.aia_config import AIAHeadConfig  # noqa: F401  (re-exported)
from action_tx.heads.base import ActionHead, HeadInputs, HeadOutputs
from action_tx.heads.aia_memory import FeatureMemory, MemoryTables, sum_replicas
from object_detection_ext.box_ops import batched_nms

# Two stored boxes of one keyframe overlapping more than this are taken for the same person.
MEMORY_NMS_IOU = 0.5


@keras.saving.register_keras_serializable(package="action_tx")
class AIAHead(ActionHead):
    """AIA head: interaction aggregation over persons, objects and an AMU memory.

    Args:
      num_classes: action classes C.
      blocks: block types in order, e.g. ["P", "O", "M", "P", "O", "M"] (paper's best, Table 1)
        or the string "P,O,M,P,O,M".
      structure: "parallel", "serial" or "dense" (Dense Serial IA, eq. 1; paper's best).
      memory_window: L, memory keyframes on each side (paper: 30). 0: M-blocks see only the
        current keyframe's persons (no table is made).
      use_amu: reweight read memory by the AMU penalty (eq. 2); false: read it as stored.
      memory_dtype: "float32" or "float16" storage of the tables.
      memory_size: rows of each table: at least the keyframe count of every split the model
        runs on (keyframe_index < memory_size). Required when "M" in blocks and L > 0.
      hidden_size: D, width of every block (release: 512).
      dropout: dropout inside blocks and before the classifier (release: 0.2).
      memory_persons: persons stored per keyframe (release: 5).
      temporal_position: M-blocks add a learned embedding per memory offset (2L + 1 of them)
        to keys and values (the release's default; the paper is silent). Only with a table.
    Call (`inputs: HeadInputs`):
      roi_features [B, N, T', S, S, C], roi_mask [B, N], roi_scores [B, N];
      object_features [B, O, T', S, S, C'] + object_mask [B, O] when "O" in blocks;
      keyframe_index, video_index, timestamp [B] int32 when the table is used;
      keyframe_mask [B] (padded keyframes neither read nor write); roi_labels [B, N, C] in
      training (AMU loss tag; the memory is written only when they are given).
    Returns `HeadOutputs` with logits float32 [B, N, C] (0 for padded RoIs).
    """

    def __init__(
        self,
        num_classes: int,
        blocks: Union[str, Sequence[str]] = ("P", "O", "M", "P", "O", "M"),
        structure: str = "dense",
        memory_window: int = 30,
        use_amu: bool = True,
        memory_dtype: str = "float32",
        memory_size: int = 0,
        hidden_size: int = 512,
        dropout: float = 0.2,
        memory_persons: int = 5,
        temporal_position: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        blocks = parse_blocks(blocks)
        if structure not in STRUCTURES:
            raise ValueError(f"AIAHead: structure must be one of {STRUCTURES}, got {structure!r}")
        if int(memory_window) < 0:
            raise ValueError(f"AIAHead: memory_window must be >= 0, got {memory_window}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"AIAHead: dropout must be in [0, 1), got {dropout!r}")
        self.num_classes = num_classes
        self.blocks = blocks
        self.structure = structure
        self.memory_window = int(memory_window)
        self.use_amu = bool(use_amu)
        self.memory_dtype = memory_dtype
        self.memory_size = int(memory_size)
        self.hidden_size = hidden_size
        self.dropout = dropout
        self.memory_persons = memory_persons
        self.temporal_position = bool(temporal_position)
        self.uses_table = "M" in blocks and self.memory_window > 0
        if self.uses_table and self.memory_size < 1:
            raise ValueError(
                "AIAHead: memory_size must be >= the keyframe count of every split "
                f"(M-blocks with memory_window={memory_window}), got {memory_size}"
            )
        # Evaluation needs one pass that fills the eval memory before the scoring pass.
        self.inference_passes = 2 if self.uses_table else 1

        self._person_proj = keras.layers.Dense(hidden_size, name="person_proj")
        self._object_proj = keras.layers.Dense(hidden_size, name="object_proj")
        self._memory_proj = (
            keras.layers.Dense(hidden_size, name="memory_proj") if "M" in blocks else None
        )
        positions = 2 * self.memory_window + 1 if self.uses_table and self.temporal_position else 0
        self._blocks = [
            InteractionBlock(
                hidden_size,
                dropout,
                temporal_positions=positions if kind == "M" else 0,
                name=f"ia_{i}_{kind}",
            )
            for i, kind in enumerate(blocks)
        ]
        self._fc = keras.layers.Dense(hidden_size, activation="relu", name="fc")
        self._dropout = keras.layers.Dropout(dropout)
        self._classifier = keras.layers.Dense(num_classes, name="cls_logits")
        # The tables hold trunk features, whose width is known in build().
        self._train_memory = self._eval_memory = None

    def build(self, input_shape):
        channels = input_shape.roi_features[-1]
        if channels is None:
            raise ValueError(
                f"AIAHead {self.name!r}: roi_features channels must be static, got "
                f"{input_shape.roi_features}"
            )
        d = self.hidden_size
        self._person_proj.build((None, None, channels))
        if self._memory_proj is not None:
            self._memory_proj.build((None, None, channels))
        if self.uses_table:
            self._train_memory = FeatureMemory(
                self.memory_size,
                self.memory_persons,
                channels,
                self.memory_dtype,
                name="train_memory",
            )
            self._eval_memory = FeatureMemory(
                self.memory_size,
                self.memory_persons,
                channels,
                self.memory_dtype,
                name="eval_memory",
            )
        object_channels = (
            input_shape.object_features[-1] if input_shape.object_features is not None else channels
        )
        self._object_proj.build((None, None, object_channels))
        for block in self._blocks:
            block.build((None, None, d), (None, None, d))
        # Dense Serial IA (eq. 1): block i > 0 has one d-vector per previous block.
        self._dense_weights = []
        if self.structure == "dense":
            self._dense_weights = [
                self.add_weight(name=f"dense_weights_{i}", shape=(i, d), initializer=serial_start)
                for i in range(1, len(self.blocks))
            ]
        self._fc.build((None, None, d))
        self._classifier.build((None, None, d))
        # err of Algorithm 1: loss of the latest training step, +inf before the first (line 2).
        self.current_loss = self.add_weight(
            name="current_loss",
            shape=(),
            initializer=keras.initializers.Constant(float("inf")),
            trainable=False,
            aggregation="mean",
        )

    # --- public interface (ActionHead) ---------------------------------------------------
    @property
    def uses_objects(self) -> bool:
        """O-blocks read object tubes."""
        return "O" in self.blocks

    @property
    def memory(self):
        """`MemoryTables(train, eval)` of `FeatureMemory` [memory_size, memory_persons, C]
        (C = trunk channels), or None without a table (no M-block, memory_window 0) or before
        `build`."""
        if self._train_memory is None:
            return None
        return MemoryTables(train=self._train_memory, eval=self._eval_memory)

    @property
    def interaction_blocks(self) -> list:
        """The `InteractionBlock`s, in the order of `blocks`."""
        return list(self._blocks)

    @property
    def dense_weights(self) -> list:
        """Dense Serial IA (eq. 1) weights: block i > 0 has a variable [i, hidden_size], one
        d-vector per earlier block ([] for other structures; built in `build`)."""
        return list(self._dense_weights)

    @property
    def transient_variables(self) -> list:
        """The eval table's variables: left out of checkpoints (`action_tx.checkpointing`),
        since evaluation resets it and its first pass refills it; at AVA size it would add
        a table as large as the train table to every checkpoint."""
        return list(self._eval_memory.variables) if self._eval_memory is not None else []

    def reset_inference_memory(self):
        """Marks every eval-memory entry unwritten (before evaluating a split)."""
        if self._eval_memory is not None:
            self._eval_memory.video.assign(tf.fill([self.memory_size], -1))

    # --- memory -------------------------------------------------------------------------

    def select_persons(self, persons, rois, roi_mask, roi_scores, roi_labels):
        """The `memory_persons` RoIs to store, one per person (NMS at IoU `MEMORY_NMS_IOU`).

        persons [B, N, C] pooled RoI features; rois [B, N, 4] yxyx; roi_mask [B, N];
        roi_scores [B, N] or None (all 1); roi_labels [B, N, num_classes] in training (only
        labelled RoIs are candidates) or None at inference (every real RoI is).
        Returns persons [B, P, C] and mask [B, P] (P = memory_persons), best score first."""
        valid = tf.cast(roi_mask, tf.bool)
        if roi_labels is not None:  # training: persons, not sampled background RoIs
            valid &= tf.reduce_any(roi_labels > 0, axis=-1)
        scores = roi_scores if roi_scores is not None else tf.ones_like(persons[..., 0])
        order, kept = batched_nms(
            rois, scores, valid, max_output_size=self.memory_persons, iou_threshold=MEMORY_NMS_IOU
        )
        return tf.gather(persons, order, batch_dims=1), kept

    def memory_context(self, inputs, current, current_mask, training):
        """M̂_t (Algorithm 1 lines 5-13): the memory read around each keyframe of `inputs`
        (`HeadInputs`; the training table, AMU-penalised when `use_amu`, if `training`, else
        the eval table), with the current persons `current` [B, P, C] (mask `current_mask`
        [B, P], from `select_persons`) at offset 0. Returns trunk features [B, (2L+1) P, C]
        (before `memory_proj`) and mask [B, (2L+1) P]; without a table, `current` itself."""
        current = tf.stop_gradient(current)
        if not self.uses_table:
            return current, current_mask
        for field in ("keyframe_index", "video_index", "timestamp"):
            if getattr(inputs, field) is None:
                raise ValueError(
                    f"AIAHead {self.name!r}: HeadInputs.{field} is None; the memory "
                    "(memory_window > 0) needs it"
                )
        memory = self._train_memory if training else self._eval_memory
        got = memory.read(
            self._keyframe_index(inputs), inputs.video_index, inputs.timestamp, self.memory_window
        )
        feats, mask = got["features"], got["mask"]  # [B, W, P, C], [B, W, P]
        if training and self.use_amu:
            # Lines 7-9: P̂_t' <- w_t' P̂_t', w = min(err / δ, δ / err).
            feats = feats * amu_penalty(got["loss_tag"], self.current_loss)[..., None, None]
        # Reads are float32 (whatever the table's storage dtype); the blocks compute in the
        # layer's dtype (bfloat16/float16 under mixed precision).
        feats = tf.cast(feats, current.dtype)
        centre = tf.equal(got["offset"], 0)[None, :, None]  # offset 0 = P_t
        feats = tf.where(centre[..., None], current[:, None], feats)
        mask = tf.where(centre, current_mask[:, None], mask)
        w, p, c = 2 * self.memory_window + 1, self.memory_persons, current.shape[-1]
        return tf.reshape(feats, [-1, w * p, c]), tf.reshape(mask, [-1, w * p])

    @staticmethod
    def _keyframe_index(inputs):
        index = tf.cast(inputs.keyframe_index, tf.int32)
        if inputs.keyframe_mask is not None:
            index = tf.where(tf.cast(inputs.keyframe_mask, tf.bool), index, -1)
        return index

    def _write(self, inputs, current, current_mask, loss_tag, training):
        memory = self._train_memory if training else self._eval_memory
        memory.write(
            self._keyframe_index(inputs),
            inputs.video_index,
            inputs.timestamp,
            current,
            current_mask,
            loss_tag=loss_tag,
        )

    def call(self, inputs: HeadInputs, training=None) -> HeadOutputs:
        training = bool(training)
        roi_mask = tf.cast(inputs.roi_mask, tf.bool)
        pooled = tf.reduce_mean(inputs.roi_features, axis=[2, 3, 4])  # P_t [B, N, C]
        persons = self._person_proj(pooled)
        objects = object_mask = memory = memory_mask = None
        if "O" in self.blocks:
            if inputs.object_features is None or inputs.object_mask is None:
                raise ValueError(
                    f"AIAHead {self.name!r}: O-blocks need HeadInputs."
                    "object_features (build the detector with use_objects=True)"
                )
            objects = self._object_proj(tf.reduce_mean(inputs.object_features, axis=[2, 3, 4]))
            object_mask = tf.cast(inputs.object_mask, tf.bool)
        labels = inputs.roi_labels if training else None
        if "M" in self.blocks:
            current, current_mask = self.select_persons(
                pooled, inputs.rois, roi_mask, inputs.roi_scores, labels
            )
            memory, memory_mask = self.memory_context(inputs, current, current_mask, training)
            memory = self._memory_proj(memory)
        features = aggregate(
            self.structure,
            self.blocks,
            self._blocks,
            self._dense_weights,
            persons,
            roi_mask,
            {"O": (objects, object_mask), "M": (memory, memory_mask)},
            training,
        )
        hidden = self._dropout(self._fc(features), training=training)
        logits = self._classifier(hidden)
        logits *= tf.cast(roi_mask, logits.dtype)[..., None]
        if not self.uses_table:  # no table: nothing to write, no err to keep (AMU only)
            return HeadOutputs(logits=logits)
        if training and labels is not None:
            # Lines 15-16: err <- this step's loss; WRITE P̂_t <- P_t, δ_t <- err.
            weights = tf.cast(roi_mask, tf.float32)
            per_roi = tf.reduce_mean(
                tf.nn.sigmoid_cross_entropy_with_logits(
                    tf.cast(labels, tf.float32), tf.cast(logits, tf.float32)
                ),
                axis=-1,
            )
            # The loss of the whole global batch (summed over the replicas in sync), so that
            # err and the tags are one run's, whatever the number of replicas and workers.
            total, count = sum_replicas(tf.reduce_sum(per_roi * weights), tf.reduce_sum(weights))
            loss = tf.stop_gradient(total / tf.maximum(count, 1.0))
            self._write(inputs, current, current_mask, loss, training=True)
            self.current_loss.assign(loss)
        elif not training:
            self._write(inputs, current, current_mask, None, training=False)
        return HeadOutputs(logits=logits)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            blocks=list(self.blocks),
            structure=self.structure,
            memory_window=self.memory_window,
            use_amu=self.use_amu,
            memory_dtype=self.memory_dtype,
            memory_size=self.memory_size,
            hidden_size=self.hidden_size,
            dropout=self.dropout,
            memory_persons=self.memory_persons,
            temporal_position=self.temporal_position,
        )
        return config
