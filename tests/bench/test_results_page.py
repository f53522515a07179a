"""docs/results.md from heads.json (action_tx/bench/results_page.py, tools/benchmark.py
--render_results): specific cells of a page rendered from a fixed JSON, and the whole path from
matched-detection files."""

import json
import os
import subprocess
import sys

import numpy as np

from action_tx.bench import chance, claims, matching, results_page

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HEADS_JSON = """{
 "preset": "bench", "quick": false, "budgets": {"end_to_end": 600, "features": 3000},
 "machine": {"cpu": "Test CPU", "cores": 2, "python": "3.11.9",
             "load_average_start": [0.5, 0.4, 0.3], "load_average": [1.5, 1.2, 1.0]},
 "seconds": 3723.4,
 "positive_rates": {"context": {"rate": 0.48}, "long_term": {"rate": 0.5}},
 "runs": [
  {"name": "i3d", "head": "i3d", "mode": "end_to_end", "steps": 600, "status": "ok",
   "frame_map": 0.14, "gt_box_map": 0.296, "by_evidence": {"context": 0.076},
   "gt_by_evidence": {"context": 0.2, "long_term": 0.55}},
  {"name": "tx", "head": "tx", "mode": "end_to_end", "steps": 600, "status": "ok",
   "note": "the Action Transformer",
   "frame_map": 0.195, "gt_box_map": 0.36, "by_evidence": {"context": 0.102},
   "gt_by_evidence": {"context": 0.31}}
 ],
 "commands": [{"command": "python tools/train.py --head=tx", "seconds": 612.5, "status": "ok"},
              {"command": "python tools/eval.py --model_dir=runs/tx", "seconds": 20.1,
               "status": "failed"}],
 "stats": {
  "method": "two-level bootstrap", "resamples": 1000, "bootstrap_seed": 1000, "level": 0.95,
  "runs": {
   "tx": {"gt": {"all": {"mean": 0.36, "low": 0.33, "high": 0.39, "per_seed": [0.35, 0.36, 0.37]},
                 "context": {"mean": 0.412, "low": 0.371, "high": 0.455,
                             "per_seed": [0.4, 0.41, 0.426]}}},
   "i3d": {"gt": {"context": {"mean": 0.2, "low": 0.15, "high": 0.25, "per_seed": [0.2]}}}
  },
  "claims": {
   "vatx-tx-gt": {"better": {"mean": 0.412, "low": 0.371, "high": 0.455},
                  "other": {"mean": 0.2, "low": 0.15, "high": 0.25},
                  "difference": {"mean": 0.212, "low": 0.15, "high": 0.27}, "verdict": "holds"},
   "vatx-tx": {"verdict": "not measured", "missing": "no rpn matches on context of tx, i3d"}
  }
 }
}"""


def test_page_from_a_fixed_json_has_the_claims_first_and_the_cells_of_each_table():
    heads = json.loads(HEADS_JSON)
    page = results_page.render(heads, heads["stats"], source="bench_out/heads.json")
    lines = page.splitlines()
    assert "never edit by hand" in lines[3]
    assert "`python tools/benchmark.py --render_results=bench_out/heads.json`" in lines[3]
    assert page.index("## Claims") < page.index("## Runs, on each run's detections")
    row = next(x for x in lines if x.startswith("| vatx-tx-gt:"))
    assert row == (
        "| vatx-tx-gt: `tx` > `i3d` | action_transformer, Table 1, §4.2 (Tx head 'a significant "
        "5% boost' over the I3D head on GT boxes) | context, GT boxes | `tx` 0.412 [0.371, "
        "0.455] | `i3d` 0.200 [0.150, 0.250] | 0.212 [0.150, 0.270] | **holds** |"
    )
    # No interval: heads.json's single figures, and no verdict.
    row = next(x for x in lines if x.startswith("| vatx-tx:"))
    assert "`tx` 0.102 | `i3d` 0.076 | +0.026 (one figure each) | not measured |" in row
    row = next(x for x in lines if x.startswith("| aia-memory:"))
    assert row.endswith("| `aia_features` n/a | `aia_nomem_features` n/a | n/a | not measured |")
    gt_table = page[page.index("## Runs, on ground-truth boxes") :]
    tx_row = next(x for x in gt_table.splitlines() if x.startswith("| `tx` |"))
    assert tx_row == (
        "| `tx` | tx | end to end | 600 | 3 | 0.360 [0.330, 0.390] | n/a | "
        "0.412 [0.371, 0.455] | n/a | n/a | ok |"
    )
    det_table = page[page.index("## Runs, on each run's detections") :].splitlines()
    i3d_row = next(x for x in det_table if x.startswith("| `i3d` |"))  # no stats: single figures
    assert (
        i3d_row == "| `i3d` | i3d | end to end | 600 | 1 | 0.140 | n/a | 0.076 | n/a | n/a | ok |"
    )
    # The instrument: no look-alike interval, nothing decided. i3d's single long_term figure
    # (heads.json's, every other person a false positive) does not stand in for it.
    assert page.index("## Claims") < page.index("## Instrument") < page.index("## Runs")
    row = next(x for x in lines if x.startswith("| context, GT boxes | `linear_own_box`"))
    assert row.endswith("| 0.480 | n/a | n/a | not measured |")  # no counts: no random AP
    row = next(x for x in lines if x.startswith("| long_term, GT boxes | `i3d`"))
    assert row.endswith("| 0.500 | n/a | n/a | not measured |")
    assert "- `tx`: the Action Transformer" in lines
    assert "python tools/train.py --head=tx   # 612.5 s" in lines
    assert "python tools/eval.py --model_dir=runs/tx   # 20.1 s   # failed" in lines
    assert "Wall time: 3723 s (62.1 min)" in page
    assert "Machine: Test CPU, 2 logical cores, Python 3.11.9" in page
    assert "1000 resamples, --bootstrap_seed=1000" in page


