"""SavedModel export of an `ActionDetector` (docs/DESIGN.md "Training, export, evaluation").

The SavedModel runs on raw video frames and needs no project code to load
(`tf.saved_model.load(dir)` in plain TensorFlow). Its signatures:

  serving_default(clip)                  person boxes from the RPN (detectors trained with
                                         `--proposals=rpn`). For detectors trained with
                                         'external' or 'gt' boxes there is no RPN, so
                                         serving_default IS with_boxes (person boxes required).
  with_boxes(clip, person_boxes)         the given person boxes replace the proposals.
  labels()                               class_ids int32 [C] (AVA ids), class_names string [C].
  metadata()                             num_frames, image_size [2] (H, W), frame_stride, fps,
                                         requires_person_boxes, num_classes, max_detections.

Inputs:
  clip: uint8 [T, H, W, 3] RGB frames, any H and W (resized inside, as the pipeline's eval path:
    bilinear `crop_and_resize` of the whole frame, then x / 127.5 - 1). The model's clip has
    `num_frames` frames at `frame_stride` (in frames of a video at `fps`) centred on the
    keyframe. T may differ from num_frames: num_frames frames are then sampled uniformly,
    frame floor((i + 0.5) * T / num_frames) for i = 0..num_frames-1 (T == num_frames: all of
    them in order; T < num_frames repeats frames). T = 0 is an error.
  person_boxes: float32 [P, 4] normalized [y1, x1, y2, x2] of the frame, P >= 0; each gets
    detector score 1, and is rescored (the detector's `person_score` rule, for heads with an
    actor logit, unless the detector was trained on ground-truth boxes: then the score stays
    1) and refined by the head's box regression when it has one, exactly as the detector
    treats external proposals; no NMS runs over them.

Outputs of serving_default / with_boxes (K = the detector's max_detections):
  detection_boxes float32 [K, 4] normalized yxyx; detection_scores float32 [K] person scores,
  descending; action_scores float32 [K, C] (person score x action probability, class index
  order of `labels`); num_detections int32 []: rows >= num_detections are zero padding;
  attention float32 [K, ...] (only for heads that return attention maps, e.g. `tx`:
  [K, layers, heads, T', H', W']), the maps of the RoI each detection came from.
"""

import os
from typing import Sequence, Union

import numpy as np
import tensorflow as tf

from action_tx.detector import ActionDetector
from object_detection_ext.proposer import Proposer

DETECTION_KEYS = ("detection_boxes", "detection_scores", "action_scores", "num_detections")


def sample_frame_indices(num_input: tf.Tensor, num_frames: int) -> tf.Tensor:
    """int32 [num_frames]: floor((i + 0.5) * num_input / num_frames), uniform over the input
    (identity when num_input == num_frames)."""
    num_input = tf.cast(num_input, tf.float64)
    pos = (tf.range(num_frames, dtype=tf.float64) + 0.5) * num_input / num_frames
    return tf.cast(tf.floor(pos), tf.int32)


