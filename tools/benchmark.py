"""Measurements that are too long for tests.

    python tools/benchmark.py --suite=input   # input pipeline clips/s (demo preset)
    python tools/benchmark.py --suite=eval    # AVA evaluator at validation scale; video-mAP
                                              # on a UCF101-24-sized split (910 videos)
    python tools/benchmark.py --suite=trunk   # Inception-I3D forward / backward FLOP/s
    python tools/benchmark.py --suite=params  # head parameter counts at the paper's sizes (§4.2)
    python tools/benchmark.py --suite=heads --preset=bench --out=DIR [--quick] \
        [--seeds=3] [--seed_offset=0] [--data_seed=0] [--val_splits=4] [--instrument_splits=6]
                                              # the papers' claims: DIR/heads.json, results.md
    python tools/benchmark.py --suite=perf --out=DIR  # input vs train step, trunk, eval, export;
        # whole-detector train-step FLOP/s vs matmul and stage shares (--perf_sections,
        # --perf_runs, --precisions, --device: see action_tx/bench/perf.py)
    python tools/benchmark.py --suite=memory  # AIA step time / memory: AMU vs joint, L=0,10,30
    python tools/benchmark.py --suite=data_cost [--quick]  # prepare / convert rates, bytes and
                                              # frame duplication, projected to AVA v2.2

Each suite lives in `action_tx/bench/<suite>.py`; the report is printed and written to
`--out/<suite>.md`.

    python tools/benchmark.py --render_results=DIR/heads.json[,RERUN/heads.json] \
        [--out=docs/results.md] [--readme=README.md] \
        [--bootstrap_resamples=1000] [--bootstrap_seed=1000]

renders the results page from the heads suite's heads.json: the papers' claims with verdicts
(with a rerun's verdicts beside them), every run with 95% intervals, the machine, the time, the
commands (`action_tx/bench/results_page.py`, `results_passes.py`; --out is the page, default
docs/results.md, and the JSON it is rendered from is written beside it,
docs/results/heads.json); without --out also README's claims table.

    python tools/benchmark.py --render_perf=A/perf.json[,B/perf.json] \
        [--out=docs/results/perf.json] [--readme=README.md]

merges the efficiency sections of perf runs into --out and rewrites README's performance table
from it (`action_tx/bench/perf_table.py`).
"""

import importlib
import os
import sys

import cli  # first: TF's log level and start-up options
from absl import flags, logging

# Plain dict: suite name -> module under action_tx.bench. Imported lazily so that one suite's
# heavy dependencies do not slow another's start.
SUITES = {
    "input": "action_tx.bench.input",
    "eval": "action_tx.bench.eval",
    "trunk": "action_tx.bench.trunk",
    "params": "action_tx.bench.params",
    "heads": "action_tx.bench.heads",
    "perf": "action_tx.bench.perf",
    "memory": "action_tx.bench.memory",
    "data_cost": "action_tx.bench.data_cost",
}

FLAGS = flags.FLAGS
flags.DEFINE_enum("suite", None, sorted(SUITES), "Which benchmark to run.")
flags.DEFINE_string(
    "out",
    "bench_out",
    "Folder for the report and any files the suite writes; with --render_results: "
    "the page (default docs/results.md).",
)
flags.DEFINE_string("preset", "demo", "Synthetic data preset for suites that need data.")
flags.DEFINE_bool("quick", False, "A shorter run with smaller sizes (less precise figures).")
# Options of --suite=perf only.
flags.DEFINE_list("perf_sections", ["system", "efficiency"], "perf: sections to run.")
flags.DEFINE_list(
    "perf_runs", None, "perf: efficiency runs (action_tx/bench/efficiency_runs.py); default all."
)
flags.DEFINE_list("precisions", ["float32", "mixed_bfloat16"], "perf: efficiency precisions.")
flags.DEFINE_enum("device", "auto", ["auto", "cpu", "gpu"], "perf: auto = a GPU when present.")
flags.DEFINE_list(
    "render_results",
    None,
    "Instead of a suite: render the results page (--out, default docs/results.md), the JSON "
    "beside it (docs/results/heads.json) and README's claims table from the heads suite's "
    "heads.json, or from a pass's and its rerun's (P1/heads.json,P2/heads.json), or again from "
    "the JSON beside the page.",
)
flags.DEFINE_list(
    "render_perf",
    None,
    "Instead of a suite: merge the efficiency sections of these perf.json files into --out "
    "(default docs/results/perf.json) and rewrite README's performance table from it.",
)
flags.DEFINE_string(
    "readme",
    None,
    "--render_perf, --render_results: the README to update (default the repo's; "
    "--render_results with --out updates none unless given).",
)
flags.DEFINE_integer(
    "bootstrap_resamples", 1000, "--render_results: resamples of the intervals' bootstrap."
)
flags.DEFINE_integer(
    "bootstrap_seed",
    1000,
    "--render_results: seed of the bootstrap's draws (same seed, same page).",
)
flags.DEFINE_integer("seeds", 3, "--suite=heads: training seeds per run (--quick: 2 unless given).")
flags.DEFINE_integer(
    "seed_offset", 0, "--suite=heads: the training seeds are seed_offset + 0 .. seeds-1."
)
flags.DEFINE_integer(
    "data_seed",
    0,
    "--suite=heads: generator seed of the first val split (0: the training data's val half); "
    "the training data's generator seed stays 0.",
)
flags.DEFINE_integer(
    "val_splits",
    4,
    "--suite=heads: val splits pooled, generator seeds data_seed + 0 .. val_splits-1 "
    "(--quick: 2 unless given).",
)
flags.DEFINE_integer(
    "instrument_splits",
    6,
    "--suite=heads: more val splits (generator seeds data_seed + val_splits + 0 .. "
    "instrument_splits-1) that only the instrument's blind runs are scored on, pooled with the "
    "val splits for the instrument check's interval (--quick: 1 unless given).",
)
RESULTS_PAGE = os.path.join("docs", "results.md")
PERF_JSON = os.path.join("docs", "results", "perf.json")
SEED_FLAGS = ("seeds", "seed_offset", "data_seed", "val_splits", "instrument_splits")


