r"""Runs an exported action detector over a video file.

    python tools/detect.py --saved_model=EXPORT_DIR --video=FILE.mp4 --output_csv=A.csv \
        --output_json=A.json --output_video=A.mp4 [--stride_s=1] [--score_threshold=0.3]

Reads mp4/avi/gif/... with PyAV. Every --stride_s seconds (keyframes at 0, s, 2s, ... seconds)
the model sees the clip it was trained on: num_frames frames at its frame stride (converted
from the model's fps to the video's), centred on the keyframe, edge frames repeated. Writes
  --output_csv    AVA detection rows video_id,timestamp,x1,y1,x2,y2,action_id,score
                  (video_id = --video_id or the file's stem; boxes normalized);
  --output_json   per keyframe: timestamp, frame, detections (box, person score, actions);
  --output_video  the video with each keyframe's detections drawn until the next keyframe
                  (boxes and top labels with scores on tags above the boxes, as in
                  tools/eval.py's pictures; --show_attention overlays the attention maps of
                  heads that return them).
The video header is checked (--max_resolution, --max_duration_s) and the whole file decoded
once before TensorFlow starts: a missing, empty, unreadable or damaged (short-decoding) file
is reported in one line with exit status 2, as is an output path that resolves (symlinks,
relative parts) to the input video or to another output.

Outputs are written under hidden temporary names beside their final ones
(`.NAME.PID.partial`, matched by no `*.mp4`/`*.csv`/`*.json` glob) and renamed when all are
complete, so an output path holds either a complete file or what it held before. Ctrl-C
(exit 130) and SIGTERM (exit 143) remove the temporary files and print one line; the
`.NAME.PID.partial` left by a SIGKILL is removed by the next run writing NAME.

The SavedModel is the one of tools/export_saved_model.py; nothing else of the project's model
code is needed. SavedModels and checkpoints are programs: load only ones you trust.
"""

import bisect
import json
import os
import signal
import time

import cli  # first: TF's log level and start-up options
from absl import flags

from action_tx import video_io  # PyAV + NumPy only
from action_tx.output_files import Outputs

FLAGS = flags.FLAGS
flags.DEFINE_string("saved_model", None, "SavedModel directory (tools/export_saved_model.py).")
flags.DEFINE_string("video", None, "Input video file (anything FFmpeg reads: mp4, avi, gif...).")
flags.DEFINE_string("output_csv", None, "AVA detection CSV to write.")
flags.DEFINE_string("output_json", None, "Per-keyframe JSON to write.")
flags.DEFINE_string("output_video", None, "Annotated video to write (.mp4: H.264).")
flags.DEFINE_string("video_id", None, "video_id of the CSV rows (default: the file's stem).")
flags.DEFINE_integer("stride_s", 1, "Seconds between keyframes (AVA: 1).", lower_bound=1)
flags.DEFINE_float("score_threshold", 0.3, "Detections with a person score <= this are dropped.")
flags.DEFINE_float(
    "action_threshold",
    0.01,
    "CSV rows / JSON actions need an action score (person score x action probability) > this.",
)
flags.DEFINE_integer("top_k", 3, "Labels drawn per box.")
flags.DEFINE_integer(
    "max_resolution", 4096, "Refuse videos whose longer side exceeds this (pixels; 0 = no limit)."
)
flags.DEFINE_float(
    "max_duration_s", 3600.0, "Refuse videos longer than this (seconds; 0 = no limit)."
)
flags.DEFINE_integer(
    "max_keyframes",
    0,
    "Process only the first N keyframes (0 = all); the "
    "annotated video then ends before keyframe N+1.",
)
flags.DEFINE_bool(
    "show_attention",
    False,
    "Overlay the attention maps of the kept detections (heads that return attention, e.g. tx).",
)
flags.DEFINE_bool("progress", True, "Show a progress bar.")


OUTPUT_FLAGS = ("output_csv", "output_json", "output_video")

