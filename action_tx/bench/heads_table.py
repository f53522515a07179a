"""The head comparison's report: result dicts -> DIR/heads.md (Markdown) and DIR/heads.json.

A result dict (one per run; `action_tx.bench.heads` fills it, any key may be None):
  name, head, mode ("end_to_end" | "features"), steps, status ("ok", "failed: ...",
  "not run: ..."), note, frame_map (frame-mAP@0.5 on detections), gt_box_map (on ground-truth
  boxes), per_category {category: mAP}, by_evidence {evidence type: mAP}, gt_by_evidence (the
  same on ground-truth boxes), head_params,
  trainable_params, step_time_s (median seconds per training step), train_seconds (wall time
  of the train stage), inference_kf_s (keyframes/s of the timed evaluation pass).
"""

import json
from typing import Dict, List, Optional, Sequence

from action_tx.bench.heads_runs import EVIDENCE

MODE_TEXT = {"end_to_end": "end to end", "features": "frozen features"}


def _num(value, digits=3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _count(value) -> str:
    if value is None:
        return "n/a"
    return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.1f}k"


def evaluate_checks(results: Sequence[dict], checks) -> List[dict]:
    """checks: (better, other, evidence, source) tuples -> dicts with both APs and `holds` on
    the detections (a, b, holds) and on ground-truth boxes (gt_a, gt_b, gt_holds); holds is
    True / False, None when either run has no figure. End-to-end runs train their own RPN, so
    the detection APs also move with each run's person recall; the GT-box ones compare the
    heads' classification alone."""
    by_name = {r["name"]: r for r in results}

    def compare(better, other, evidence, key):
        a = (by_name.get(better, {}).get(key) or {}).get(evidence)
        b = (by_name.get(other, {}).get(key) or {}).get(evidence)
        return a, b, None if a is None or b is None else bool(a > b)

    out = []
    for better, other, evidence, source in checks:
        a, b, holds = compare(better, other, evidence, "by_evidence")
        gt_a, gt_b, gt_holds = compare(better, other, evidence, "gt_by_evidence")
        out.append(
            dict(
                better=better,
                other=other,
                evidence=evidence,
                source=source,
                a=a,
                b=b,
                holds=holds,
                gt_a=gt_a,
                gt_b=gt_b,
                gt_holds=gt_holds,
            )
        )
    return out


def categories_of(results: Sequence[dict]) -> List[str]:
    """Category names in first-seen order over all results."""
    names: List[str] = []
    for r in results:
        for name in r.get("per_category") or {}:
            if name not in names:
                names.append(name)
    return names


def _other_budgets(results: Sequence[dict], budgets: Dict[str, int]) -> str:
    """' (except ...)' naming the runs whose steps differ from their mode's budget, or ''."""
    others = [
        f"{r['name']} {r['steps']}"
        for r in results
        if r.get("steps") is not None and r.get("steps") != budgets.get(r.get("mode"))
    ]
    return f" (except {', '.join(others)})" if others else ""


