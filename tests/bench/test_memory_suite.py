"""The memory suite's batch and report on hand-made rows (the measured run is the benchmark)."""

import numpy as np

from action_tx.bench import memory


def test_batch_holds_the_neighbouring_clips_only_for_joint():
    joint = memory.make_batch(window=3, mode="joint")
    amu = memory.make_batch(window=3, mode="amu")
    assert joint["clip"].shape == (2, 7, 8, 64, 64, 3) and amu["clip"].shape == (2, 1, 8, 64, 64, 3)
    assert joint["rois"].shape == (2, 7, 4, 4) and joint["objects"].shape == (2, 7, 2, 4)
    np.testing.assert_array_equal(joint["keyframe_index"], [40, 60])
    np.testing.assert_array_equal(joint["timestamp"], [940, 960])
    # Windows of both keyframes fit in the one video of VIDEO_LENGTH keyframes at L = 30.
    assert 60 + 30 < memory.VIDEO_LENGTH and 40 - 30 >= 0


def row(mode, window, step, fastest):
    return dict(
        mode=mode,
        window=window,
        clips_per_keyframe=1 + 2 * window * (mode == "joint"),
        step_s=step,
        min_step_s=fastest,
        step_times_s=[step],
        peak_rss_mb=900.0,
        step_rss_growth_mb=10.0,
        tf_cpu_peak_mb=4.5,
    )


def test_report_ratios_and_check():
    rows = [
        row("amu", 0, 0.2, 0.1),
        row("amu", 30, 0.22, 0.2),
        row("joint", 0, 0.2, 0.1),
        row("joint", 30, 1.0, 0.9),
    ]
    text = memory.report(rows)
    assert "| joint | 30 | 61 | 1.000 | 5.00 | 0.900 | 9.00 | 900 | 10 | 4.5 |" in text
    assert "median step: AMU at L=30 is 1.10x L=0 (within 1.15x); joint at L=30 is 5.00x" in text
    assert "fastest step: AMU at L=30 is 2.00x L=0 (NOT within 1.15x)" in text