InputError = cli.CliError  # bad flags, model or video: one line, exit status 2


class Terminated(BaseException):
    """SIGTERM arrived; raised like KeyboardInterrupt so that cleanup runs."""


def _on_sigterm(signum, frame):
    raise Terminated()


def _same_file(a: str, b: str) -> bool:
    """Whether two resolved paths name one file (equal, or hard links of one existing file)."""
    return a == b or (os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b))


def check_output_paths():
    """Refuses an output that resolves to the input video or to another output, an output
    that is a folder, and a video extension the writer cannot write."""
    taken = [(os.path.realpath(FLAGS.video), "is the input --video")]
    for name in OUTPUT_FLAGS:
        path = getattr(FLAGS, name)
        if not path:
            continue
        real = os.path.realpath(path)
        for other, what in taken:
            if _same_file(real, other):
                raise InputError(f"--{name}={path} {what} ({real}); choose another path")
        if os.path.isdir(real):
            raise InputError(f"--{name}={path} is a directory")
        if not os.path.isdir(os.path.dirname(real)):
            raise InputError(f"--{name}: no such directory: {os.path.dirname(real)}")
        taken.append((real, f"is the same file as --{name}"))
    ext = os.path.splitext(FLAGS.output_video or "")[1].lower()
    if FLAGS.output_video and ext not in video_io.WRITABLE_FORMATS:
        kinds = ", ".join(video_io.WRITABLE_FORMATS)
        raise InputError(
            f"--output_video={FLAGS.output_video}: cannot write "
            f"{ext or 'a file without extension'} (use {kinds})"
        )


def check_inputs():
    """Flag, path and video checks, all before TensorFlow loads -> (VideoInfo, frames)."""
    if not FLAGS.saved_model or not FLAGS.video:
        raise InputError("--saved_model and --video are required")
    if not os.path.isfile(os.path.join(FLAGS.saved_model, "saved_model.pb")):
        raise InputError(
            f"--saved_model: {FLAGS.saved_model} is not a SavedModel directory (no saved_model.pb)"
        )
    check_output_paths()
    info = video_io.probe(
        FLAGS.video,
        max_resolution=FLAGS.max_resolution or None,
        max_duration_s=FLAGS.max_duration_s or None,
    )
    decoded, error = video_io.count_frames(FLAGS.video)
    frames = video_io.check_complete(info, decoded, error)
    if FLAGS.max_duration_s and frames / info.fps > FLAGS.max_duration_s:
        raise InputError(
            f"{FLAGS.video}: {frames} frames at {info.fps:g} fps exceed "
            f"--max_duration_s={FLAGS.max_duration_s:g}"
        )
    return info, frames


def load_model(path):
    """-> (serving function, metadata dict of numpy values, class_ids, class_names)."""
    import tensorflow as tf

    try:
        model = tf.saved_model.load(path)
    except Exception as e:  # noqa: BLE001  (any load failure is a bad --saved_model)
        raise InputError(
            f"--saved_model: cannot load {path}: {' '.join(str(e).split())[:300]}"
        ) from None
    missing = [s for s in ("serving_default", "labels", "metadata") if s not in model.signatures]
    if missing:
        raise InputError(
            f"--saved_model: {path} has no signature {missing[0]!r}; export it "
            "with tools/export_saved_model.py"
        )
    meta = {k: v.numpy() for k, v in model.signatures["metadata"]().items()}
    if bool(meta["requires_person_boxes"]):
        raise InputError(
            f"--saved_model: {path} was trained without the RPN and needs person "
            "boxes (its 'with_boxes' signature); detect.py runs RPN models only"
        )
    labels = model.signatures["labels"]()
    names = [n.decode("utf-8") for n in labels["class_names"].numpy()]
    return model.signatures["serving_default"], meta, labels["class_ids"].numpy(), names


