import numpy as np

from object_detection_ext.sampling import balanced_sample, sample_rois

GT = np.array([[[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]]], np.float32)
GT_MASK = np.array([[True, True]])
GT_LABELS = np.array([[[1, 0, 1], [0, 1, 0]]], np.float32)
PROPOSALS = np.array(
    [
        [
            [0, 0, 0.5, 0.4],  # IoU .8 with GT 0: positive
            [0, 0.5, 0.5, 1],  # IoU 0: background
            [0.5, 0.5, 1, 1],
        ]
    ],  # padding
    np.float32,
)
PROPOSAL_MASK = np.array([[True, True, False]])


def test_balanced_sample_limits_positives_and_fills_with_negatives(run):
    pos = np.array([[True] * 6 + [False] * 6])
    neg = ~pos
    out = run(
        balanced_sample, pos, neg, num_samples=4, positive_fraction=0.25, seed=np.array([3, 4])
    )
    assert out["positive"].sum() == 1 and out["negative"].sum() == 3
    assert not (out["positive"] & neg).any() and not (out["negative"] & pos).any()
    again = run(
        balanced_sample, pos, neg, num_samples=4, positive_fraction=0.25, seed=np.array([3, 4])
    )
    np.testing.assert_array_equal(again["positive"], out["positive"])
    picks = {
        tuple(
            np.flatnonzero(
                run(
                    balanced_sample,
                    pos,
                    neg,
                    num_samples=4,
                    positive_fraction=0.25,
                    seed=np.array([s, 0]),
                )["positive"][0]
            )
        )
        for s in range(8)
    }
    assert len(picks) > 1  # the seed changes which positive is taken


def test_sample_rois_labels_targets_and_padding(run):
    out = run(
        sample_rois,
        PROPOSALS,
        PROPOSAL_MASK,
        GT,
        GT_MASK,
        GT_LABELS,
        seed=np.array([0, 1]),
        num_samples=6,
        positive_fraction=1.0,
    )
    # Candidates: 2 real proposals + 2 GT = 4 sampled (3 positive first, 1 negative), 2 padding.
    np.testing.assert_array_equal(out["roi_mask"][0], [True] * 4 + [False] * 2)
    np.testing.assert_array_equal(out["is_positive"][0], [True] * 3 + [False] * 3)
    rois = out["rois"][0]
    row = {tuple(np.round(r.astype(np.float64), 3).tolist()): i for i, r in enumerate(rois[:4])}
    p0, bg = row[(0.0, 0.0, 0.5, 0.4)], row[(0.0, 0.5, 0.5, 1.0)]
    g0, g1 = row[(0.0, 0.0, 0.5, 0.5)], row[(0.5, 0.5, 1.0, 1.0)]
    assert bg == 3
    np.testing.assert_array_equal(
        out["labels"][0, [p0, g0, g1, bg]], [[1, 0, 1], [1, 0, 1], [0, 1, 0], [0, 0, 0]]
    )
    np.testing.assert_array_equal(out["matched_gt"][0, [p0, g0, g1, bg, 4]], [0, 0, 1, -1, -1])
    # p0 centre (.25, .2), w .4 -> GT 0 centre (.25, .25), w .5: dx = .125, dw = log 1.25; x10, x5.
    np.testing.assert_allclose(out["box_targets"][0, p0], [0, 1.25, 0, 5 * np.log(1.25)], atol=1e-5)
    np.testing.assert_allclose(out["box_targets"][0, [g0, g1, bg]], 0.0, atol=1e-5)
    np.testing.assert_allclose(out["max_iou"][0, [p0, g0, bg, 5]], [0.8, 1.0, 0.0, -1.0], atol=1e-5)
    np.testing.assert_array_equal(out["rois"][0, 4:], 0.0)


def test_sample_rois_fraction_without_gt_and_determinism(run):
    kw = dict(seed=np.array([5, 6]), num_samples=2, positive_fraction=0.5, add_gt=False)
    out = run(sample_rois, PROPOSALS, PROPOSAL_MASK, GT, GT_MASK, GT_LABELS, **kw)
    np.testing.assert_array_equal(out["is_positive"][0], [True, False])
    np.testing.assert_allclose(out["rois"][0], PROPOSALS[0, :2], atol=1e-6)
    again = run(sample_rois, PROPOSALS, PROPOSAL_MASK, GT, GT_MASK, GT_LABELS, **kw)
    np.testing.assert_array_equal(again["rois"], out["rois"])


def test_sample_rois_with_no_ground_truth_is_all_background(run):
    out = run(
        sample_rois,
        PROPOSALS,
        PROPOSAL_MASK,
        GT,
        np.array([[False, False]]),
        GT_LABELS,
        seed=np.array([0, 0]),
        num_samples=4,
    )
    np.testing.assert_array_equal(out["roi_mask"][0], [True, True, False, False])
    assert not out["is_positive"].any() and not out["labels"].any()
