"""AVA frame-mAP evaluator: the official ActivityNet numbers, vectorised with NumPy.

`evaluate(groundtruth, detections, label_map)` returns an `AvaEvalResult` equal (within float
rounding, on inputs without tied scores) to `get_ava_performance.py` of ActivityNet, which uses
the TF Object Detection API's `PascalDetectionEvaluator`. The rules, checked against that code:

* An image key is (video_id, timestamp). Every key of the ground-truth file is a ground-truth
  key, also those with only `video_id,timestamp` rows and those whose rows all have classes
  outside the label map; detections on such keys are all false positives.
* Rows whose action id is not in the label map are dropped, from ground truth and detections,
  before anything else.
* Per key, only the `max_detections_per_key` (50) highest-scoring detection rows are kept,
  counted over all classes of the key.
* Detections on keys absent from the ground truth are ignored (the current official script
  skips them; an older one, with an exclusions file, scored them as false positives).
* Excluded timestamps (`excluded`) are removed from ground truth and detections alike, as the
  older official script with `-e` did; the key then counts nowhere.
* A detection row without a score (7 columns) has score 1.0 (the official `read_csv`).
* Detection boxes with y1 >= y2 or x1 >= x2 are dropped after the cap (TF OD API
  `_remove_invalid_boxes`): neither true nor false positives. A CSV may hold zero-area boxes
  (x1 == x2 or y1 == y2: a detector's box clipped at the frame edge), as the official script
  reads them; other bad rows, coordinates outside [0, 1] and x2 < x1 or y2 < y1 are refused.
* Matching and AP: see `object_detection_ext.voc_ap` (IoU without +1, greedy in descending
  score, argmax box without fall-back, VOC AP with precision envelope). mAP is the mean over
  the label map's classes that have ground truth.
* An empty ground truth (no row, every key excluded, or no box of a label-map class) raises
  ValueError. What is scored but probably not meant (rows without a score, a file where no row
  has one or every score is a whole number, zero-area boxes, detections on videos absent from
  the ground truth) gives one `AvaEvalWarning` each, with a count and the first FILE:LINE.

Breakdowns, all computed from the same single matching pass:

* `per_category`: mean AP over the classes of each category (AVA: pose ids 1-14,
  person_object 15-63, person_person 64-80, or the `categories` passed in).
* `localization`: class-agnostic person AP at IoU 0.5 and 0.75. Ground truth = the unique
  boxes of each key over all ground-truth rows with a box (whatever their action id);
  detections = the unique boxes of each key among the detections kept above (label map,
  cap, valid boxes), each scored with its maximum score over classes: the detector's person
  boxes carry one score per class, and its best class score is its confidence that someone
  doing something is there.
* `by_evidence` (needs `evidence` rows: video_id, timestamp, person_id, action_id, evidence):
  for each evidence type, ground-truth rows of any other type (or with no evidence row) are
  marked difficult (VOC: a detection matched to them is neither TP nor FP) and the mAP is
  taken over the classes with ground truth of that type. Evidence rows that match no
  ground-truth row (e.g. synthetic AVA's matched-negative rows, evidence
  `context_negative` / `long_term_negative`) are ignored.
* `by_area`: the ground-truth persons (unique boxes per key, any class) are split into three
  equal-count bins by box area (tertiles); for each bin the scored ground-truth rows whose
  box falls in another bin are difficult.
* `by_persons`: keys are binned by their number of unique person boxes (1, 2, 3+); for each
  bin only the keys of the bin are scored (ground truth and detections).
"""

import dataclasses
import math

import numpy as np

from object_detection_ext import ava_eval_io as io
from object_detection_ext import ava_eval_prepare, voc_ap
from object_detection_ext.ava_eval_io import AvaEvalWarning  # noqa: F401  (part of the API)

EVIDENCE_TYPES = ("self", "context", "temporal", "long_term")
PERSON_BINS = ("1", "2", "3+")
AREA_BINS = ("small", "medium", "large")


@dataclasses.dataclass
class SplitResult:
    """The mAP of one slice of the ground truth (`by_evidence`, `by_area`, `by_persons`)."""

    map: float
    per_class: dict  # AVA id -> AP, or None when the slice has no ground truth of it
    num_groundtruth: int  # ground-truth rows (box x action) counted in the slice
    description: str = ""

    def to_json(self) -> dict:
        return {
            "mAP": _none_if_nan(self.map),
            "per_class": {str(k): v for k, v in self.per_class.items()},
            "num_groundtruth": self.num_groundtruth,
            "description": self.description,
        }


