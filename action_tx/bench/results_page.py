"""docs/results.md, generated from the heads suite's heads.json (never edited by hand).

    python tools/benchmark.py --render_results=OUT/heads.json [--out=docs/results.md]
        [--bootstrap_resamples=1000] [--bootstrap_seed=1000]

The page: the papers' claims with verdicts first (`claims.CLAIMS`; claim, paper and table,
evidence, better mean [95% interval], other mean [interval], difference [interval], verdict),
then, when heads.json has "positive_rates" (`chance.positive_rates` of the val evidence), the
instrument check (`chance.CHANCE_CHECKS`: blind runs near the positive rate), then every run
with intervals, on its detections and on ground-truth boxes, then the method, the machine, the
wall time, the pretrained trunk's cost and localization AP, and the commands.

Intervals come from `stats.summarize` (two-level bootstrap over seeds and val keyframes), in
this order of precedence: heads.json's own "stats" (a `stats.summarize` dict), or the
matched-detection files its runs list, computed here: a run entry may carry
`"matches": {"rpn": [FILE, one per seed], "gt": [...]}` (`matching.save_matches` archives; paths
relative to heads.json's folder). Without either, the page shows heads.json's single figures
and every claim "not measured".
"""

import os
from typing import Optional, Sequence

from action_tx.bench import chance
from action_tx.bench import claims as claims_lib
from action_tx.bench import matching
from action_tx.bench import stats as stats_lib
from action_tx.bench.heads_runs import EVIDENCE

COLUMNS = (stats_lib.ALL,) + tuple(EVIDENCE)
PROPOSALS_TEXT = {"rpn": "detections", "gt": "GT boxes"}
MODE_TEXT = {"end_to_end": "end to end", "features": "frozen features"}
# The figures of a run in heads.json, per proposals mode: (frame-mAP key, per-evidence key).
POINT_KEYS = {"rpn": ("frame_map", "by_evidence"), "gt": ("gt_box_map", "gt_by_evidence")}


def collect_matches(heads: dict, base_dir: str, field: str = "matches") -> dict:
    """{run: {proposals: [RunMatches per seed]}} from the runs' "matches" file lists (field
    "instrument_matches": a blind run's on the val + instrument splits)."""
    out = {}
    for run in heads.get("runs") or []:
        for proposals, files in (run.get(field) or {}).items():
            loaded = [matching.load_matches(os.path.join(base_dir, f)) for f in files]
            if loaded:
                out.setdefault(run["name"], {})[proposals] = loaded
    return out


def compute_stats(
    heads: dict,
    base_dir: str,
    claims: Sequence = claims_lib.CLAIMS,
    resamples: int = 1000,
    seed: int = 1000,
) -> Optional[dict]:
    """heads.json's "stats", else `stats.summarize` of its runs' matches, else None. With
    blind runs scored on the instrument splits, "instrument" holds their cells on val +
    instrument splits pooled ({"runs": {run: {proposals: {evidence: cell}}}})."""
    if heads.get("stats"):
        return heads["stats"]
    matches = collect_matches(heads, base_dir)
    if not matches:
        return None
    out = stats_lib.summarize(matches, claims, resamples=resamples, seed=seed)
    blind = collect_matches(heads, base_dir, "instrument_matches")
    if blind:
        out["instrument"] = dict(
            runs=stats_lib.summarize(blind, (), resamples=resamples, seed=seed)["runs"]
        )
    return out


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_cell(cell: Optional[dict]) -> str:
    """'mean [low, high]' of a stats cell, or 'n/a'."""
    if not cell or cell.get("mean") is None:
        return "n/a"
    if cell.get("low") is None:
        return _num(cell["mean"])
    return f"{cell['mean']:.3f} [{cell['low']:.3f}, {cell['high']:.3f}]"


def _point(run: Optional[dict], proposals: str, evidence: str):
    """heads.json's single figure of a run (no interval), or None."""
    if not run:
        return None
    total, by_evidence = POINT_KEYS[proposals]
    if evidence == stats_lib.ALL:
        return run.get(total)
    return (run.get(by_evidence) or {}).get(evidence)


def _run_cell(stats, runs, name, proposals, evidence) -> str:
    """The stats' 'mean [low, high]', else heads.json's single figure, else 'n/a'."""
    cell = (((stats or {}).get("runs", {}).get(name) or {}).get(proposals) or {}).get(evidence)
    return format_cell(cell) if cell else _num(_point(runs.get(name), proposals, evidence))