def attention_map(attention, keep):
    """attention [K, layers, heads, T', H', W'] (the tx head) -> [H', W'] in [0, 1]: the last
    layer's mean over heads at the central time slice, max over the kept detections; None for
    other layouts or no detection."""
    from action_tx import visualize

    if attention is None or attention.ndim != 6 or not keep.any():
        return None
    maps = attention[keep][:, -1].mean(axis=1)
    maps = maps[:, maps.shape[1] // 2]
    return visualize.normalize_heatmap(maps.max(axis=0))


def run(outputs: Outputs):
    info, num_frames = check_inputs()
    import numpy as np
    import tensorflow as tf
    from action_tx import render, visualize
    from action_tx.data import ava
    from action_tx.outputs import detections_to_ava

    detect, meta, class_ids, class_names = load_model(FLAGS.saved_model)
    # Lines and labels sized to the video (as tools/eval.py's pictures), tags above the boxes.
    thickness, font_size = render.line_sizes(info.height, info.width)
    video_id = FLAGS.video_id or os.path.splitext(os.path.basename(FLAGS.video))[0]
    clip_len = int(meta["num_frames"])
    step = float(meta["frame_stride"]) * info.fps / float(meta["fps"])
    all_times = video_io.keyframe_times(num_frames, info.fps, FLAGS.stride_s)
    times = all_times[: FLAGS.max_keyframes] if FLAGS.max_keyframes else all_times
    centers = [video_io.keyframe_frame(t, info.fps) for t in times]
    needs = [video_io.clip_indices(c, clip_len, step, num_frames - 1) for c in centers]
    # Frames written: up to the frame before the first keyframe left out, else all.
    end = (
        video_io.keyframe_frame(all_times[len(times)], info.fps)
        if len(times) < len(all_times)
        else num_frames
    )
    limit = max(end, max(int(n.max()) for n in needs) + 1)

    results, rows, buffer = [], [], {}
    ext = os.path.splitext(FLAGS.output_video or "")[1]
    writer = (
        video_io.VideoWriter(outputs.temp("output_video"), info.rate, ext=ext).__enter__()
        if FLAGS.output_video
        else None
    )
    from action_tx.progress import Progress

    bar = Progress(len(times), f"{os.path.basename(FLAGS.video)}: keyframes", FLAGS.progress)
    bar.update(0)
    start, write_ptr = time.perf_counter(), 0

    def run_keyframe(k):
        clip = np.stack([buffer[int(i)] for i in needs[k]])
        out = {key: v.numpy() for key, v in detect(clip=tf.constant(clip)).items()}
        n = int(out["num_detections"])
        keep = np.zeros(len(out["detection_scores"]), bool)
        keep[:n] = out["detection_scores"][:n] > FLAGS.score_threshold
        kept = {
            key: out[key][keep] for key in ("detection_boxes", "detection_scores", "action_scores")
        }
        rows.append(
            detections_to_ava(
                {
                    "detection_boxes": kept["detection_boxes"][None],
                    "action_scores": kept["action_scores"][None],
                    "num_detections": [int(keep.sum())],
                },
                [video_id],
                [times[k]],
                class_ids,
                min_score=FLAGS.action_threshold,
            )
        )
        heat = attention_map(out.get("attention"), keep) if FLAGS.show_attention else None
        results.append({"kept": kept, "heat": heat})
        bar.update(1)

    def flush(upto):
        nonlocal write_ptr
        while write_ptr <= upto and write_ptr < end:
            k = bisect.bisect_right(centers, write_ptr) - 1
            if k >= len(results):
                return
            frame = buffer[write_ptr]
            if writer is not None:
                res = results[max(k, 0)]
                if res["heat"] is not None:
                    frame = visualize.overlay_heatmap(frame, res["heat"])
                frame = visualize.draw_detections(
                    frame,
                    res["kept"]["detection_boxes"],
                    res["kept"]["detection_scores"],
                    res["kept"]["action_scores"],
                    class_names,
                    top_k=FLAGS.top_k,
                    thickness=thickness,
                    font_size=font_size,
                    label_side="above",
                )
                writer.write(frame)
            write_ptr += 1

    try:
        decoded = 0
        for idx, frame in enumerate(video_io.iter_frames(FLAGS.video, limit)):
            buffer[idx], decoded = frame, idx + 1
            while len(results) < len(times) and needs[len(results)].max() <= idx:
                run_keyframe(len(results))
            flush(idx)
            keep_from = min(
                write_ptr,
                int(needs[len(results)].min()) if len(results) < len(times) else write_ptr,
            )
            for i in [i for i in buffer if i < keep_from]:
                del buffer[i]
        if decoded < limit or len(results) < len(times):
            raise video_io.VideoError(
                f"{FLAGS.video}: damaged video: the second decode ended "
                f"at frame {decoded} of {limit}"
            )
    finally:
        bar.close()
        if writer is not None:  # a half-written video is removed by Outputs.discard
            writer.__exit__(None, None, None)
    seconds = time.perf_counter() - start

    rows = {key: np.concatenate([r[key] for r in rows]) for key in rows[0]}
    if FLAGS.output_csv:
        count = len(rows["score"])
        ava.write_annotations(
            outputs.temp("output_csv"),
            ava.Annotations(
                video_id=rows["video_id"],
                timestamp=rows["timestamp"],
                boxes=rows["boxes"],
                action_id=rows["action_id"],
                person_id=np.full(count, -1, np.int32),
                score=rows["score"],
                line=np.arange(1, count + 1),
            ),
            kind="detections",
        )
    if FLAGS.output_json:
        with open(outputs.temp("output_json"), "w") as f:
            json.dump(
                _json(info, video_id, meta, times, centers, results, class_ids, class_names),
                f,
                indent=1,
            )
    outputs.commit()
    total = sum(len(r["kept"]["detection_scores"]) for r in results)
    print(
        f"{video_id}: {len(times)} keyframes, {total} detections, {len(rows['score'])} CSV "
        f"rows, {seconds:.1f} s ({seconds / max(len(times), 1):.2f} s per keyframe)"
    )
    for path in outputs.written:
        print(f"written: {path}")


def _json(info, video_id, meta, times, centers, results, class_ids, class_names):
    from action_tx.outputs import detections_to_json

    keyframes = []
    for t, c, res in zip(times, centers, results):
        kept = res["kept"]
        dets = detections_to_json(
            kept["detection_boxes"],
            kept["detection_scores"],
            kept["action_scores"],
            class_ids,
            class_names,
            min_score=FLAGS.action_threshold,
        )
        keyframes.append({"timestamp": t, "frame": c, "detections": dets})
    return {
        "video": os.path.abspath(FLAGS.video),
        "video_id": video_id,
        "width": info.width,
        "height": info.height,
        "fps": info.fps,
        "model": {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in meta.items()},
        "boxes": "normalized to the frame, x1,y1,x2,y2 (AVA CSV order)",
        "keyframes": keyframes,
    }


def main(argv):
    del argv
    signal.signal(signal.SIGTERM, _on_sigterm)
    outputs = Outputs({name: getattr(FLAGS, name) for name in OUTPUT_FLAGS})
    try:
        run(outputs)
    except video_io.VideoError as e:
        raise InputError(e) from None
    except (KeyboardInterrupt, Terminated) as e:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal must not stop cleanup
            signal.signal(sig, signal.SIG_IGN)
        written = (
            f"only {', '.join(outputs.written)} written" if outputs.written else "no output written"
        )
        interrupt = isinstance(e, KeyboardInterrupt)
        what = "interrupted (Ctrl-C)" if interrupt else "terminated (SIGTERM)"
        raise cli.CliError(f"{what}; {written}", status=130 if interrupt else 143) from None
    finally:
        outputs.discard()


if __name__ == "__main__":
    cli.run(main)
