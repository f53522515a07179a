"""Several evaluation splits scored as one: the inputs of `ava_eval.evaluate` pooled.

Why: a split with few examples of a rare evidence type (the synthetic `bench` val split holds 3
conversations) gives noisy APs; scoring fresh splits of the same generator (other seeds) together
with it gives one AP over all of them. Each split's video ids get the prefix "<index>:" (0-based
position in the list), so equal ids in different splits (every synthetic seed names its videos
syn0000...) stay different keyframes and persons.
"""

from typing import Optional, Sequence

import numpy as np

from object_detection_ext import ava_eval_io as io


def _prefixed(ids, index: int) -> np.ndarray:
    return np.array([f"{index}:{v}" for v in ids], dtype=object)


def _rows(source, kind: str, index: int) -> dict:
    rows = io.as_rows(source, kind)
    n = len(rows.video_id)
    # float64 as the single-file evaluator reads them (`Rows.boxes64`), so IoUs at exactly 0.5
    # compare the same pooled or not.
    return dict(
        video_id=_prefixed(rows.video_id, index),
        timestamp=rows.timestamp,
        boxes=rows.boxes64(np.arange(n)),
        action_id=rows.action_id,
        person_id=rows.person_id,
        score=rows.score,
    )


def _concat(parts: Sequence[dict]) -> dict:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def pool_splits(
    groundtruth: Sequence,
    detections: Sequence,
    excluded: Optional[Sequence] = None,
    evidence: Optional[Sequence] = None,
):
    """Pools per-split inputs (CSV paths or the arrays `ava_eval.evaluate` takes).

    Args:
      groundtruth, detections: one entry per split, same length K >= 1.
      excluded, evidence: None, or K entries (an entry may be None: nothing for that split).
    Returns:
      (groundtruth dict, detections dict, excluded [(video_id, timestamp)] or None,
      evidence dict or None), ready for `ava_eval.evaluate`; video ids are "<k>:<id>".
    Raises:
      ValueError: the lists differ in length or are empty.
    """
    k = len(groundtruth)
    if k == 0:
        raise ValueError("pool_splits: no split given")
    for name, value in (("detections", detections), ("excluded", excluded), ("evidence", evidence)):
        if value is not None and len(value) != k:
            raise ValueError(
                f"pool_splits: {k} ground-truth files but {len(value)} {name} "
                "entries (give one per split, in the same order)"
            )
    gt = _concat([_rows(g, "groundtruth", i) for i, g in enumerate(groundtruth)])
    det = _concat([_rows(d, "detections", i) for i, d in enumerate(detections)])
    pooled_excluded = None
    if excluded is not None:
        pooled_excluded = []
        for i, source in enumerate(excluded):
            videos, stamps = io.as_excluded(source)
            pooled_excluded += [(f"{i}:{v}", int(t)) for v, t in zip(videos, stamps)]
    pooled_evidence = None
    if evidence is not None:
        frames = []
        for i, source in enumerate(evidence):
            if source is None:
                continue
            frame = io.as_evidence(source).copy()
            frame["video_id"] = _prefixed(frame["video_id"], i)
            frames.append(frame)
        if frames:
            pooled_evidence = {
                c: np.concatenate([f[c].to_numpy() for f in frames]) for c in frames[0].columns
            }
    return gt, det, pooled_excluded, pooled_evidence