def to_markdown(
    results: Sequence[dict],
    *,
    preset: str,
    quick: bool,
    budgets: Dict[str, int],
    machine: dict,
    commands: Sequence[dict],
    checks: Sequence[dict],
    seconds: Optional[float] = None,
    title: str = "Head comparison",
) -> str:
    """The Markdown report: main table, per-category table, checks, machine, commands."""
    lines = [
        f"# {title} ({preset} preset{', quick' if quick else ''})",
        "",
        "Same trunk (i3d_tiny from scratch), same data, same step budget: "
        + ", ".join(f"{MODE_TEXT.get(m, m)} {n} steps" for m, n in budgets.items())
        + _other_budgets(results, budgets)
        + ". Frame-mAP@0.5 on the val split's detections; GT-box mAP scores the classifier "
        "on ground-truth boxes. AP per evidence type of the synthetic data."
        + (
            " --quick checks that every stage of every run works: its models have "
            "trained a few steps, so their figures (frame-mAP near 0: the RPN does not "
            "propose people yet) say nothing about the heads."
            if quick
            else ""
        ),
        "",
        "| run | head | mode | steps | frame-mAP | GT-box mAP | "
        + " | ".join(EVIDENCE)
        + " | head params | trainable params | step (ms) | "
        "train (s) | inference kf/s | status |",
        "|---" * (12 + len(EVIDENCE)) + "|",
    ]
    for r in results:
        ev = r.get("by_evidence") or {}
        step = r.get("step_time_s")
        lines.append(
            f"| {r['name']} | {r['head']} | {MODE_TEXT.get(r['mode'], r['mode'])} | "
            f"{r.get('steps') or 'n/a'} | {_num(r.get('frame_map'))} | "
            f"{_num(r.get('gt_box_map'))} | "
            + " | ".join(_num(ev.get(e)) for e in EVIDENCE)
            + f" | {_count(r.get('head_params'))} | {_count(r.get('trainable_params'))} | "
            f"{'n/a' if step is None else f'{step * 1e3:.0f}'} | "
            f"{_num(r.get('train_seconds'), 0)} | {_num(r.get('inference_kf_s'), 1)} | "
            f"{r.get('status', 'n/a')} |"
        )
    cats = categories_of(results)
    if cats:
        lines += [
            "",
            "mAP per category (detections):",
            "",
            "| run | " + " | ".join(cats) + " |",
            "|---" * (len(cats) + 1) + "|",
        ]
        for r in results:
            per = r.get("per_category") or {}
            lines.append(f"| {r['name']} | " + " | ".join(_num(per.get(c)) for c in cats) + " |")
    notes = [r for r in results if r.get("note")]
    if notes:
        lines += ["", "Runs:"] + [f"- `{r['name']}`: {r['note']}" for r in notes]
    if checks:
        lines += [
            "",
            "Checks (AP per evidence type on the detections, then on ground-truth "
            "boxes; 'n/a' where a run has no result):",
            "",
            "| check | evidence | AP | AP | holds | GT-box AP | GT-box AP | holds | asked by |",
            "|---" * 9 + "|",
        ]
        verdict = {True: "yes", False: "**no**", None: "n/a"}
        for c in checks:
            lines.append(
                f"| {c['better']} > {c['other']} | {c['evidence']} | {_num(c['a'])} | "
                f"{_num(c['b'])} | {verdict[c['holds']]} | {_num(c.get('gt_a'))} | "
                f"{_num(c.get('gt_b'))} | {verdict[c.get('gt_holds')]} | "
                f"{c['source']} |"
            )
    lines += [
        "",
        "Step time: median of the trainer's TensorBoard `examples_per_second` "
        "(first logging window, which holds the tracing, left out). Inference kf/s: val "
        "keyframes over the whole timed evaluation pass (restore, tracing, detection, "
        "scoring); for frozen-feature runs the trunk is not in it.",
        "",
        f"Machine: {machine.get('cpu')}, {machine.get('cores')} logical cores, load "
        f"average (1, 5, 15 min) at the start "
        f"{', '.join(str(x) for x in machine.get('load_average_start') or [])} and at "
        f"the end {', '.join(str(x) for x in machine.get('load_average') or [])}; "
        f"Python {machine.get('python')}.",
    ]
    if seconds is not None:
        lines.append(
            f"Suite wall time: {seconds:.0f} s (this invocation; runs that already "
            "had results were skipped)."
        )
    lines += ["", "Commands (in order):", "", "```"]
    for c in commands:
        suffix = f"   # {c['status']}" if c.get("status") not in (None, "ok") else ""
        timing = "" if c.get("seconds") is None else f"   # {c['seconds']} s"
        lines.append(f"{c['command']}{timing}{suffix}")
    lines += ["```", ""]
    return "\n".join(lines)


def to_json(
    results: Sequence[dict],
    *,
    preset: str,
    quick: bool,
    budgets: Dict[str, int],
    machine: dict,
    commands: Sequence[dict],
    checks: Sequence[dict],
    seconds: Optional[float] = None,
) -> str:
    return json.dumps(
        dict(
            preset=preset,
            quick=quick,
            budgets=dict(budgets),
            machine=machine,
            seconds=seconds,
            runs=list(results),
            checks=list(checks),
            commands=list(commands),
        ),
        indent=1,
    )
