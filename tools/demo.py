r"""The whole job end to end on the synthetic dataset (`make demo`).

    python tools/demo.py --data_dir=data/synthetic_demo --out_dir=demo_out [--video=FILE]

Runs the project's own tools, printing each command before it runs, so every step can be
repeated by hand:
  1. data      tools/make_synthetic_ava.py --preset=demo --write_videos (when DATA/annotations
               is absent);
  2. tfrecords tools/create_ava_tfrecords.py for train and val (when a manifest is absent), then
               a summary of the splits (videos, keyframes, persons, positives per class);
  3. train     tools/train.py --flagfile=configs/demo.flags (resumes from OUT/model by itself);
  4. eval      tools/eval.py on the val split: frame-mAP@0.5 and AP per evidence type, and
               with --proposals=gt (ground-truth boxes: the classification-only bound);
  5. export    tools/export_saved_model.py into a fresh OUT/saved_model (re-exported every run:
               the checkpoint may have changed);
  6. detect    tools/detect.py on --video (default: the first val video of DATA/videos/),
               outputs in OUT/detect/.
Stage wall times and the mAP are printed at the end and written to OUT/demo_summary.json.
Exit status: 2 on bad flags or inputs (one line), 1 when a stage fails.
"""

import collections
import csv
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

from absl import app, flags

TOOLS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TOOLS)
sys.path.insert(0, ROOT)  # `from action_tx.data import ava` from a plain checkout

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "data_dir",
    "data/synthetic_demo",
    "Synthetic AVA root (generated when DATA/annotations is absent).",
)
flags.DEFINE_string(
    "out_dir",
    "demo_out",
    "TFRecords, model, evaluation, SavedModel, detections and demo_summary.json.",
)
flags.DEFINE_string(
    "config",
    os.path.relpath(os.path.join(ROOT, "configs", "demo.flags")),
    "Training flagfile; its paths are overridden by --data_dir/--out_dir.",
)
flags.DEFINE_string(
    "video", None, "Video for tools/detect.py (default: DATA/videos/<first val video>.mp4)."
)
flags.DEFINE_string("preset", "demo", "Synthetic preset when the data is generated.")
flags.DEFINE_integer("seed", 0, "Synthetic data seed when the data is generated.")
flags.DEFINE_integer("train_steps", None, "Override the config's --train_steps.")
flags.DEFINE_bool(
    "gt_eval",
    True,
    "Also score the classifier on ground-truth boxes "
    "(--proposals=gt: the classification-only upper bound).",
)
flags.DEFINE_integer("detect_keyframes", 0, "tools/detect.py --max_keyframes (0: the whole video).")


class InputError(ValueError):
    """Bad flags or inputs: one line, exit status 2."""


class StageError(RuntimeError):
    """A tool failed: exit status 1."""


def run_tool(stage, tool, *args):
    """Runs tools/<tool> with this Python, printing the command first; raises StageError."""
    command = [sys.executable, os.path.relpath(os.path.join(TOOLS, tool)), *args]
    print(f"\n=== {stage}\n$ {shlex.join(command)}", flush=True)
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    code = subprocess.call(command, env=env)
    if code:
        raise StageError(f"stage '{stage}' failed (exit status {code}): {shlex.join(command)}")


def split_summary(annotations_csv, manifest_json=None):
    """Counts of one split from its AVA CSV (and converter manifest, when given) -> dict with
    videos, keyframes, persons (person-keyframes), rows and per_class {action_id: positives}."""
    keys, persons, per_class, rows = set(), set(), collections.Counter(), 0
    with open(annotations_csv, newline="") as f:
        for line, row in enumerate(csv.reader(f), 1):
            if not row:
                continue
            if len(row) < 8:
                raise InputError(f"{annotations_csv}:{line}: expected 8 columns, got {len(row)}")
            video, timestamp, action, person = row[0], row[1], row[6], row[7]
            keys.add((video, timestamp))
            persons.add((video, timestamp, person))
            per_class[int(action)] += 1
            rows += 1
    out = {
        "videos": len({v for v, _ in keys}),
        "keyframes": len(keys),
        "persons": len(persons),
        "rows": rows,
        "per_class": dict(sorted(per_class.items())),
    }
    if manifest_json:
        with open(manifest_json) as f:
            manifest = json.load(f)
        out["keyframes_written"] = manifest["keyframes"]["written"]
        out["shards"] = len(manifest["shards"])
    return out


