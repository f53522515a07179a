"""--suite=input's papers'-input part (`action_tx.bench.input_paper`), quick: both layouts
hold the same keyframes and the pipeline reads both."""

import re

from action_tx.bench import input_paper


def test_quick_run_times_both_layouts(tmp_path):
    lines = input_paper.run(str(tmp_path), quick=True)
    rows = [line for line in lines if re.match(r"\| [12] \(K=", line)]
    # A 4 s clip: keyframes at 1, 2, 3 s; layout 1 writes 3 records, layout 2 one chunk.
    assert [r.split(" | ")[:2] for r in rows] == [["| 1 (K=1)", "3 / 3"], ["| 2 (K=10)", "1 / 3"]]
    mb = [float(r.split(" | ")[2]) for r in rows]
    assert 0 < mb[1] < mb[0]  # 120 frames once instead of 192 window frames
    for r in rows:
        rate = float(r.split(" | ")[3].split()[0])
        assert rate > 0 and "(4 in " in r  # 2 batches of 2 clips
    # cached: a second run converts nothing and reads the same records
    again = input_paper.run(str(tmp_path), quick=True)
    assert [
        r.split(" | ")[:3] for r in again if r.startswith("| 1 (K=") or r.startswith("| 2 (K=")
    ] == [r.split(" | ")[:3] for r in rows]