def _verdict_text(verdict: str) -> str:
    return f"**{verdict}**" if verdict in ("holds", "fails") else verdict


def claims_table(heads: dict, stats: Optional[dict], claims: Sequence) -> list:
    runs = {r["name"]: r for r in heads.get("runs") or []}
    lines = [
        "| claim | paper, table (paper's figures) | evidence | better: mean [95% CI] | "
        "other: mean [95% CI] | difference [95% CI] | verdict |",
        "|---" * 7 + "|",
    ]
    for c in claims:
        decided = (stats or {}).get("claims", {}).get(c.id)
        if decided and "difference" in decided:
            a, b = format_cell(decided["better"]), format_cell(decided["other"])
            diff, verdict = format_cell(decided["difference"]), decided["verdict"]
        else:
            pa, pb = (_point(runs.get(r), c.proposals, c.evidence) for r in (c.better, c.other))
            a, b = _num(pa), _num(pb)
            diff = "n/a" if pa is None or pb is None else f"{pa - pb:+.3f} (one figure each)"
            verdict = "not measured"
        paper = f"{c.paper.removesuffix('.txt')}, {c.where}" + (
            f" ({c.paper_figures})" if c.paper_figures else ""
        )
        lines.append(
            f"| {c.id}: `{c.better}` > `{c.other}` | {paper} | {c.evidence}, "
            f"{PROPOSALS_TEXT[c.proposals]} | `{c.better}` {a} | `{c.other}` {b} | {diff} | "
            f"{_verdict_text(verdict)} |"
        )
    return lines


def instrument_table(heads: dict, stats: Optional[dict]) -> list:
    """The blind runs' AP on each evidence type's look-alike set against its positive rate
    (`chance`); heads.json's "positive_rates" ({type: {"rate": ...}}, `chance.positive_rates`)
    gives the rates, the stats' `<type>_lookalike` cells the APs (matched detections only:
    heads.json's own figures count every other person as a false positive, so none stands
    in for them). When heads.json lists instrument splits, the rates and the cells are those
    of the val + instrument splits pooled (the stats' "instrument"); a blind run without
    them is not measured."""
    rates = heads.get("positive_rates") or {}
    if heads.get("instrument_splits"):
        stats = (stats or {}).get("instrument")
    lines = [
        "| evidence | blind run | cannot see | positive rate | a random ranking's AP [95%] | "
        "look-alike AP [95% CI] | verdict |",
        "|---" * 7 + "|",
    ]
    for check in chance.CHANCE_CHECKS:
        if check.evidence not in rates:
            continue
        rate = rates[check.evidence]["rate"]
        cell = (
            ((stats or {}).get("runs", {}).get(check.run) or {}).get(check.proposals) or {}
        ).get(stats_lib.lookalike(check.evidence))
        verdict = chance.chance_verdict(cell, rate) if cell else "not measured"
        random = chance.random_ranking_ap(rates[check.evidence].get("per_class") or {})
        lines.append(
            f"| {check.evidence}, {PROPOSALS_TEXT[check.proposals]} | `{check.run}` | "
            f"{check.why} | {rate:.3f} | {format_cell(random)} | {format_cell(cell)} | "
            f"{_verdict_text(verdict)} |"
        )
    return lines if len(lines) > 2 else []


def instrument_splits_text(heads: dict) -> str:
    """Which val splits the instrument check pooled: the claims' alone, or with the
    instrument's extra splits (heads.json's "instrument_splits", and the seeds the generator's
    balance check refused, "instrument_refused")."""
    extra = heads.get("instrument_splits") or []
    if not extra:
        return "on the claims' val splits"
    val = heads.get("val_splits") or []
    refused = heads.get("instrument_refused") or []
    return (
        f"on {len(val) + len(extra)} val splits pooled: the claims' {len(val)} and {len(extra)} "
        "more (generator seeds "
        + ", ".join(str(s["data_seed"]) for s in extra)
        + (
            f"; {', '.join(str(r) for r in refused)} refused by the generator's balance check"
            if refused
            else ""
        )
        + ", --instrument_splits) that only the blind runs are scored on, for a narrower "
        "interval"
    )


