"""Matching of one seed's detections, once (`match_run` -> `stats.RunMatches`), and its archive
(`save_matches`, `load_matches`): what the heads suite's intervals (`stats`) resample. The
archive keeps a digest of the evidence rows it was cut by (`evidence_digest`), so a resumed
suite can tell an archive made on other evidence files and match it again."""

import dataclasses
import hashlib

import numpy as np
import pandas as pd

from action_tx.bench.stats import ALL, Matches, RunMatches, lookalike
from object_detection_ext import ava_eval, ava_eval_io, ava_eval_prepare, voc_ap
from object_detection_ext.ava_eval_pool import pool_splits


def evidence_digest(evidence) -> str:
    """A digest of evidence rows: a CSV path or arrays (`ava_eval_io.as_evidence`), a list of
    them (pooled val splits, in order), or None ("")."""
    if evidence is None:
        return ""
    digest = hashlib.sha1()
    for one in evidence if isinstance(evidence, (list, tuple)) else [evidence]:
        frame = ava_eval_io.as_evidence(one).astype(str)
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        digest.update(str(len(frame)).encode())
    return digest.hexdigest()[:16]


def match_run(
    groundtruth,
    detections,
    label_map,
    *,
    excluded=None,
    evidence=None,
    iou_threshold: float = 0.5,
    max_detections_per_key: int = 50,
) -> RunMatches:
    """Matches one model's detections as `ava_eval.evaluate` does -> `RunMatches`.

    Arguments as `ava_eval.evaluate`'s; a list or tuple of groundtruth (with detections,
    excluded, evidence lists of the same length, or None) pools several val splits
    (`ava_eval_pool.pool_splits`)."""
    kept = evidence_digest(evidence)
    if isinstance(groundtruth, (list, tuple)):
        groundtruth, detections, excluded, evidence = pool_splits(
            groundtruth, detections, excluded, evidence
        )
    labels = ava_eval_io.as_label_map(label_map)
    gt = ava_eval_io.as_rows(groundtruth, "groundtruth")
    excluded_rows = ava_eval_io.as_excluded(excluded)
    ava_eval_prepare.check_groundtruth(gt, labels.ids, excluded_rows)
    det = ava_eval_io.as_rows(detections, "detections")
    evidence_rows = ava_eval_io.as_evidence(evidence) if evidence is not None else None
    data = ava_eval_prepare.prepare(
        gt, det, labels.ids, excluded_rows, evidence_rows, max_detections_per_key
    )
    num_classes, num_keys = len(labels.ids), len(data.persons_per_key)
    # The evaluator's one matching pass (ava_eval.evaluate); splits only change the difficult.
    best_gt, best_iou = voc_ap.assign_to_groundtruth(
        data.det_key * num_classes + data.det_class,
        data.det_boxes,
        data.gt_key * num_classes + data.gt_class,
        data.gt_boxes,
        num_keys * num_classes,
    )
    matches = voc_ap.first_matches(best_gt, best_iou, iou_threshold, len(data.gt_class))
    by_class = voc_ap.stable_argsort_uint(data.det_class, num_classes)
    splits = {ALL: np.zeros(len(data.gt_class), dtype=bool)}
    if evidence_rows is not None:
        present = [e for e in ava_eval.EVIDENCE_TYPES if (data.gt_evidence == e).any()]
        present += sorted(set(data.gt_evidence[data.gt_evidence != ""]) - set(present))
        splits.update({e: data.gt_evidence != e for e in present})
    # Look-alike slices: a type's positives against its matched negatives only (the
    # instrument check, `chance`): of the detections the type's slice counts, only true
    # positives and those on a matched negative of their class (IoU >= iou_threshold).
    only = {}
    for negative, on_negative in data.det_on_negative.items():
        base = negative.removesuffix(ava_eval_prepare.NEGATIVE_SUFFIX)
        if base in splits:
            splits[lookalike(base)] = splits[base]
            only[lookalike(base)] = on_negative & (data.det_person_iou >= iou_threshold)
    by_evidence = {}
    for name, difficult in splits.items():
        tp, ignored = voc_ap.label_detections(best_gt, best_iou, iou_threshold, difficult, matches)
        if name in only:
            ignored = ignored | ~(tp | only[name])
        counted = by_class[~ignored[by_class]]
        positives = np.zeros((num_keys, num_classes), dtype=np.int32)
        np.add.at(positives, (data.gt_key[~difficult], data.gt_class[~difficult]), 1)
        by_evidence[name] = Matches(
            det_class=data.det_class[counted].astype(np.int32),
            det_tp=tp[counted],
            det_key=data.det_key[counted].astype(np.int32),
            det_score=np.asarray(data.det_score[counted], dtype=np.float64),
            positives=positives,
        )
    digest = hashlib.sha1()
    for array in (data.gt_key, data.gt_class, data.gt_boxes, np.asarray(labels.ids)):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(str(num_keys).encode())
    return RunMatches(digest.hexdigest()[:16], np.asarray(labels.ids), by_evidence, kept)


def save_matches(path: str, matches: RunMatches) -> None:
    """Writes one seed's matches as a NumPy archive (`load_matches` reads it)."""
    arrays = {"groundtruth": np.array(matches.groundtruth), "class_ids": matches.class_ids}
    arrays["evidence"] = np.array(matches.evidence)
    for name, m in matches.by_evidence.items():
        for field in dataclasses.fields(Matches):
            arrays[f"{name}/{field.name}"] = getattr(m, field.name)
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def load_matches(path: str) -> RunMatches:
    """The `RunMatches` that `save_matches` wrote at `path`."""
    with np.load(path, allow_pickle=False) as data:
        names = sorted({k.split("/")[0] for k in data.files if "/" in k})
        by_evidence = {
            n: Matches(**{f.name: data[f"{n}/{f.name}"] for f in dataclasses.fields(Matches)})
            for n in names
        }
        kept = str(data["evidence"]) if "evidence" in data.files else ""  # older archives
        return RunMatches(str(data["groundtruth"]), data["class_ids"], by_evidence, kept)