@dataclasses.dataclass
class AvaEvalResult:
    """Everything `evaluate` measures. APs are floats in [0, 1]; None = no ground truth."""

    map: float
    per_class: dict  # AVA id -> AP or None
    per_category: dict  # category name -> mean AP or None
    localization: dict  # IoU threshold (0.5, 0.75) -> class-agnostic AP
    class_names: dict = dataclasses.field(default_factory=dict)  # AVA id -> name
    num_groundtruth: dict = dataclasses.field(default_factory=dict)  # AVA id -> GT rows
    counts: dict = dataclasses.field(default_factory=dict)  # what was read, kept, dropped
    by_evidence: dict | None = None  # evidence type -> SplitResult
    by_area: dict | None = None  # "small"/"medium"/"large" -> SplitResult
    by_persons: dict | None = None  # "1"/"2"/"3+" -> SplitResult
    iou_threshold: float = 0.5

    def to_json(self) -> dict:
        """A JSON-ready dict; the first two keys are those of the official script's summary."""
        out = {
            f"mAP@{self.iou_threshold}IOU": _none_if_nan(self.map),
            "per_class": {str(k): v for k, v in self.per_class.items()},
            "class_names": {str(k): v for k, v in self.class_names.items()},
            "num_groundtruth": {str(k): v for k, v in self.num_groundtruth.items()},
            "per_category": dict(self.per_category),
            "localization": {f"AP@{t}IOU": v for t, v in self.localization.items()},
            "counts": dict(self.counts),
        }
        for name in ("by_evidence", "by_area", "by_persons"):
            split = getattr(self, name)
            if split is not None:
                out[name] = {k: v.to_json() for k, v in split.items()}
        return out

    def format_table(self) -> str:
        """A plain-text report: per-class AP, categories, localization and breakdowns."""
        lines = [f"{'id':>4}  {'class':<36} {'#gt':>7}  {'AP':>7}"]
        for class_id, ap in self.per_class.items():
            name = self.class_names.get(class_id, "")[:36]
            lines.append(
                f"{class_id:>4}  {name:<36} {self.num_groundtruth.get(class_id, 0):>7}  {_fmt(ap)}"
            )
        lines.append(
            f"{'':>4}  {'frame-mAP@' + str(self.iou_threshold) + 'IOU':<36} "
            f"{sum(self.num_groundtruth.values()):>7}  {_fmt(self.map)}"
        )
        lines.append("")
        for name, value in self.per_category.items():
            lines.append(f"{'category ' + name + ' mAP':<41} {_fmt(value)}")
        for threshold, value in self.localization.items():
            lines.append(f"{'person localization AP@' + str(threshold) + 'IOU':<41} {_fmt(value)}")
        for title in ("by_evidence", "by_area", "by_persons"):
            split = getattr(self, title)
            for name, part in (split or {}).items():
                lines.append(
                    f"{title} {name:<10} #gt {part.num_groundtruth:>7}  "
                    f"mAP {_fmt(part.map)}  {part.description}"
                )
        return "\n".join(lines)


def _fmt(value) -> str:
    return (
        "    n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:7.4f}"
    )


def _none_if_nan(value):
    return None if value is None or math.isnan(value) else float(value)


def _mean_ap(ap: np.ndarray) -> float:
    ap = ap[~np.isnan(ap)]
    return float(ap.mean()) if len(ap) else float("nan")


def _ap_dict(ids, ap) -> dict:
    return {int(i): _none_if_nan(float(a)) for i, a in zip(ids, ap)}