def seed_plan():
    """The heads suite's `SeedPlan` from the flags (--quick: QUICK_PLAN's where not given)."""
    from action_tx.bench import heads_seeds
    from action_tx.config import ConfigError

    default = heads_seeds.QUICK_PLAN if FLAGS.quick else heads_seeds.SeedPlan()
    values = {
        name: getattr(FLAGS, name) if FLAGS[name].present else getattr(default, name)
        for name in SEED_FLAGS
    }
    try:
        return heads_seeds.SeedPlan(**values)
    except ConfigError as e:
        raise cli.CliError(str(e))


def render_results():
    from action_tx.bench import results_passes

    missing = [p for p in FLAGS.render_results if not os.path.isfile(p)]
    if missing:
        raise cli.CliError(f"--render_results: no such file: {', '.join(missing)}")
    if FLAGS.bootstrap_resamples < 1:
        raise cli.CliError(f"--bootstrap_resamples must be >= 1, got {FLAGS.bootstrap_resamples}")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = FLAGS.out if FLAGS["out"].present else os.path.join(root, RESULTS_PAGE)
    readme = FLAGS.readme or (None if FLAGS["out"].present else os.path.join(root, "README.md"))
    try:
        results_passes.render(
            FLAGS.render_results,
            out,
            readme,
            resamples=FLAGS.bootstrap_resamples,
            seed=FLAGS.bootstrap_seed,
            # The repo's page names its JSON as a path from the repository's root.
            source=None if FLAGS["out"].present else results_passes.published_path(RESULTS_PAGE),
        )
    except (ValueError, KeyError) as e:
        raise cli.CliError(f"--render_results: {e}")
    written = [out, results_passes.published_path(out)] + ([readme] if readme else [])
    print(f"written: {', '.join(written)}", file=sys.stderr)


def render_perf():
    from action_tx.bench import perf_table

    missing = [p for p in FLAGS.render_perf if not os.path.isfile(p)]
    if missing:
        raise cli.CliError(f"--render_perf: no such file: {', '.join(missing)}")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = FLAGS.out if FLAGS["out"].present else os.path.join(root, PERF_JSON)
    readme = FLAGS.readme or os.path.join(root, "README.md")
    try:
        perf_table.render(FLAGS.render_perf, out, readme)
    except (ValueError, KeyError) as e:
        raise cli.CliError(f"--render_perf: {e}")
    print(f"written: {out}, {readme}", file=sys.stderr)


def main(argv):
    del argv
    if [FLAGS.suite, FLAGS.render_results, FLAGS.render_perf].count(None) != 2:
        raise cli.CliError(
            "give one of --suite (run a benchmark), --render_results (the results page) or "
            "--render_perf (README's performance table)"
        )
    if FLAGS.render_results:
        return render_results()
    if FLAGS.render_perf:
        return render_perf()
    if not FLAGS["verbosity"].present:  # TF's per-checkpoint INFO lines drown the progress
        logging.set_verbosity(logging.WARNING)
    given = [f"--{name}" for name in SEED_FLAGS if FLAGS[name].present]
    if given and FLAGS.suite != "heads":
        raise cli.CliError(f"{', '.join(given)}: only for --suite=heads")
    kwargs = dict(seed_plan=seed_plan()) if FLAGS.suite == "heads" else {}
    os.makedirs(FLAGS.out, exist_ok=True)
    module = importlib.import_module(SUITES[FLAGS.suite])
    if FLAGS.suite == "perf":
        kwargs = dict(
            sections=FLAGS.perf_sections,
            runs=FLAGS.perf_runs,
            precisions=FLAGS.precisions,
            device=FLAGS.device,
            command="python tools/benchmark.py " + " ".join(sys.argv[1:]),
        )
    report = module.run(out_dir=FLAGS.out, preset=FLAGS.preset, quick=FLAGS.quick, **kwargs)
    path = os.path.join(FLAGS.out, f"{FLAGS.suite}.md")
    with open(path, "w") as f:
        f.write(report)
    print(report)
    print(f"written: {path}", file=sys.stderr)


if __name__ == "__main__":
    cli.run(main)