def test_the_wall_time_of_a_resumed_pass_is_the_sum_of_its_invocations():
    heads = json.loads(HEADS_JSON)
    heads["invocations"] = [
        dict(started="2026-12-06T10:00:00+00:00", seconds=1626.0),
        dict(started="2026-12-06T11:00:00+00:00", seconds=836.4),
    ]
    heads["seconds_total"] = 2462.4
    page = results_page.render(heads, None)
    assert "Wall time: 2462 s (41.0 min) over 2 invocations (1626, 836 s;" in page
    heads["invocations"], heads["seconds_total"] = heads["invocations"][:1], 1626.0
    assert "Wall time: 1626 s (27.1 min) (one invocation)" in results_page.render(heads, None)


def test_a_run_is_listed_only_in_the_tables_of_the_boxes_it_was_scored_on():
    heads = json.loads(HEADS_JSON)
    blind = dict(heads["runs"][0], name="linear_own_box", modes=["gt"])
    heads["runs"].append(blind)
    page = results_page.render(heads, heads["stats"])
    det_table = page[page.index("## Runs, on each run's detections") : page.index("## Runs, on gr")]
    gt_table = page[page.index("## Runs, on ground-truth boxes") :]
    assert "| `linear_own_box` |" not in det_table and "| `linear_own_box` |" in gt_table
    assert "| `tx` |" in det_table and "| `tx` |" in gt_table  # no "modes": listed in both


def test_without_stats_the_page_shows_single_figures():
    heads = json.loads(HEADS_JSON)
    del heads["stats"]
    page = results_page.render(heads, None)
    det_table = page[page.index("## Runs, on each run's detections") :]
    row = next(x for x in det_table.splitlines() if x.startswith("| `i3d` |"))
    assert row == "| `i3d` | i3d | end to end | 600 | 1 | 0.140 | n/a | 0.076 | n/a | n/a | ok |"
    assert "No intervals" in page and "| **holds** |" not in page