def runs_table(heads: dict, stats: Optional[dict], proposals: str) -> list:
    runs = {r["name"]: r for r in heads.get("runs") or []}
    lines = [
        "| run | head | mode | steps | seeds | "
        + " | ".join("frame-mAP" if e == stats_lib.ALL else e for e in COLUMNS)
        + " | status |",
        "|---" * (6 + len(COLUMNS)) + "|",
    ]
    for r in heads.get("runs") or []:
        if proposals not in r.get("modes", (proposals,)):
            continue  # not scored on these boxes (heads.json's "modes"; older files: all)
        name = r["name"]
        cells = ((stats or {}).get("runs", {}).get(name) or {}).get(proposals) or {}
        seeds = r.get("seeds", 1)  # heads.json: a count or the list of training seeds
        seeds = len(next(iter(cells.values()))["per_seed"]) if cells else seeds
        seeds = len(seeds) if isinstance(seeds, list) else seeds
        lines.append(
            f"| `{name}` | {r.get('head', '')} | {MODE_TEXT.get(r.get('mode'), r.get('mode'))} | "
            f"{r.get('steps') or 'n/a'} | {seeds} | "
            + " | ".join(_run_cell(stats, runs, name, proposals, e) for e in COLUMNS)
            + f" | {r.get('status', 'n/a')} |"
        )
    return lines


def pretrain_lines(pretrain: Optional[dict]) -> list:
    """The pretrained trunk's section: its cost and its person localization AP@0.5."""
    if not pretrain:
        return []
    lines = ["", "## Pretrained trunk", ""]
    if "checkpoint" not in pretrain:
        return lines + [f"The pretraining did not finish: {pretrain.get('status', 'n/a')}."]
    seconds = pretrain.get("seconds")
    cost = "n/a (found done)" if seconds is None else f"{seconds:.0f} s ({seconds / 60:.1f} min)"
    return lines + [
        "Every end-to-end run fine-tunes the trunk of an `i3d` detector trained on synthetic "
        f"data of generator seed {pretrain.get('data_seed')} (none of the benchmark's train or "
        f"val videos; the stand-in for Kinetics): {pretrain.get('steps')} steps, training "
        f"{cost}; person localization AP@0.5 on that data's val split "
        f"{_num(pretrain.get('localization_ap50'))} (frame-mAP {_num(pretrain.get('frame_map'))})."
        " Frozen-feature runs read the features of the `i3d` fine-tune of their seed."
    ]


def wall_time_text(heads: dict) -> str:
    """The pass's wall time: the sum over its invocations when heads.json lists them (a
    resumed pass), else the one invocation that wrote it."""
    invocations = heads.get("invocations")
    if invocations:
        total = heads.get("seconds_total", sum(i["seconds"] for i in invocations))
        text = f"{total:.0f} s ({total / 60:.1f} min)"
        if len(invocations) == 1:
            return text + " (one invocation)"
        parts = ", ".join(f"{i['seconds']:.0f}" for i in invocations)
        return (
            text + f" over {len(invocations)} invocations ({parts} s; each skipped the stages "
            "it found done; a killed invocation's time after its last heads.json write is not "
            "counted)"
        )
    seconds = heads.get("seconds")
    if seconds is None:
        return "n/a"
    return (
        f"{seconds:.0f} s ({seconds / 60:.1f} min) (the suite's invocation that wrote "
        "heads.json; runs it found done were skipped)"
    )


