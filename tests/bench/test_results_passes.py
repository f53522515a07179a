"""The published results (action_tx/bench/results_passes.py): a pass and its rerun compared
claim by claim, the files `tools/benchmark.py --render_results` writes, and README and
docs/results.md holding exactly the rendering of the committed docs/results/heads.json."""

import json
import os

import pytest

from action_tx.bench import claims, perf_table, results_passes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _claim(verdict, mean):
    cell = dict(mean=mean, low=mean - 0.05, high=mean + 0.05)
    return dict(better=cell, other=cell, difference=cell, verdict=verdict)


def _pass(seed_offset, data_seed, verdicts):
    return dict(
        preset="bench",
        seed_plan=dict(seeds=3, seed_offset=seed_offset, data_seed=data_seed, val_splits=4),
        seconds=4000.0,
        runs=[],
        stats=dict(claims={cid: _claim(v, m) for cid, (v, m) in verdicts.items()}),
    )


FIRST = _pass(
    0,
    0,
    {
        "vatx-tx-gt": ("holds", 0.2),
        "stage-fc": ("fails", -0.1),
        "hgrnn-window": ("undecided", 0.01),
    },
)
RERUN = _pass(
    3,
    100,
    {
        "vatx-tx-gt": ("holds", 0.15),
        "stage-fc": ("holds", 0.08),
        "hgrnn-window": ("holds", 0.09),
    },
)


def test_verdicts_agree_only_where_both_passes_decide():
    rows = {r["id"]: r for r in results_passes.verdicts([FIRST, RERUN])}
    assert rows["vatx-tx-gt"] == dict(id="vatx-tx-gt", verdicts=["holds", "holds"], agree=True)
    assert rows["stage-fc"]["agree"] is False
    assert rows["hgrnn-window"]["agree"] is None  # pass 1 does not decide it
    assert rows["acar-acfb"]["verdicts"] == ["not measured", "not measured"]
    assert results_passes.agreement_line([FIRST, RERUN]) == (
        f"Both passes decide 2 of {len(claims.CLAIMS)} claims and agree on 1 of them; they "
        "disagree on stage-fc."
    )
    # One pass: nothing to agree on.
    assert all(r["agree"] is None for r in results_passes.verdicts([FIRST]))


def test_the_claims_table_puts_both_passes_side_by_side():
    lines = results_passes.claims_lines([FIRST, RERUN])
    assert "pass 1 (--seed_offset=0 --data_seed=0)" in lines[0]
    assert "pass 2 (--seed_offset=3 --data_seed=100)" in lines[0]
    assert lines[0].count("|") - 1 == lines[1].count("|---") == 8
    row = next(x for x in lines if x.startswith("| stage-fc:"))
    assert row.endswith(
        "| -0.100 [-0.150, -0.050] | **fails** | 0.080 [0.030, 0.130] | **holds** | **no** |"
    )
    row = next(x for x in lines if x.startswith("| hgrnn-window:"))
    assert row.endswith("| undecided | 0.090 [0.040, 0.140] | **holds** | n/a |")
    assert len(lines) == 2 + len(claims.CLAIMS)


def test_the_rerun_section_shows_pass_2s_instrument_check():
    rerun = dict(
        RERUN,
        positive_rates={"long_term": {"rate": 0.46}},
        stats=dict(
            RERUN["stats"],
            runs={"i3d": {"gt": {"long_term_lookalike": dict(mean=0.25, low=0.21, high=0.29)}}},
        ),
    )
    section = results_passes.rerun_section([FIRST, rerun])
    row = next(x for x in section if x.startswith("| long_term, GT boxes | `i3d`"))
    assert row.endswith("| 0.460 | n/a | 0.250 [0.210, 0.290] | **fails** |")  # no counts
    # Without positive rates (an older heads.json): no instrument lines.
    assert not any(
        x.startswith("| long_term") for x in results_passes.rerun_section([FIRST, RERUN])
    )


def test_render_writes_the_json_the_page_and_readme_and_renders_again_the_same(tmp_path):
    paths = []
    for name, one in (("p1", FIRST), ("p2", RERUN)):
        os.makedirs(tmp_path / name)
        paths.append(str(tmp_path / name / "heads.json"))
        with open(paths[-1], "w") as f:
            json.dump(one, f)  # heads.json's own "stats": taken as they are
    readme = tmp_path / "README.md"
    readme.write_text(f"# T\n\n{results_passes.BEGIN}\nold\n{results_passes.END}\nafter\n")
    out = tmp_path / "docs" / "results.md"
    with pytest.raises(ValueError, match="is a folder"):
        results_passes.render(paths, str(tmp_path), str(readme))
    assert not (tmp_path / "results").exists()  # nothing written
    results_passes.render(paths, str(out), str(readme))
    published = tmp_path / "docs" / "results" / "heads.json"
    passes = json.loads(published.read_text())["passes"]
    assert [p["source"] for p in passes] == paths
    page = out.read_text()
    assert "## Rerun: other training seeds and val splits" in page
    assert page.index("## Rerun") < page.index("## Runs, on each run's detections")
    assert f"--render_results={published}" in page
    text = readme.read_text()
    assert text.endswith("\nafter\n") and "\nold\n" not in text
    assert "agree on 1 of them" in perf_table.block(text, results_passes.BEGIN, results_passes.END)
    # Again from the published file alone: the same page and README.
    before = (page, text)
    results_passes.render([str(published)], str(out), str(readme))
    assert (out.read_text(), readme.read_text()) == before
    # A README without the block is refused before anything is written.
    readme.write_text("# no block\n")
    out.unlink()
    with pytest.raises(ValueError, match="claims-table"):
        results_passes.render(paths, str(out), str(readme))
    assert not out.exists()


def test_readme_and_the_results_page_are_the_committed_json():
    # Generated: rerun `python tools/benchmark.py --render_results=...` instead of editing.
    published = os.path.join(ROOT, "docs", "results", "heads.json")
    passes = results_passes.load_passes([published])
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    expected = "\n".join(results_passes.readme_lines(passes))
    assert perf_table.block(readme, results_passes.BEGIN, results_passes.END) == expected
    with open(os.path.join(ROOT, "docs", "results.md")) as f:
        page = f.read()
    assert page == results_passes.page(passes, source=os.path.join("docs", "results", "heads.json"))