def print_data_summary(summaries, names):
    splits = list(summaries)
    print(
        "\n"
        + "  ".join(
            f"{s}: {c['videos']} videos, {c['keyframes']} keyframes, "
            f"{c['persons']} person-keyframes"
            for s, c in summaries.items()
        )
    )
    print(f"{'id':>4}  {'class':<40}" + "".join(f"{s:>8}" for s in splits))
    for class_id in sorted(names):
        print(
            f"{class_id:>4}  {names[class_id][:40]:<40}"
            + "".join(f"{summaries[s]['per_class'].get(class_id, 0):>8}" for s in splits)
        )


def read_label_names(path):
    from action_tx.data import ava  # no TensorFlow behind it

    label_map = ava.read_label_map(path)
    return {i: label_map.names[i] for i in label_map.ids}


def first_val_video(data_dir):
    with open(os.path.join(data_dir, "annotations", "ava_val.csv"), newline="") as f:
        for row in csv.reader(f):
            if row:
                return row[0]
    raise InputError(f"{data_dir}/annotations/ava_val.csv: no rows")


def latest_results(eval_dir):
    """-> the newest ckpt-N_results.json of tools/eval.py in eval_dir, as a dict."""
    found = [n for n in os.listdir(eval_dir) if n.endswith("_results.json")]
    if not found:
        raise StageError(f"{eval_dir}: tools/eval.py wrote no *_results.json")
    name = max(found, key=lambda n: int(n.split("_")[0].split("-")[-1]))
    with open(os.path.join(eval_dir, name)) as f:
        return json.load(f)


def evidence_maps(results):
    return {k: v.get("mAP") for k, v in (results.get("by_evidence") or {}).items()}


def demo():
    data, out = FLAGS.data_dir, FLAGS.out_dir
    if not os.path.isfile(FLAGS.config):
        raise InputError(f"--config: no such file: {FLAGS.config}")
    if FLAGS.video and not os.path.isfile(FLAGS.video):
        raise InputError(f"--video: no such file: {FLAGS.video}")
    if FLAGS.train_steps is not None and FLAGS.train_steps < 1:
        raise InputError(f"--train_steps must be >= 1, got {FLAGS.train_steps}")
    ann = os.path.join(data, "annotations")
    tfr, model = os.path.join(out, "tfrecords"), os.path.join(out, "model")
    label_map = os.path.join(ann, "action_list.pbtxt")
    times, summary = {}, {"data_dir": data, "out_dir": out, "config": FLAGS.config}

    def timed(stage, fn):
        start = time.perf_counter()
        fn()
        times[stage] = round(time.perf_counter() - start, 1)
        print(f"--- {stage}: {times[stage]:.1f} s", flush=True)

    def make_data():
        if os.path.isdir(ann):
            print(f"\n=== data: {ann} exists (delete {data} to regenerate)")
            return
        run_tool(
            "data",
            "make_synthetic_ava.py",
            f"--preset={FLAGS.preset}",
            f"--seed={FLAGS.seed}",
            f"--out={data}",
            "--write_videos",
        )

    def make_tfrecords():
        for split in ("train", "val"):
            if os.path.isfile(os.path.join(tfr, f"{split}_manifest.json")):
                print(f"\n=== tfrecords {split}: {tfr}/{split}_manifest.json exists")
                continue
            run_tool(
                f"tfrecords {split}",
                "create_ava_tfrecords.py",
                f"--ava_dir={data}",
                f"--split={split}",
                f"--out={tfr}/{split}.tfrecord@4",
            )
        summary["data"] = {
            s: split_summary(
                os.path.join(ann, f"ava_{s}.csv"), os.path.join(tfr, f"{s}_manifest.json")
            )
            for s in ("train", "val")
        }
        print_data_summary(summary["data"], read_label_names(label_map))

    timed("data", make_data)
    video = FLAGS.video or os.path.join(data, "videos", first_val_video(data) + ".mp4")
    if not os.path.isfile(video):  # checked now, not after the training
        raise InputError(
            f"{video}: no such video (data generated without --write_videos? "
            f"delete {data} or pass --video=FILE)"
        )
    timed("tfrecords", make_tfrecords)

    steps = [] if FLAGS.train_steps is None else [f"--train_steps={FLAGS.train_steps}"]
    timed(
        "train",
        lambda: run_tool(
            "train",
            "train.py",
            f"--flagfile={FLAGS.config}",
            f"--model_dir={model}",
            f"--train_tfrecords={tfr}/train.tfrecord-*",
            f"--label_map={label_map}",
            *steps,
        ),
    )

    eval_args = [
        f"--model_dir={model}",
        f"--eval_tfrecords={tfr}/val.tfrecord-*",
        f"--groundtruth={ann}/ava_val.csv",
        f"--evidence={ann}/evidence_val.csv",
        f"--excluded={ann}/ava_val_excluded_timestamps.csv",
        f"--label_map={label_map}",
        "--progress=false",
    ]
    eval_dir, gt_dir = os.path.join(out, "eval"), os.path.join(out, "eval_gt_boxes")
    for path in (eval_dir, gt_dir):  # the newest scores only, none from a rerun
        shutil.rmtree(path, ignore_errors=True)
    timed(
        "eval",
        lambda: run_tool("eval (val split)", "eval.py", *eval_args, f"--output_dir={eval_dir}"),
    )
    results = latest_results(eval_dir)
    summary["eval"] = {
        "frame_mAP@0.5": results.get("mAP@0.5IOU"),
        "localization": results.get("localization"),
        "per_category": results.get("per_category"),
        "by_evidence": evidence_maps(results),
        "results": eval_dir,
    }
    if FLAGS.gt_eval:
        timed(
            "eval_gt_boxes",
            lambda: run_tool(
                "eval (val split, ground-truth boxes)",
                "eval.py",
                *eval_args,
                "--proposals=gt",
                f"--output_dir={gt_dir}",
            ),
        )
        gt = latest_results(gt_dir)
        summary["eval_gt_boxes"] = {
            "frame_mAP@0.5": gt.get("mAP@0.5IOU"),
            "by_evidence": evidence_maps(gt),
            "results": gt_dir,
        }

    saved_model = os.path.join(out, "saved_model")

    def export():
        shutil.rmtree(saved_model, ignore_errors=True)  # the exporter wants a fresh folder
        run_tool(
            "export",
            "export_saved_model.py",
            f"--model_dir={model}",
            f"--checkpoint_dir={model}",
            f"--output_dir={saved_model}",
            "--fps=10",
        )

    timed("export", export)

    det = os.path.join(out, "detect")
    os.makedirs(det, exist_ok=True)
    stem = os.path.splitext(os.path.basename(video))[0]
    outputs = {
        "csv": f"{det}/{stem}.csv",
        "json": f"{det}/{stem}.json",
        "video": f"{det}/{stem}_detections.mp4",
    }
    timed(
        "detect",
        lambda: run_tool(
            "detect",
            "detect.py",
            f"--saved_model={saved_model}",
            f"--video={video}",
            f"--output_csv={outputs['csv']}",
            f"--output_json={outputs['json']}",
            f"--output_video={outputs['video']}",
            "--progress=false",
            f"--max_keyframes={FLAGS.detect_keyframes}",
        ),
    )
    summary["detect"] = dict(outputs, input=video)
    return summary, times