def test_the_chance_row_with_intervals_gives_verdicts_and_the_projection_is_shown():
    """Issue 29 item 0: blind runs' intervals against the positive rates, rendered from a
    fixed JSON (the suite's heads.json carries positive_rates and the runs' matches)."""
    heads = json.loads(HEADS_JSON)
    heads["projected_seconds"] = 5100.0
    heads["positive_rates"]["context"]["per_class"] = {"74": [1, 1]}
    heads["stats"]["runs"]["linear_own_box"] = {
        "gt": {
            "context_lookalike": {"mean": 0.51, "low": 0.45, "high": 0.56, "per_seed": [0.5, 0.52]},
            "context": {"mean": 0.2, "low": 0.1, "high": 0.3, "per_seed": [0.2]},  # not read
        }
    }
    heads["stats"]["runs"]["i3d"]["gt"]["long_term_lookalike"] = {
        "mean": 0.8,
        "low": 0.71,
        "high": 0.88,
        "per_seed": [0.8],
    }
    page = results_page.render(heads, heads["stats"])
    lines = page.splitlines()
    row = next(x for x in lines if x.startswith("| context, GT boxes | `linear_own_box`"))
    # rate 0.48 +- 0.1 = [0.38, 0.58] holds the whole interval [0.45, 0.56]; a random ranking
    # of one positive and one look-alike: 0.75 on average, 0.5 or 1 (chance.random_ranking_ap).
    random = chance.random_ranking_ap({"74": [1, 1]})
    assert random["low"] == 0.5 and random["high"] == 1.0
    cell = results_page.format_cell(random)
    assert row.endswith(f"| 0.480 | {cell} | 0.510 [0.450, 0.560] | **holds** |")
    row = next(x for x in lines if x.startswith("| long_term, GT boxes | `i3d`"))
    assert row.endswith("| 0.500 | n/a | 0.800 [0.710, 0.880] | **fails** |")  # the cue leaks
    assert "projected before it started: 85.0 min (heads_costs.COSTS)." in page


def test_with_instrument_splits_the_chance_rows_read_the_pooled_cells():
    """A heads.json that lists instrument splits: the instrument table reads the blind runs'
    cells on val + instrument splits (stats "instrument"), not their val-only cells, and the
    section says which splits it pooled; a blind run without them is not measured."""
    heads = json.loads(HEADS_JSON)
    heads["val_splits"] = [dict(name="data0", data_seed=0), dict(name="data1", data_seed=1)]
    heads["instrument_splits"] = [dict(name="data2", data_seed=2)]
    val_only = {"mean": 0.7, "low": 0.6, "high": 0.8, "per_seed": [0.7]}
    pooled = {"mean": 0.5, "low": 0.45, "high": 0.55, "per_seed": [0.5]}
    heads["stats"]["runs"]["i3d"]["gt"]["long_term_lookalike"] = val_only
    heads["stats"]["instrument"] = {"runs": {"i3d": {"gt": {"long_term_lookalike": pooled}}}}
    page = results_page.render(heads, heads["stats"])
    lines = page.splitlines()
    row = next(x for x in lines if x.startswith("| long_term, GT boxes | `i3d`"))
    assert row.endswith("| 0.500 | n/a | 0.500 [0.450, 0.550] | **holds** |")
    row = next(x for x in lines if x.startswith("| context, GT boxes | `linear_own_box`"))
    assert row.endswith("| n/a | not measured |")
    assert "on 3 val splits pooled: the claims' 2 and 1 more (generator seeds 2," in page
    heads["instrument_refused"] = [3]  # a seed the generator's balance check refused
    page = results_page.render(heads, heads["stats"])
    assert "(generator seeds 2; 3 refused by the generator's balance check," in page


def _matches(rng, skill):
    """A tiny val set (one keyframe per person) and a model's detections on it."""
    n = 40
    boxes = np.tile([0.1, 0.1, 0.6, 0.6], (n, 1))
    labels = np.random.default_rng(5).integers(1, 3, n)  # one val set for every model
    gt = dict(
        video_id=np.array(["v"] * n, dtype=object),
        timestamp=np.arange(900, 900 + n),
        boxes=boxes,
        action_id=labels,
        person_id=np.zeros(n, dtype=int),
    )
    evidence = dict(
        video_id=gt["video_id"],
        timestamp=gt["timestamp"],
        person_id=gt["person_id"],
        action_id=labels,
        evidence=np.array(["context"] * n, dtype=object),
    )
    det = dict(
        video_id=np.repeat(gt["video_id"], 2),
        timestamp=np.repeat(gt["timestamp"], 2),
        boxes=np.repeat(boxes, 2, axis=0),
        action_id=np.tile([1, 2], n),
        score=rng.random(2 * n) + skill * (np.tile([1, 2], n) == np.repeat(labels, 2)),
    )
    return matching.match_run(gt, det, {1: "a", 2: "b"}, evidence=evidence)


