"""The AVA conversion (`convert.convert_split`) as an Apache Beam pipeline.

Same inputs, same shards and manifest, byte for byte: the plan (annotations read, keyframes
indexed, videos found), each video's records (`convert.read_video`, `convert.video_outcome`)
and the manifest (`convert.finish_split`) are the single-process converter's own functions.
Beam only
distributes the videos: one element per video, its records keyed by shard, grouped, each
shard written by one worker in keyframe order (the order the single-process writer appends
in), under the temporary name and renamed when complete. Per-video outcomes (records per
shard, rejections) come back to the launching process as JSON lines beside the shards
(`.beam-<split>-*`, removed after), which it folds into the manifest in video order.

    convert_split_beam(ava_dir, split, out, pipeline_args=["--runner=DirectRunner"], ...)

The DirectRunner runs on the local cores (multi-processing, one worker per core unless
`--direct_num_workers` says); any other runner (Dataflow, Flink, Spark) takes its own options
in `pipeline_args`, and then the inputs and `out` must be on storage every worker reads
(a shared filesystem at the same path: the frame readers open local paths).
"""

from __future__ import annotations

import json
import os
import typing

import tensorflow as tf

from action_tx.data import convert


def _local_defaults(pipeline_args) -> list:
    """DirectRunner on every local core unless the arguments choose otherwise."""
    args = list(pipeline_args or [])
    if not any(a.startswith("--runner") for a in args):
        args.append("--runner=DirectRunner")
    runner = next(a.split("=", 1)[1] for a in args if a.startswith("--runner="))
    if runner == "DirectRunner":
        if not any(a.startswith("--direct_running_mode") for a in args):
            args.append("--direct_running_mode=multi_processing")
        if not any(a.startswith("--direct_num_workers") for a in args):
            args.append(f"--direct_num_workers={os.cpu_count() or 1}")
    return args


class _WriteShard:
    """(shard, [(keyframe_index, record, keyframes)]) -> writes the shard -> (shard, records,
    keyframes)."""

    def __init__(self, shards):
        self.shards = shards

    def __call__(self, item):
        shard, records = item
        path = self.shards[shard]
        temp = convert.temp_path(path)
        with tf.io.TFRecordWriter(temp) as writer:
            count = keyframes = 0
            for _, record, n in sorted(records, key=lambda r: r[0]):
                writer.write(record)
                count += 1
                keyframes += n
        tf.io.gfile.rename(temp, path, overwrite=True)
        return shard, count, keyframes


def convert_split_beam(ava_dir: str, split: str, out: str, *, pipeline_args=None, **kwargs) -> dict:
    """`convert.convert_split` on Beam; kwargs as there (num_workers and progress are not
    used: the runner decides the parallelism and reports progress). Returns the manifest."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    kwargs.pop("num_workers", None)
    kwargs.pop("progress", None)
    plan = convert.plan_split(ava_dir, split, out, **kwargs)
    folder = os.path.dirname(os.path.abspath(plan.shards[0]))
    tf.io.gfile.makedirs(folder)
    prefix = os.path.join(folder, f".beam-{split}")
    for stale in tf.io.gfile.glob(prefix + "*"):
        tf.io.gfile.remove(stale)
    tasks = list(enumerate(plan.tasks))
    options = plan.task_options()  # small: the workers need not receive the plan

    def run_video(item):
        position, task = item
        outcome = convert.video_outcome(task, convert.read_video(task), **options)
        records = outcome.pop("records")
        outcome["position"] = position
        yield beam.pvalue.TaggedOutput("outcome", json.dumps(outcome, sort_keys=True))
        for shard, keyframe_index, record, n in records:
            yield shard, (keyframe_index, record, n)

    with beam.Pipeline(options=PipelineOptions(_local_defaults(pipeline_args))) as p:
        # The main output's type is declared: inferred from the generator it would include
        # the tagged outcomes, which GroupByKey refuses.
        results = (
            p
            | "videos" >> beam.Create(tasks, reshuffle=True)
            | "records"
            >> beam.FlatMap(run_video)
            .with_output_types(typing.Tuple[int, typing.Tuple[int, bytes, int]])
            .with_outputs("outcome", main="records")
        )
        _ = (
            results.records
            | "by shard" >> beam.GroupByKey()
            | "write" >> beam.Map(_WriteShard(plan.shards))
            | "shard json"
            >> beam.Map(lambda sc: json.dumps({"shard": sc[0], "count": sc[1], "keyframes": sc[2]}))
            | "shard counts" >> beam.io.WriteToText(prefix + "-shards")
        )
        _ = results.outcome | "outcomes" >> beam.io.WriteToText(prefix + "-videos")

    lines = {}
    for kind in ("shards", "videos"):
        lines[kind] = []
        for path in tf.io.gfile.glob(f"{prefix}-{kind}*"):
            with tf.io.gfile.GFile(path) as f:
                lines[kind] += [json.loads(line) for line in f if line.strip()]
            tf.io.gfile.remove(path)
    counts, keyframe_counts = [0] * len(plan.shards), [0] * len(plan.shards)
    for row in lines["shards"]:
        counts[row["shard"]] = row["count"]
        keyframe_counts[row["shard"]] = row["keyframes"]
    for shard, path in enumerate(plan.shards):  # a shard no keyframe went to: empty file
        if not tf.io.gfile.exists(path):
            tf.io.TFRecordWriter(path).close()
    outcomes = sorted(lines["videos"], key=lambda o: o["position"])
    try:
        return convert.finish_split(plan, outcomes, counts, keyframe_counts)
    except convert.ConversionError:
        for path in plan.shards:  # a failed conversion leaves no shards, as convert_split
            if tf.io.gfile.exists(path):
                tf.io.gfile.remove(path)
        raise