def main(argv):
    if len(argv) > 1:
        print(f"demo.py: error: unexpected arguments {' '.join(argv[1:])}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        summary, times = demo()
    except InputError as e:
        print(f"demo.py: error: {e}", file=sys.stderr)
        return 2
    except StageError as e:
        print(f"demo.py: error: {e}", file=sys.stderr)
        return 1
    summary["seconds"] = dict(times, total=round(time.perf_counter() - start, 1))
    summary["load_average"] = [round(x, 2) for x in os.getloadavg()]
    path = os.path.join(summary["out_dir"], "demo_summary.json")
    with open(path, "w") as f:
        json.dump(summary, f, indent=1)

    def fmt(v):
        return "n/a" if v is None else f"{v:.3f}"

    print("\n=== demo summary")
    for stage, seconds in summary["seconds"].items():
        print(f"  {stage:<14} {seconds:8.1f} s")
    ev = summary["eval"]
    print(
        f"  val frame-mAP@0.5: {fmt(ev['frame_mAP@0.5'])}   person localization "
        + "  ".join(f"{k} {fmt(v)}" for k, v in (ev["localization"] or {}).items())
    )
    print("  by evidence: " + "  ".join(f"{k} {fmt(v)}" for k, v in ev["by_evidence"].items()))
    if "eval_gt_boxes" in summary:
        gt = summary["eval_gt_boxes"]
        print(
            f"  val frame-mAP@0.5 on ground-truth boxes: {fmt(gt['frame_mAP@0.5'])}   by "
            "evidence: " + "  ".join(f"{k} {fmt(v)}" for k, v in gt["by_evidence"].items())
        )
    print(
        f"  detections: {summary['detect']['video']}\n  written: {path}  (load average "
        f"{', '.join(str(x) for x in summary['load_average'])})"
    )
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