def evaluate(
    groundtruth,
    detections,
    label_map,
    *,
    excluded=None,
    evidence=None,
    categories=None,
    iou_threshold=0.5,
    max_detections_per_key=50,
    localization_thresholds=(0.5, 0.75),
    breakdowns=True,
) -> AvaEvalResult:
    """Scores AVA detections like the official ActivityNet evaluator (see module docstring).

    Args:
      groundtruth: AVA ground-truth CSV path, or arrays: a dict or an object (such as
        `action_tx.data.ava.Annotations`) with `video_id` [N] str, `timestamp` [N] int,
        `boxes` [N, 4] normalized yxyx (NaN rows = key-only rows), `action_id` [N] int AVA
        id (-1 = none), optional `person_id` [N] int.
      detections: detection CSV path or the same arrays with `score` [N] float (NaN = none:
        1.0, as the official evaluator reads a 7-column row).
      label_map: label-map path, a `LabelMap`, a dict AVA id -> name, or a sequence of ids.
      excluded: excluded-timestamps CSV path or an iterable of (video_id, timestamp).
      evidence: evidence CSV path (video_id,timestamp,person_id,action_id,evidence) or a dict
        of those arrays; adds `by_evidence`.
      categories: dict name -> list of AVA ids; default: the AVA groups by id range.
      iou_threshold: matching IoU of the action mAP.
      max_detections_per_key: the official cap (50) on detection rows per key; 0 = none.
      localization_thresholds: IoUs of the class-agnostic person AP.
      breakdowns: False skips localization, by_area and by_persons (evidence still counts).
    Returns:
      an `AvaEvalResult`.
    Raises:
      ValueError: a bad CSV row (`AvaFormatError`, FILE:LINE) or an empty ground truth.
    Warns:
      AvaEvalWarning: input scored as the official evaluator does but likely a mistake.
    """
    labels = io.as_label_map(label_map)
    gt = io.as_rows(groundtruth, "groundtruth")
    excluded_rows = io.as_excluded(excluded)
    ava_eval_prepare.check_groundtruth(gt, labels.ids, excluded_rows)
    det = io.as_rows(detections, "detections")
    evidence_rows = io.as_evidence(evidence) if evidence is not None else None
    data = ava_eval_prepare.prepare(
        gt, det, labels.ids, excluded_rows, evidence_rows, max_detections_per_key
    )
    ids = np.asarray(labels.ids)
    num_classes = len(ids)

    # One matching pass; every breakdown only changes which boxes are difficult.
    det_group = data.det_key * num_classes + data.det_class
    gt_group = data.gt_key * num_classes + data.gt_class
    num_keys = len(data.persons_per_key)
    best_gt, best_iou = voc_ap.assign_to_groundtruth(
        det_group, data.det_boxes, gt_group, data.gt_boxes, num_keys * num_classes
    )
    matches = voc_ap.first_matches(best_gt, best_iou, iou_threshold, len(gt_group))
    by_class = voc_ap.stable_argsort_uint(data.det_class, num_classes)  # shared by all splits

    def score(difficult, det_mask=None):
        tp, ignored = voc_ap.label_detections(best_gt, best_iou, iou_threshold, difficult, matches)
        keep = ~ignored if det_mask is None else ~ignored & det_mask
        num_gt = np.bincount(data.gt_class[~difficult], minlength=num_classes)
        counted = by_class[keep[by_class]]  # by class, descending score inside a class
        ap = voc_ap.per_class_average_precision(
            data.det_class[counted], tp[counted], num_gt, order=np.arange(len(counted))
        )
        return ap, num_gt

    no_difficult = np.zeros(len(data.gt_class), dtype=bool)
    ap, num_gt = score(no_difficult)
    result = AvaEvalResult(
        map=_mean_ap(ap),
        per_class=_ap_dict(ids, ap),
        per_category={},
        localization={},
        class_names={int(i): labels.names.get(int(i), "") for i in ids},
        num_groundtruth={int(i): int(n) for i, n in zip(ids, num_gt)},
        counts=data.counts,
        iou_threshold=iou_threshold,
    )
    cats = categories if categories is not None else labels.categories
    for name, members in cats.items():
        mask = np.isin(ids, list(members))
        if mask.any():
            result.per_category[name] = _none_if_nan(_mean_ap(ap[mask]))

    def split(difficult, det_mask=None, description=""):
        part_ap, part_gt = score(difficult, det_mask)
        return SplitResult(
            map=_mean_ap(part_ap),
            per_class=_ap_dict(ids, part_ap),
            num_groundtruth=int(part_gt.sum()),
            description=description,
        )

    if evidence_rows is not None:
        present = [e for e in EVIDENCE_TYPES if (data.gt_evidence == e).any()]
        present += sorted(set(data.gt_evidence[data.gt_evidence != ""]) - set(present))
        result.by_evidence = {e: split(data.gt_evidence != e) for e in present}
    if not breakdowns:
        return result
    result.localization = _localization(data, localization_thresholds)
    area = voc_ap.box_area(data.gt_boxes)
    edges = _tertiles(data)
    area_bin = np.digitize(area, edges[1:3])
    result.by_area = {
        name: split(area_bin != b, description=f"area in [{edges[b]:.4f}, {edges[b + 1]:.4f}]")
        for b, name in enumerate(AREA_BINS)
    }
    persons_bin = np.minimum(data.persons_per_key, 3) - 1  # -1 for keys without a person
    result.by_persons = {}
    for b, name in enumerate(PERSON_BINS):
        key_in_bin = persons_bin == b
        result.by_persons[name] = split(
            ~key_in_bin[data.gt_key],
            key_in_bin[data.det_key],
            description=f"{int(key_in_bin.sum())} keys",
        )
    return result


def _tertiles(data) -> np.ndarray:
    """[4] bin edges (min, 1/3, 2/3, max) of the area of the ground-truth persons."""
    person_area = voc_ap.box_area(data.person_boxes[data.person_first])
    if len(person_area) == 0:
        return np.zeros(4)
    return np.quantile(person_area, [0.0, 1 / 3, 2 / 3, 1.0])


def _localization(data, thresholds) -> dict:
    """Class-agnostic person AP per IoU threshold (definitions in the module docstring)."""
    gt_rows = np.flatnonzero(data.person_first)
    best_gt, best_iou = voc_ap.assign_to_groundtruth(
        data.box_key,
        data.box_boxes,
        data.person_key[gt_rows],
        data.person_boxes[gt_rows],
        len(data.persons_per_key),
    )
    out = {}
    for threshold in thresholds:
        _, first = voc_ap.first_matches(best_gt, best_iou, threshold, len(gt_rows))
        out[threshold] = _none_if_nan(voc_ap.average_precision(first, len(gt_rows)))
    return out
