"""The data_cost suite: duplication counted by hand, projections linear in the movies, and the
quick run (prepare + convert a 4 s generated clip) against the windows worked out by hand."""

import json

import pytest

from action_tx.bench import data_cost


def test_duplication_of_overlapping_windows_by_hand():
    """5 keyframes 3 frames apart, windows of 8 frames, 100 bytes a frame: keyframe k's
    window is frames 3k .. 3k + 7, so frames 0..19 are referenced (20) and 40 are stored."""
    windows = [[(("v", 3 * k + j), 100) for j in range(8)] for k in range(5)]
    d = data_cost.duplication(windows)
    assert d == dict(
        stored_frames=40,
        distinct_frames=20,
        stored_bytes=4000,
        distinct_bytes=2000,
        frame_ratio=2.0,
        byte_ratio=2.0,
    )
    assert data_cost.distinct_frames(5, 8, 3) == 20
    # Sizes differ per frame: bytes weigh each frame by its size. Frames 0, 1 of 10 and 30
    # bytes in windows [0, 1] and [1, 1] (a repeated edge frame): 10+30+30+30 over 10+30.
    d = data_cost.duplication([[(0, 10), (1, 30)], [(1, 30), (1, 30)]])
    assert (d["stored_bytes"], d["distinct_bytes"], d["byte_ratio"]) == (100, 40, 2.5)
    # Windows that do not overlap store every frame once.
    assert data_cost.distinct_frames(897, 16, 30) == 897 * 16
    with pytest.raises(ValueError, match="two records"):
        data_cost.duplication([[(0, 10)], [(0, 11)]])


def measured(frames_per_cpu_s=100.0, keyframes_per_cpu_s=2.0):
    return dict(
        num_frames=64,
        fps=30,
        prepare=dict(frames_per_cpu_s=frames_per_cpu_s, video_bytes_per_frame=5000.0),
        convert=dict(keyframes_per_cpu_s=keyframes_per_cpu_s),
        record_bytes_per_keyframe=64 * 1000.0 + 500.0,
        stored_jpeg_bytes_per_keyframe=64 * 1000.0,
        jpeg_bytes_per_frame=1000.0,
    )


def test_projection_by_hand_and_linear_in_movies():
    m = measured()
    p = data_cost.project(m, movies=10, keyframes_per_movie=900, frames_per_movie=27000)
    # CPU: 270,000 frames at 100/s = 2700 s; 9000 keyframes at 2/s = 4500 s.
    assert p["cpu_hours"] == pytest.approx(dict(prepare=0.75, convert=1.25, total=2.0))
    assert p["wall_hours"] == pytest.approx({"8": 0.25, "64": 2.0 / 64})
    # Whole movies per worker: ceil(10 / 8) = 2 rounds of 0.2 h; 64 workers: 1 round.
    assert p["wall_hours_movie_rounds"] == pytest.approx({"8": 0.4, "64": 0.2})
    # Disk: videos 270,000 x 5 kB; records 9000 x 64.5 kB; frames once: (899 x 30 + 64)
    # frames per movie x 1 kB + 9000 x 0.5 kB.
    assert p["disk_gb"] == pytest.approx(
        dict(videos=1.35, tfrecords=0.5805, tfrecords_frames_once=(10 * 27034 * 1000 + 4.5e6) / 1e9)
    )
    assert p["frame_duplication"] == pytest.approx(900 * 64 / 27034)
    double = data_cost.project(m, movies=20, keyframes_per_movie=900, frames_per_movie=27000)
    for key in ("disk_gb", "cpu_hours", "wall_hours"):
        assert double[key] == pytest.approx({k: 2 * v for k, v in p[key].items()})
    # Twice the rate, half the CPU-hours.
    fast = data_cost.project(
        measured(200.0, 4.0), movies=10, keyframes_per_movie=900, frames_per_movie=27000
    )
    assert fast["cpu_hours"]["total"] == pytest.approx(1.0)


def test_quick_run_measures_and_counts_the_windows(tmp_path):
    report = data_cost.run(str(tmp_path), quick=True)
    out = json.loads((tmp_path / "data_cost.json").read_text())
    assert out["quick"] and set(out["results"]) == {"paper", "demo", "paper_k10"}
    assert "| paper | 64 x 32 px |" in report and "268,203 keyframes" in report
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data_cost.json"]  # clips removed
    # A 4 s clip at 30 fps (frames 0..119), keyframes at 1, 2, 3 s (frames 30, 60, 90); a
    # window of W holds frames c - W/2 .. c + W/2 - 1 clipped to 0..119. W = 64: three
    # windows cover 0..119 (120 distinct), 192 stored. W = 32: 14..45, 44..75, 74..105: 92.
    for name, stored, distinct in (("paper", 192, 120), ("demo", 96, 92)):
        m = out["results"][name]["measured"]
        assert m["prepare"]["frames"] == 120 and m["convert"]["keyframes"] == 3
        assert (m["frames_stored"], m["frames_distinct"]) == (stored, distinct)
        assert m["frame_duplication"] == pytest.approx(stored / distinct)
        assert m["prepare"]["frames_per_cpu_s"] > 0 and m["convert"]["keyframes_per_cpu_s"] > 0
        # Records hold more than their JPEGs (annotations, framing): duplication > JPEG's.
        assert m["duplication"] > m["jpeg_duplication"] > 1.0
        assert m["record_bytes_per_keyframe"] > m["stored_jpeg_bytes_per_keyframe"]
        p = out["results"][name]["projected"]
        assert p["keyframes"] == 299 * 897 and p["frames"] == 299 * 27000
        assert p["wall_hours"]["8"] == pytest.approx(8 * p["wall_hours"]["64"])
        assert p["cpu_hours"]["total"] == pytest.approx(8 * p["wall_hours"]["8"])
    # Layout 2, K = 10: the three keyframes are one record storing frames 0..119 once.
    m = out["results"]["paper_k10"]["measured"]
    assert m["convert"]["keyframes"] == 3 and (m["frames_stored"], m["frames_distinct"]) == (
        120,
        120,
    )
    assert (
        m["jpeg_duplication"] == pytest.approx(1.0) and "| paper_k10 | 64 x 32 px, K=10 |" in report
    )
    # Over a whole AVA movie: 90 chunks, 89 of 10 keyframes ((10 - 1) 30 + 64 = 334 frames)
    # and one of 7 (244), over the 896 x 30 + 64 frames the windows reference.
    p = out["results"]["paper_k10"]["projected"]
    assert p["frame_duplication"] == pytest.approx((89 * 334 + 244) / 26944)
