"""README's performance table: rendered from the perf suite's JSON; README holds exactly it."""

import json
import os

import pytest

from action_tx.bench import perf_table, stages

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _result(run, precision, step_s, non_trunk):
    shares = {s: 0.0 for s in stages.STAGES}
    shares.update(trunk=1.0 - non_trunk, head=non_trunk)
    return dict(
        run=run,
        description=f"the {run} model",
        precision=precision,
        step_s=step_s,
        step_flops=6e11,
        achieved_flop_per_s=6e11 / step_s,
        matmul_flop_per_s=2e11,
        fraction_of_matmul=0.8,
        stage_shares=shares,
        non_trunk_share=non_trunk,
        setup_s=30.0,  # dropped by merge
    )


def _perf(results, command="python tools/benchmark.py --suite=perf"):
    return dict(
        command=command,
        machine=dict(cpu="CPU X", cores=2, load_average=[0.1, 0, 0], load_average_end=[1.5, 1, 0]),
        seconds=204.4,
        efficiency=dict(device="cpu", device_name="CPU X", jit_compile=False, results=results),
    )


def test_table_from_a_fixed_json():
    merged = perf_table.merge(
        [
            _perf([_result("tx", "float32", 3.0, 0.1), _result("tx", "mixed_bfloat16", 2.0, 0.09)]),
            _perf([_result("aia", "mixed_bfloat16", 1.0, 0.05)], command="cmd B"),
        ]
    )
    assert [r["source"] for r in merged["rows"]] == [0, 0, 1]
    assert "setup_s" not in merged["rows"][0]
    lines = perf_table.table_lines(merged)
    assert lines[0] == perf_table.BEGIN and lines[-1] == perf_table.END
    rows = [line for line in lines if line.startswith("| tx") or line.startswith("| aia")]
    # float32 3.0 s / bfloat16 2.0 s = 1.50x; 6e11 FLOP in 2 s = 300 GFLOP/s; the AIA run has
    # no float32 row in its source, so no speed-up.
    assert rows[1].startswith("| tx | mixed_bfloat16 | 2.000 | 1.50x | 300.0 | 0.80 | **0.090** |")
    assert rows[0].startswith("| tx | float32 | 3.000 | 1.00x | 200.0 |")
    assert rows[2].startswith("| aia | mixed_bfloat16 | 1.000 | - | 600.0 |")
    assert any(
        line.startswith("Source 2: `cmd B` on CPU X (XLA off), load average 0.1 at")
        for line in lines
    )


def test_a_run_measured_twice_is_refused():
    twice = [
        _perf([_result("tx", "float32", 3.0, 0.1)]),
        _perf([_result("tx", "float32", 2.9, 0.1)]),
    ]
    with pytest.raises(ValueError, match="measured twice"):
        perf_table.merge(twice)
    with pytest.raises(ValueError, match="no efficiency section"):
        perf_table.merge([dict(_perf([]), efficiency=None)])


def test_replace_block_and_render(tmp_path):
    with pytest.raises(ValueError, match="block to replace"):
        perf_table.replace_block("no markers here", ["x"])
    source = tmp_path / "perf.json"
    source.write_text(json.dumps(_perf([_result("tx", "float32", 3.0, 0.1)])))
    # A README without the block is refused before anything is written.
    plain = tmp_path / "PLAIN.md"
    plain.write_text("# T\n")
    with pytest.raises(ValueError, match="block to replace"):
        perf_table.render([str(source)], str(tmp_path / "none.json"), str(plain))
    assert plain.read_text() == "# T\n" and not (tmp_path / "none.json").exists()
    readme = tmp_path / "README.md"
    readme.write_text(f"# T\n\nbefore\n{perf_table.BEGIN}\nold\n{perf_table.END}\nafter\n")
    out = tmp_path / "merged.json"
    merged = perf_table.render([str(source)], str(out), str(readme))
    text = readme.read_text()
    assert text.startswith("# T\n\nbefore\n") and text.endswith("\nafter\n") and "old" not in text
    assert perf_table.block(text) == "\n".join(perf_table.table_lines(merged))
    assert json.loads(out.read_text()) == merged


def test_readme_table_is_the_committed_json():
    # README's table is generated: rerun `tools/benchmark.py --render_perf` instead of editing.
    with open(os.path.join(ROOT, "docs", "results", "perf.json")) as f:
        merged = json.load(f)
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert perf_table.block(readme) == "\n".join(perf_table.table_lines(merged))