def test_the_command_renders_the_page_from_matched_detection_files(tmp_path):
    rng = np.random.default_rng(0)
    runs = []
    for name, skill in (("tx", 2.0), ("i3d", 0.0)):
        files = []
        for seed in range(2):
            path = f"matches/{name}-seed{seed}_gt.npz"
            os.makedirs(tmp_path / "matches", exist_ok=True)
            matching.save_matches(str(tmp_path / path), _matches(rng, skill))
            files.append(path)
        runs.append(dict(name=name, head=name, mode="end_to_end", steps=5, matches={"gt": files}))
    (tmp_path / "heads.json").write_text(json.dumps(dict(preset="tiny", runs=runs)))
    out = tmp_path / "docs" / "results.md"
    done = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools", "benchmark.py"),
            f"--render_results={tmp_path / 'heads.json'}",
            f"--out={out}",
            "--bootstrap_resamples=200",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    row = next(x for x in page.splitlines() if x.startswith("| vatx-tx-gt:"))
    assert row.endswith("| **holds** |")
    gt_table = page[page.index("## Runs, on ground-truth boxes") :].splitlines()
    tx_row = next(x for x in gt_table if x.startswith("| `tx` |"))
    assert tx_row.startswith("| `tx` | tx | end to end | 5 | 2 | ")
    assert "[" in tx_row.split(" | ")[7]  # the context cell has an interval
    # Same seed, same page (the page names the JSON written beside it as its source); a
    # missing heads.json is one error line.
    published = tmp_path / "docs" / "results" / "heads.json"
    assert f"--render_results={published}`" in page
    again = results_page.write_page(
        str(tmp_path / "heads.json"), str(tmp_path / "again.md"), resamples=200
    )
    assert again == page.replace(str(published), str(tmp_path / "heads.json"))
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "benchmark.py"), "--render_results=nope"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "no such file: nope" in done.stderr


def test_the_instrument_cells_come_from_the_blind_runs_instrument_matches(tmp_path):
    rng = np.random.default_rng(0)
    runs = []
    for name, skill, field in (("i3d", 0.0, "matches"), ("i3d", 2.0, "instrument_matches")):
        files = []
        for seed in range(2):
            path = f"{field}-seed{seed}_gt.npz"
            matching.save_matches(str(tmp_path / path), _matches(rng, skill))
            files.append(path)
        if not runs:
            runs.append(dict(name=name, head=name, mode="end_to_end", steps=5))
        runs[0][field] = {"gt": files}
    heads = dict(preset="tiny", runs=runs, instrument_splits=[dict(name="data2", data_seed=2)])
    stats = results_page.compute_stats(heads, str(tmp_path), resamples=50)
    val = stats["runs"]["i3d"]["gt"]["all"]
    pooled = stats["instrument"]["runs"]["i3d"]["gt"]["all"]
    # The skilled instrument files score higher than the val ones of a random ranking.
    assert pooled["mean"] > val["mean"] + 0.2 and len(pooled["per_seed"]) == 2
    assert "claims" in stats and "claims" not in stats["instrument"]


def test_every_claim_of_the_page_is_a_claim_of_the_list():
    page = results_page.render({"runs": []}, None)
    ids = [x.split(":")[0][2:] for x in page.splitlines() if x.startswith("| ") and ": `" in x]
    assert ids == [c.id for c in claims.CLAIMS]


def test_the_pretrained_trunk_and_the_seed_plan_are_on_the_page():
    heads = json.loads(HEADS_JSON)
    heads["pretrain"] = dict(
        steps=2000,
        seconds=754.2,
        data_seed=10000,
        localization_ap50=0.8734,
        frame_map=0.21,
        checkpoint="bench_out/bench/pretrain/i3d_trunk",
    )
    heads["seed_plan"] = dict(seeds=3, seed_offset=0, data_seed=100, val_splits=2)
    heads["val_splits"] = [dict(name="data100", data_seed=100), dict(name="data101", data_seed=101)]
    lines = results_page.render(heads, heads["stats"]).splitlines()
    text = lines[lines.index("## Pretrained trunk") + 2]
    assert "generator seed 10000" in text and "2000 steps, training 754 s (12.6 min)" in text
    assert "person localization AP@0.5 on that data's val split 0.873" in text
    seeds = next(x for x in lines if x.startswith("Seeds: "))
    assert seeds == (
        "Seeds: 3 training seeds from 0 (--seeds, --seed_offset); val splits pooled: generator "
        "seed 100, generator seed 101 (--val_splits=2, --data_seed=100)."
    )
    heads["pretrain"] = dict(status="failed: pretrain train: TrainingError: x")
    page = results_page.render(heads, heads["stats"])
    assert "The pretraining did not finish: failed: pretrain train: TrainingError: x." in page