def render(
    heads: dict,
    stats: Optional[dict],
    claims: Sequence = claims_lib.CLAIMS,
    source: str = "",
    after_claims: Sequence[str] = (),
) -> str:
    """The page's Markdown (see module docstring); `after_claims`: lines placed after the
    claims table (`results_passes`: the rerun's verdicts)."""
    command = f"python tools/benchmark.py --render_results={source or 'OUT/heads.json'}"
    machine = heads.get("machine") or {}
    lines = [
        "# Results: the papers' claims on the synthetic benchmark",
        "",
        f"<!-- Generated by `{command}`; do not edit: rerun the command. -->",
        f"**Generated; never edit by hand.** Made by `{command}` from `{source or 'heads.json'}`"
        f" of `python tools/benchmark.py --suite=heads --preset={heads.get('preset', '?')}`"
        + (" --quick" if heads.get("quick") else "")
        + ".",
        "",
        "## Claims",
        "",
        "Each paper's own ablation, tested on the evidence type of the synthetic data that its "
        "mechanism is for (`action_tx/bench/claims.py`). Verdict from the 95% interval of the "
        "paired difference better - other: **holds** (above 0), **fails** (below 0), "
        "undecided (contains 0); not measured: a run has no result or no interval.",
        "",
        *claims_table(heads, stats, claims),
        *after_claims,
    ]
    instrument = instrument_table(heads, stats)
    where = instrument_splits_text(heads)
    if instrument:
        lines += [
            "",
            "## Instrument: blind runs score near chance",
            "",
            "A run that cannot see an evidence type's deciding cue must score within 0.1 of the "
            "type's positive rate (labels / (labels + matched negatives), mean over classes; "
            "`action_tx/bench/chance.py`) on the look-alike set: the type's labels against its "
            f"matched negatives, every other detection left out, {where}. **holds** when the whole "
            "interval is inside rate +- 0.1, **fails** when entirely outside. A ranking at "
            "random scores a little above the rate (the precision envelope keeps early lucky "
            "hits); its AP on the same counts is shown beside it (`chance.random_ranking_ap`).",
            "",
            *instrument,
        ]
    for proposals, title in (("rpn", "on each run's detections"), ("gt", "on ground-truth boxes")):
        lines += [
            "",
            f"## Runs, {title}",
            "",
            "Frame-mAP@0.5 and AP per evidence type: mean over seeds [95% interval]; a "
            "figure without an interval is heads.json's single run.",
            "",
            *runs_table(heads, stats, proposals),
        ]
    notes = [r for r in heads.get("runs") or [] if r.get("note")]
    if notes:
        lines += ["", "Runs:"] + [f"- `{r['name']}`: {r['note']}" for r in notes]
    lines += ["", "## Method", ""]
    if stats:
        lines.append(
            f"Intervals: {stats.get('method')}; {stats.get('resamples')} resamples, "
            f"--bootstrap_seed={stats.get('bootstrap_seed')}, level {stats.get('level')}. "
            "A resample draws each run's seeds with replacement and one set of val keyframes "
            "with replacement, the same for both runs of a claim."
        )
    else:
        lines.append(
            "No intervals: heads.json has neither stats nor matched-detection files; the "
            "figures are single runs."
        )
    lines += pretrain_lines(heads.get("pretrain"))
    budgets = heads.get("budgets") or {}
    plan = heads.get("seed_plan") or {}
    splits = heads.get("val_splits") or []
    lines += [
        "",
        "## Machine and time",
        "",
        f"Preset {heads.get('preset', '?')}; step budgets "
        + (", ".join(f"{MODE_TEXT.get(m, m)} {n}" for m, n in budgets.items()) or "n/a")
        + ".",
        "Seeds: "
        + (
            f"{plan['seeds']} training seeds from {plan['seed_offset']} (--seeds, --seed_offset)"
            if plan
            else "n/a"
        )
        + "; val splits pooled: "
        + (", ".join(f"generator seed {s['data_seed']}" for s in splits) or "n/a")
        + (
            f" (--val_splits={plan['val_splits']}, --data_seed={plan['data_seed']})."
            if plan
            else "."
        ),
        f"Machine: {machine.get('cpu', 'n/a')}, {machine.get('cores', 'n/a')} logical cores, "
        f"Python {machine.get('python', 'n/a')}; load average at the start "
        f"{', '.join(str(x) for x in machine.get('load_average_start') or []) or 'n/a'}, at "
        f"the end {', '.join(str(x) for x in machine.get('load_average') or []) or 'n/a'}.",
        "Wall time: "
        + wall_time_text(heads)
        + (
            f"; projected before it started: {projected / 60:.1f} min (heads_costs.COSTS)."
            if (projected := heads.get("projected_seconds"))
            else "."
        ),
        "",
        "## Commands",
        "",
        "```",
    ]
    for c in heads.get("commands") or []:
        timing = "" if c.get("seconds") is None else f"   # {c['seconds']} s"
        status = f"   # {c['status']}" if c.get("status") not in (None, "ok") else ""
        lines.append(f"{c['command']}{timing}{status}")
    lines += ["```", ""]
    return "\n".join(lines)


def write_page(
    heads_json: str,
    out: str = os.path.join("docs", "results.md"),
    *,
    resamples: int = 1000,
    seed: int = 1000,
    claims: Sequence = claims_lib.CLAIMS,
) -> str:
    """Reads heads.json, computes or reads the stats, writes the page to `out`; returns it."""
    import json

    with open(heads_json) as f:
        heads = json.load(f)
    base_dir = os.path.dirname(os.path.abspath(heads_json))
    stats = compute_stats(heads, base_dir, claims, resamples, seed)
    page = render(heads, stats, claims, source=heads_json)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        f.write(page)
    return page
