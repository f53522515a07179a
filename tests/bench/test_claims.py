"""The papers' claims as data (action_tx/bench/claims.py): they name runs that exist, and the
figures they quote are in the papers."""

import dataclasses
import pathlib
import re

import pytest

from action_tx.bench import claims, heads_runs

PAPERS = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "papers"
RUNS = heads_runs.RUNS + claims.VARIANT_RUNS


def test_every_claim_names_runs_of_the_run_list():
    heads_runs.check_runs(RUNS)  # variants depend on earlier runs only
    claims.check_claims(claims.CLAIMS, [r.name for r in RUNS])


def test_a_missing_run_is_named():
    names = [r.name for r in RUNS if r.name != "stage_no_objects"]
    with pytest.raises(ValueError, match="'stage-objects': other run 'stage_no_objects'"):
        claims.check_claims(claims.CLAIMS, names)
    bad = dataclasses.replace(claims.CLAIMS[0], evidence="smell", proposals="oracle")
    with pytest.raises(ValueError) as e:
        claims.check_claims([bad, bad], [r.name for r in RUNS])
    for part in ("appears twice", "unknown evidence 'smell'", "proposals 'oracle'"):
        assert part in str(e.value)


def test_the_claims_issue_29_lists_are_there():
    pairs = {(c.better, c.other, c.evidence, c.proposals) for c in claims.CLAIMS}
    for expected in (
        ("tx", "i3d", "context", "gt"),  # VATX Tx > I3D on GT boxes
        ("tx_i3d", "tx", "all", "rpn"),  # Tx+I3D >= both
        ("tx_i3d", "i3d", "all", "rpn"),
        ("stage", "stage_no_temporal", "long_term", "rpn"),
        ("stage", "stage_no_objects", "context", "rpn"),
        ("stage", "stage_no_proximity", "context", "rpn"),
        ("stage", "stage_transformer", "context", "rpn"),
        ("hgrnn", "hgrnn_l0", "long_term", "rpn"),
        ("hgrnn", "hgrnn_iter1", "context", "rpn"),
        ("acar", "acar_acrn", "context", "rpn"),  # HR2O > ACRN > no relations
        ("acar_acrn", "linear_features", "context", "rpn"),
        ("acar_acfb", "acar", "long_term", "rpn"),
        ("aia_features", "aia_nomem_features", "long_term", "rpn"),
        ("aia_serial_features", "aia_parallel_features", "context", "rpn"),
        ("aia_features", "aia_serial_features", "context", "rpn"),  # dense serial best
        ("aia_features", "aia_parallel_features", "context", "rpn"),
    ):
        assert expected in pairs, expected


def test_each_variant_changes_one_option_of_its_base():
    base = {r.name: r for r in heads_runs.RUNS}
    expected = {
        "stage_no_temporal": ("stage", {"head.temporal_extent": 0}),
        "stage_no_objects": ("stage", {"head.use_objects": False}),
        "stage_no_proximity": ("stage", {"head.use_proximity": False}),
        "stage_transformer": ("stage", {"head.attention": "transformer"}),
        "hgrnn_iter1": ("hgrnn", {"head.iterations": 1}),
        "acar_acrn": ("acar", {"head.num_blocks": 0}),
        "acar_rn": ("acar", {"head.relation": "rn"}),
        "aia_serial_features": ("aia_features", {"head.structure": "serial"}),
        "aia_parallel_features": ("aia_features", {"head.structure": "parallel"}),
    }
    assert {v.name for v in claims.VARIANT_RUNS} == set(expected)
    for v in claims.VARIANT_RUNS:
        parent, change = expected[v.name]
        b = base[parent]
        assert v.overrides == {**b.overrides, **change} and v.ablation
        assert (v.head, v.mode, v.features_from, v.budget_scale) == (
            b.head,
            b.mode,
            b.features_from,
            b.budget_scale,
        )


def test_quoted_figures_and_tables_are_in_the_papers():
    if not PAPERS.is_dir():
        pytest.skip(f"{PAPERS} is absent (the papers exist only on the project's machines)")
    for c in claims.CLAIMS:
        text = (PAPERS / c.paper).read_text()
        for number in re.findall(r"\d+\.\d+", c.paper_figures):
            assert number in text, (c.id, number)
        for table in re.findall(r"Table (\d)", c.where):
            assert f"Table {table}" in text, (c.id, table)
        if "5% boost" in c.paper_figures:
            assert "significant 5% boost" in text
