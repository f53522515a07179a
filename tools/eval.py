"""AVA evaluation: frame-mAP@0.5 as the official ActivityNet evaluator, plus breakdowns.

Score a detection file:

    python tools/eval.py --groundtruth=ava_val_v2.1.csv --detections=detections.csv \
        --label_map=ava_action_list_v2.1_for_activitynet_2018.pbtxt --output_json=results.json \
        [--excluded=ava_val_excluded_timestamps_v2.1.csv] [--evidence=evidence_val.csv]

prints a per-class table with the category, localization and breakdown figures and writes
them as JSON (`{"mAP@0.5IOU": ..., "per_class": {"<AVA id>": AP or null}, ...}`). The rules
are in `object_detection_ext/ava_eval.py`. Flags are parsed here only; the evaluation is the
library's `ava_eval.evaluate`, so other modes (scoring a model checkpoint) reuse it.
"""
import json
import os
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("groundtruth", None, "AVA ground-truth CSV "
                    "(video_id,timestamp,x1,y1,x2,y2,action_id,person_id).")
flags.DEFINE_string("detections", None, "AVA detection CSV "
                    "(video_id,timestamp,x1,y1,x2,y2,action_id,score).")
flags.DEFINE_string("label_map", None, "Label map (pbtxt with id:/label_id:, or 'N: name' "
                    "lines); only its classes are scored.")
flags.DEFINE_string("output_json", None, "Where to write the results as JSON (optional).")
flags.DEFINE_string("excluded", None, "Excluded-timestamps CSV (video_id,timestamp): those "
                    "keyframes are removed from ground truth and detections.")
flags.DEFINE_string("evidence", None, "Evidence CSV of the synthetic data "
                    "(video_id,timestamp,person_id,action_id,evidence): adds AP per evidence type.")
flags.DEFINE_float("iou_threshold", 0.5, "IoU at which a detection matches a box.")
flags.DEFINE_integer("max_detections_per_key", 50, "Official cap on detection rows per "
                     "keyframe (over all classes); 0 = no cap.")
flags.DEFINE_bool("breakdowns", True, "Also compute localization AP and the AP by box area "
                  "and by persons per keyframe.")


def score_file(groundtruth, detections, label_map, output_json=None, **kwargs):
    """Evaluates a detection CSV, prints the table, writes JSON; returns the result."""
    from object_detection_ext import ava_eval   # after flag parsing: `--help` stays instant
    start = time.perf_counter()
    result = ava_eval.evaluate(groundtruth, detections, label_map, **kwargs)
    seconds = time.perf_counter() - start
    print(result.format_table())
    print(f"\nframe-mAP@{result.iou_threshold}IOU = {result.map:.6f}  "
          f"({result.counts['detections_scored']:,} of {result.counts['detection_rows']:,} "
          f"detection rows scored, {result.counts['groundtruth_keys']:,} keyframes, "
          f"{seconds:.1f} s)")
    if output_json:
        os.makedirs(os.path.dirname(os.path.abspath(output_json)), exist_ok=True)
        with open(output_json, "w") as f:
            json.dump(result.to_json(), f, indent=1, sort_keys=False)
        print(f"written: {output_json}", file=sys.stderr)
    return result


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    missing = [f"--{name}" for name in ("groundtruth", "detections", "label_map")
               if not getattr(FLAGS, name)]
    if missing:
        raise app.UsageError(f"scoring a detection file needs {', '.join(missing)}")
    for name in ("groundtruth", "detections", "label_map", "excluded", "evidence"):
        path = getattr(FLAGS, name)
        if path and not os.path.isfile(path):
            sys.exit(f"error: --{name}: no such file: {path}")
    try:
        score_file(FLAGS.groundtruth, FLAGS.detections, FLAGS.label_map, FLAGS.output_json,
                   excluded=FLAGS.excluded, evidence=FLAGS.evidence,
                   iou_threshold=FLAGS.iou_threshold,
                   max_detections_per_key=FLAGS.max_detections_per_key,
                   breakdowns=FLAGS.breakdowns)
    except ValueError as e:   # AvaFormatError included: "FILE:LINE: what is wrong" lines
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main)
