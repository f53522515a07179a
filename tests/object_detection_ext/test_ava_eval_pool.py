"""Pooled evaluation of several splits: ids kept apart per split, exclusions and evidence per
split, hand-computed APs."""

import pytest

from object_detection_ext import ava_eval
from object_detection_ext.ava_eval_pool import pool_splits

LABELS = {1: "bend/bow"}
# Both splits name their video "v" and score keyframe 1 of class 1 (CSV boxes are x1,y1,x2,y2).
A = "0.1,0.1,0.5,0.5"
B = "0.6,0.6,0.9,0.9"  # IoU with A = 0


@pytest.fixture
def splits(tmp_path):
    """Split 0: GT at A, a detection at A (0.5). Split 1: GT at B, a detection at A (0.9)."""
    files = {
        "gt0": f"v,0001,{A},1,0\n",
        "det0": f"v,0001,{A},1,0.5\n",
        "gt1": f"v,0001,{B},1,0\n",
        "det1": f"v,0001,{A},1,0.9\n",
        "ex0": "",
        "ex1": "v,0001\n",
        "ev0": "v,1,0,1,self\n",
        "ev1": "v,1,0,1,temporal\n",
    }
    paths = {}
    for name, text in files.items():
        paths[name] = tmp_path / f"{name}.csv"
        paths[name].write_text(text)
    return paths


def test_pooled_keeps_equal_video_ids_apart(splits):
    gt, det, excluded, evidence = pool_splits(
        [splits["gt0"], splits["gt1"]], [splits["det0"], splits["det1"]]
    )
    assert excluded is None and evidence is None
    assert sorted(set(gt["video_id"])) == ["0:v", "1:v"]
    # Split 1's 0.9 detection misses its own GT (B): FP first, then split 0's TP -> AP 0.25.
    assert ava_eval.evaluate(gt, det, LABELS).map == pytest.approx(0.25)
    # Naively concatenated files would put both GTs in one keyframe, where the 0.9 detection
    # matches split 0's box: AP 0.5. The prefix is what keeps the splits apart.
    merged_gt = splits["gt0"].parent / "merged_gt.csv"
    merged_det = splits["gt0"].parent / "merged_det.csv"
    merged_gt.write_text(splits["gt0"].read_text() + splits["gt1"].read_text())
    merged_det.write_text(splits["det0"].read_text() + splits["det1"].read_text())
    assert ava_eval.evaluate(merged_gt, merged_det, LABELS).map == pytest.approx(0.5)


def test_exclusions_and_evidence_apply_to_their_own_split(splits):
    gt, det, excluded, _ = pool_splits(
        [splits["gt0"], splits["gt1"]],
        [splits["det0"], splits["det1"]],
        excluded=[splits["ex0"], splits["ex1"]],
    )
    assert excluded == [("1:v", 1)]
    # Split 1's keyframe is excluded (its FP with it); split 0's is not: AP 1.
    assert ava_eval.evaluate(gt, det, LABELS, excluded=excluded).map == pytest.approx(1.0)

    gt, det, _, evidence = pool_splits(
        [splits["gt0"], splits["gt1"]],
        [splits["det0"], splits["det1"]],
        evidence=[splits["ev0"], splits["ev1"]],
    )
    result = ava_eval.evaluate(gt, det, LABELS, evidence=evidence)
    # self: split 0's GT only; the FP (0.9) ranks above the TP -> 0.5. temporal: split 1's GT
    # at B is never matched -> 0.
    assert result.by_evidence["self"].map == pytest.approx(0.5)
    assert result.by_evidence["temporal"].map == 0.0


def test_one_split_equals_the_plain_evaluation(splits):
    gt, det, _, _ = pool_splits([splits["gt1"]], [splits["det0"]])
    pooled = ava_eval.evaluate(gt, det, LABELS)
    plain = ava_eval.evaluate(splits["gt1"], splits["det0"], LABELS)
    assert pooled.map == plain.map == 0.0
    gt, det, _, _ = pool_splits([splits["gt0"]], [splits["det1"]])
    assert (
        ava_eval.evaluate(gt, det, LABELS).map
        == ava_eval.evaluate(splits["gt0"], splits["det1"], LABELS).map
        == 1.0
    )


def test_bad_lists_are_clear_errors(splits):
    with pytest.raises(ValueError, match="no split"):
        pool_splits([], [])
    with pytest.raises(ValueError, match="2 ground-truth files but 1 detections"):
        pool_splits([splits["gt0"], splits["gt1"]], [splits["det0"]])
    with pytest.raises(ValueError, match="1 excluded"):
        pool_splits(
            [splits["gt0"], splits["gt1"]],
            [splits["det0"], splits["det1"]],
            excluded=[splits["ex0"]],
        )
