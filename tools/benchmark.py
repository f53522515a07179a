"""Measurements that are too long for tests.

    python tools/benchmark.py --suite=input   # input pipeline clips/s (demo preset)
    python tools/benchmark.py --suite=eval    # AVA evaluator at validation scale; video-mAP
                                              # on a UCF101-24-sized split (910 videos)
    python tools/benchmark.py --suite=trunk   # Inception-I3D forward / backward FLOP/s
    python tools/benchmark.py --suite=params  # head parameter counts at the paper's sizes (§4.2)
    python tools/benchmark.py --suite=heads --preset=bench --out=DIR [--quick]  # head comparison
    python tools/benchmark.py --suite=perf --out=DIR  # input vs train step, trunk, eval, export;
        # whole-detector train-step FLOP/s vs matmul and stage shares (--perf_sections,
        # --perf_runs, --precisions, --device: see action_tx/bench/perf.py)
    python tools/benchmark.py --suite=memory  # AIA step time / memory: AMU vs joint, L=0,10,30

Each suite lives in `action_tx/bench/<suite>.py`; the report is printed and written to
`--out/<suite>.md`.
"""

import importlib
import os
import sys

import cli  # first: TF's log level and start-up options
from absl import flags

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
}

FLAGS = flags.FLAGS
flags.DEFINE_enum("suite", None, sorted(SUITES), "Which benchmark to run.")
flags.DEFINE_string("out", "bench_out", "Folder for the report and any files the suite writes.")
flags.DEFINE_string("preset", "demo", "Synthetic data preset for suites that need data.")
flags.DEFINE_bool("quick", False, "A shorter run with smaller sizes (less precise figures).")
# Options of --suite=perf only.
flags.DEFINE_list("perf_sections", ["system", "efficiency"], "perf: sections to run.")
flags.DEFINE_list(
    "perf_runs", None, "perf: efficiency runs (action_tx/bench/efficiency_runs.py); default all."
)
flags.DEFINE_list("precisions", ["float32", "mixed_bfloat16"], "perf: efficiency precisions.")
flags.DEFINE_enum("device", "auto", ["auto", "cpu", "gpu"], "perf: auto = a GPU when present.")
flags.mark_flag_as_required("suite")


def main(argv):
    del argv
    os.makedirs(FLAGS.out, exist_ok=True)
    module = importlib.import_module(SUITES[FLAGS.suite])
    options = {}
    if FLAGS.suite == "perf":
        options = dict(
            sections=FLAGS.perf_sections,
            runs=FLAGS.perf_runs,
            precisions=FLAGS.precisions,
            device=FLAGS.device,
        )
    report = module.run(out_dir=FLAGS.out, preset=FLAGS.preset, quick=FLAGS.quick, **options)
    path = os.path.join(FLAGS.out, f"{FLAGS.suite}.md")
    with open(path, "w") as f:
        f.write(report)
    print(report)
    print(f"written: {path}", file=sys.stderr)


if __name__ == "__main__":
    cli.run(main)