def preprocess_clip(
    clip: tf.Tensor, *, num_frames: int, image_size: Union[int, Sequence[int]]
) -> tf.Tensor:
    """uint8 [T, H, W, 3] frames -> float32 [1, num_frames, h, w, 3] model input in [-1, 1].

    Frames are sampled with `sample_frame_indices`, resized like `action_tx.data.pipeline
    .make_clip` (crop_and_resize of the whole frame, bilinear) and scaled to x / 127.5 - 1.
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    clip = tf.convert_to_tensor(clip)
    tf.debugging.assert_positive(tf.shape(clip)[0], message="clip has no frames")
    clip = tf.gather(clip, sample_frame_indices(tf.shape(clip)[0], num_frames))
    window = tf.constant([[0.0, 0.0, 1.0, 1.0]])
    resized = tf.image.crop_and_resize(
        tf.cast(clip, tf.float32),
        tf.tile(window, [num_frames, 1]),
        tf.range(num_frames),
        [height, width],
    )
    resized.set_shape([num_frames, height, width, 3])
    return (resized / 127.5 - 1.0)[None]


def boxes_twin(detector: ActionDetector) -> ActionDetector:
    """A detector sharing every layer and weight of `detector` whose proposer takes the batch's
    `proposals` (mode 'external'): how the SavedModel runs on given person boxes."""
    return ActionDetector(
        trunk=detector.trunk,
        proposer=Proposer(mode="external"),
        head=detector.head,
        num_classes=detector.num_classes,
        roi_extractor=detector.roi_extractor,
        use_objects=detector.use_objects,
        pose_indices=detector.pose_indices,
        nms_iou=detector.nms_iou,
        max_detections=detector.max_detections,
        score_threshold=detector.score_threshold,
        # A detector trained on ground-truth boxes never trained its actor logit (no
        # background RoIs): given boxes keep their score 1, as its own gt proposals do.
        person_score="proposal" if detector.proposer.mode == "gt" else detector.person_score,
        name="with_boxes_detector",
    )


class DetectorModule(tf.Module):
    """tf.Module holding the detector's variables and the serving functions (module docstring).

    Args:
      detector: a built ActionDetector (weights restored).
      num_frames, image_size (int or (H, W)), frame_stride, fps: the clip the model was
        trained on (frame_stride counts frames of a video at `fps`).
      class_ids: [C] AVA ids of the contiguous class indices; class_names: [C].
    """

    def __init__(
        self,
        detector: ActionDetector,
        *,
        num_frames: int,
        image_size: Union[int, Sequence[int]],
        class_ids: Sequence[int],
        class_names: Sequence[str],
        frame_stride: int = 1,
        fps: float = 30.0,
    ):
        super().__init__(name="action_detector")
        if len(class_ids) != detector.num_classes or len(class_names) != detector.num_classes:
            raise ValueError(
                f"export: {len(class_ids)} class ids and {len(class_names)} names "
                f"for a detector of {detector.num_classes} classes"
            )
        self._detector = detector
        self._twin = boxes_twin(detector)
        self.num_frames = int(num_frames)
        self.image_size = (
            (int(image_size),) * 2
            if isinstance(image_size, (int, np.integer))
            else tuple(int(s) for s in image_size)
        )
        self.frame_stride = int(frame_stride)
        self.fps = float(fps)
        self.requires_person_boxes = detector.proposer.mode != "rpn"
        self._class_ids = [int(i) for i in class_ids]
        self._class_names = [str(n) for n in class_names]
        # Tracked lists of the variables the traced functions capture (as keras' ExportArchive
        # does), so the SavedModel holds them without serialising the Keras objects.
        seen, variables = set(), []
        for v in list(detector.variables) + list(self._twin.variables):
            if id(v) not in seen:
                seen.add(id(v))
                variables.append(v)
        self.model_variables = variables
        clip = tf.TensorSpec([None, None, None, 3], tf.uint8, name="clip")
        boxes = tf.TensorSpec([None, 4], tf.float32, name="person_boxes")
        self.detect_with_boxes = tf.function(self._detect_with_boxes, input_signature=[clip, boxes])
        if not self.requires_person_boxes:
            # Only detectors with an RPN get the clip-only function (saving traces it).
            self.detect = tf.function(self._detect, input_signature=[clip])

    def _run(self, model, clip, extra):
        batch = {
            "clip": preprocess_clip(clip, num_frames=self.num_frames, image_size=self.image_size)
        }
        batch.update(extra)
        if self._detector.use_objects:
            # No object detector in the SavedModel: one masked padding object.
            batch.update(
                objects=tf.zeros([1, 1, 4]),
                object_mask=tf.zeros([1, 1], tf.bool),
                object_scores=tf.zeros([1, 1]),
                object_classes=-tf.ones([1, 1], tf.int32),
            )
        out = model(batch, training=False)
        result = {k: out[k][0] for k in DETECTION_KEYS}
        if "attention" in out:
            idx = out["detection_indices"]
            att = tf.gather(tf.cast(out["attention"], tf.float32), idx, batch_dims=1)[0]
            valid = tf.range(tf.shape(idx)[1]) < out["num_detections"][0]
            shape = tf.concat([tf.shape(valid), tf.ones([tf.rank(att) - 1], tf.int32)], 0)
            result["attention"] = att * tf.reshape(tf.cast(valid, tf.float32), shape)
        return result

    def _detect(self, clip):
        """RPN proposals. clip: uint8 [T, H, W, 3] -> detections (module docstring)."""
        return self._run(self._detector, clip, {})

    def _detect_with_boxes(self, clip, person_boxes):
        """Given person boxes [P, 4] normalized yxyx (score 1 each) -> detections."""
        # One masked padding row, so P = 0 still gives well-formed [1, P + 1] proposals.
        boxes = tf.concat([person_boxes, tf.zeros([1, 4])], 0)[None]
        mask = (tf.range(tf.shape(boxes)[1]) < tf.shape(person_boxes)[0])[None]
        return self._run(
            self._twin,
            clip,
            {
                "proposals": boxes,
                "proposal_mask": mask,
                "proposal_scores": tf.cast(mask, tf.float32),
            },
        )

    @tf.function(input_signature=[])
    def labels(self):
        """class_ids int32 [C] (AVA ids), class_names string [C] (class index order)."""
        return {
            "class_ids": tf.constant(self._class_ids, tf.int32),
            "class_names": tf.constant(self._class_names, tf.string),
        }

    @tf.function(input_signature=[])
    def metadata(self):
        """Scalars and [2] image_size describing the clip the model expects."""
        return {
            "num_frames": tf.constant(self.num_frames, tf.int32),
            "image_size": tf.constant(self.image_size, tf.int32),
            "frame_stride": tf.constant(self.frame_stride, tf.int32),
            "fps": tf.constant(self.fps, tf.float32),
            "requires_person_boxes": tf.constant(self.requires_person_boxes),
            "num_classes": tf.constant(len(self._class_ids), tf.int32),
            "max_detections": tf.constant(self._detector.max_detections, tf.int32),
        }


def export_saved_model(
    detector: ActionDetector,
    output_dir: str,
    *,
    num_frames: int,
    image_size: Union[int, Sequence[int]],
    class_ids: Sequence[int],
    class_names: Sequence[str],
    frame_stride: int = 1,
    fps: float = 30.0,
) -> DetectorModule:
    """Writes the SavedModel of the module docstring to `output_dir`; returns the module.

    `detector` must be built (called once) with its weights restored. Raises ValueError when
    `output_dir` exists and is not empty (never overwrites an export).
    """
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        raise ValueError(f"export: {output_dir} exists and is not empty")
    module = DetectorModule(
        detector,
        num_frames=num_frames,
        image_size=image_size,
        class_ids=class_ids,
        class_names=class_names,
        frame_stride=frame_stride,
        fps=fps,
    )
    with_boxes = module.detect_with_boxes.get_concrete_function()
    signatures = {
        "serving_default": (
            with_boxes if module.requires_person_boxes else module.detect.get_concrete_function()
        ),
        "with_boxes": with_boxes,
        "labels": module.labels.get_concrete_function(),
        "metadata": module.metadata.get_concrete_function(),
    }
    tf.saved_model.save(module, output_dir, signatures=signatures)
    return module
