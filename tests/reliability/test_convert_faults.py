"""Fault injection on the converter and the readers of its shards (issue 26, items 4, 5, 11):
corrupt JPEGs, a killed conversion, shards of another count, globs that match more than
shards, and the converter's exit status and summary. Tiny synthetic data (3 videos x 8 s)."""

import glob
import json
import os
import pathlib
import re
import subprocess
import sys

import keras
import pytest
import tensorflow as tf

from action_tx import eval_lib
from action_tx.data import convert, frame_source, pipeline, synthetic, tfrecords

REPO = pathlib.Path(__file__).resolve().parents[2]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
W = 8  # frames stored per keyframe
# The smallest detector tools/train.py builds (as tests/tools/train_helpers.py's TINY).
TINY_MODEL = [
    "--image_size=32",
    "--num_frames=4",
    "--frame_stride=1",
    "--anchor_sizes=16,32",
    "--rpn_filters=16",
    "--post_nms_top_k=10",
    "--num_roi_samples=8",
    "--max_boxes=4",
    "--max_proposals=4",
    "--max_objects=2",
    "--head=linear",
    "--batch_size=2",
    "--optimizer=adamw",
    "--learning_rate=0.001",
    "--warmup_steps=2",
    "--checkpoint_every=100",
    "--log_every=1",
    "--noprogress",
]


@pytest.fixture
def ava(tmp_path):
    root = tmp_path / "ava"
    synthetic.generate(str(root), preset="tiny", seed=0, check=False, videos=3, seconds=8)
    return root


def _convert(ava, out, **kw):
    args = dict(num_frames=W, num_workers=1, progress=False)
    args.update(kw)
    return convert.convert_split(str(ava), "train", str(out), **args)


def _records(manifest):
    """[((video_id, timestamp), serialized record)] of every shard, in order."""
    out = []
    for shard in manifest["shards"]:
        for r in tf.data.TFRecordDataset(shard["path"]):
            ex = tfrecords.parse_example(r)
            out.append(((ex["video_id"].numpy().decode(), int(ex["timestamp"])), r.numpy()))
    return out


def _frame_path(ava, video, k):
    return ava / "frames" / video / f"{video}_{k:06d}.jpg"


def _windows_holding(ava, keys, video, k):
    """The keyframes of `keys` whose W-frame window holds frame k (1-based) of `video`."""
    count = len(list((ava / "frames" / video).glob("*.jpg")))
    return {
        (v, t)
        for v, t in keys
        if v == video
        and k - 1 in frame_source.window_indices(frame_source.keyframe_frame(t, 10.0), W, count - 1)
    }


def _cli(*args, tool="create_ava_tfrecords.py"):
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / tool), *args],
        check=False,
        capture_output=True,
        text=True,
        env=ENV,
        cwd=REPO,
        timeout=120,
    )


def _one_error_line(proc):
    lines = [l for l in proc.stderr.splitlines() if l.strip() and "cuInit" not in l]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    return lines[0]


# --- 4. corrupt frames --------------------------------------------------------------------


def test_corrupt_jpegs_are_refused_or_cost_only_their_keyframes(ava, tmp_path):
    clean = _records(_convert(ava, tmp_path / "clean" / "train.tfrecord@2"))
    keys = [k for k, _ in clean]
    videos = sorted({v for v, _ in keys})
    # A frame truncated to 200 bytes in the first video, a 0-byte frame in the second: each
    # the one after the keyframe of the video's first keyframe (10 fps: 1-based 10 t + 2).
    t0, t1 = (min(t for v, t in keys if v == video) for video in videos[:2])
    truncated = _frame_path(ava, videos[0], 10 * t0 + 2)
    empty = _frame_path(ava, videos[1], 10 * t1 + 2)
    truncated.write_bytes(truncated.read_bytes()[:200])
    empty.write_bytes(b"")
    hit = _windows_holding(ava, keys, videos[0], 10 * t0 + 2) | _windows_holding(
        ava, keys, videos[1], 10 * t1 + 2
    )
    assert hit == {(videos[0], t0), (videos[1], t1)} and len(keys) > 5  # the premise

    with pytest.raises(
        convert.ConversionError,
        match=rf"{truncated}: not a decodable JPEG .*"
        rf"keyframe {videos[0]},{t0} needs it",
    ):
        _convert(ava, tmp_path / "out" / "train.tfrecord@2")
    assert not glob.glob(str(tmp_path / "out" / "*tfrecord*"))  # nothing half-written left

    m = _convert(ava, tmp_path / "out" / "train.tfrecord@2", skip_bad=True)
    assert m["keyframes"] == {
        "total": len(keys),
        "written": len(keys) - 2,
        "rejected": {"undecodable frame": 2},
    }
    assert m["frames_rejected"] == {
        "undecodable frame": sorted(os.path.relpath(p, ava) for p in (truncated, empty))
    }
    assert m["files_rejected"] == {}  # no video is lost for one frame
    # The other keyframes are stored exactly as from the intact folder, byte for byte.
    assert _records(m) == [(k, r) for k, r in clean if k not in hit]


def test_frame_of_another_size_is_refused(ava, tmp_path):
    from PIL import Image

    keys = [k for k, _ in _records(_convert(ava, tmp_path / "clean" / "train.tfrecord"))]
    video = keys[0][0]
    path = _frame_path(ava, video, 31)
    Image.open(path).resize((32, 32)).save(path)  # decodable, but not the video's 64x64
    with pytest.raises(convert.ConversionError, match=rf"{path}: 32x32 pixels .* 64x64"):
        _convert(ava, tmp_path / "out" / "train.tfrecord")
    m = _convert(ava, tmp_path / "out" / "train.tfrecord", skip_bad=True)
    assert m["keyframes"]["rejected"] == {
        "frame size differs": len(_windows_holding(ava, keys, video, 31))
    }


def _damage_records(shard, keys=None):
    """Rewrites `shard` with the keyframe frame of the records of `keys` (all when None)
    truncated to 200 bytes, as the converter stored such a frame before it decoded them."""
    records = [r.numpy() for r in tf.data.TFRecordDataset(shard)]
    with tf.io.TFRecordWriter(shard) as w:
        for r in records:
            ex = tf.train.SequenceExample.FromString(r)
            ctx = ex.context.feature
            key = (
                ctx[tfrecords.VIDEO_ID].bytes_list.value[0].decode(),
                ctx[tfrecords.TIMESTAMP].int64_list.value[0],
            )
            if keys is None or key in keys:
                frame = (
                    ex.feature_lists.feature_list[tfrecords.FRAMES]
                    .feature[ctx[tfrecords.KEYFRAME_FRAME].int64_list.value[0]]
                    .bytes_list
                )
                frame.value[0] = frame.value[0][:200]
            w.write(ex.SerializeToString(deterministic=True))


class MeanColour(keras.Model):
    """clip -> mean colour -> dense(1); loss = mean(y^2): the smallest model train() takes."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(1)

    def call(self, batch, training=None):
        return self.dense(tf.reduce_mean(batch["clip"], axis=[1, 2, 3]))

    def compute_losses(self, out):
        return {"total_loss": tf.reduce_mean(tf.square(out))}


def test_pipeline_names_shard_and_keyframe_of_an_undecodable_record(ava, tmp_path):
    from action_tx import train_lib

    m = _convert(ava, tmp_path / "tf" / "train.tfrecord@2")
    shard = m["shards"][1]["path"]
    key = _records({"shards": m["shards"][1:]})[1][0]
    _damage_records(shard, {key})
    kw = dict(
        batch_size=1,
        num_classes=m["label_map"]["num_classes"],
        num_frames=4,
        image_size=16,
        repeat=True,
    )
    glob_ = str(tmp_path / "tf" / "train.tfrecord-*")
    with pytest.raises(tf.errors.InvalidArgumentError) as e:
        for _ in pipeline.build_dataset(glob_, **kw):
            pass
    line = pipeline.record_error_text(e.value)
    assert line and "\n" not in line
    assert f"keyframe {key[0]},{key[1]} in shard {shard}:" in line
    # Training stops at that record (the 2nd of the 2nd shard) with the line, the step it
    # reached and the newest checkpoint, in one TrainingError, not a traceback.
    position = m["shards"][0]["records"] + 2
    with pytest.raises(train_lib.TrainingError) as e:
        train_lib.train(
            model_fn=MeanColour,
            dataset_fn=lambda: pipeline.build_dataset(glob_, **kw),
            model_dir=str(tmp_path / "model"),
            train_steps=position + 5,
            global_batch_size=1,
            warmup_steps=1,
            checkpoint_every=2,
            log_every=1,
            progress=False,
        )
    saved = 2 * ((position - 1) // 2)  # the steps before it, checkpointed every 2
    assert str(e.value) == f"{line}; newest checkpoint: {tmp_path}/model/ckpt-{saved}"


def test_trainer_stops_with_one_line_on_an_undecodable_record(ava, tmp_path):
    m = _convert(ava, tmp_path / "tf" / "train.tfrecord")
    _damage_records(m["shards"][0]["path"])
    keys = {k for k, _ in _records(m)}
    proc = _cli(
        f"--train_tfrecords={tmp_path}/tf/train.tfrecord",
        f"--label_map={ava}/annotations/action_list.pbtxt",
        f"--model_dir={tmp_path}/model",
        "--train_steps=3",
        *TINY_MODEL,
        tool="train.py",
    )
    # libjpeg prints its own complaint (e.g. "Improper call to JPEG library in state 201")
    # from TensorFlow's decoder threads; the tool's one line comes last and names the record.
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1 and proc.stderr.strip().splitlines()[-1] == errors[0]
    named = re.search(r"keyframe (\S+),(\d+) in shard (\S+):", errors[0])
    assert named and (named[1], int(named[2])) in keys and named[3] == m["shards"][0]["path"]


# --- 5. leftovers and globs -----------------------------------------------------------------

_KILL_AFTER_WRITES = """
import os, sys
sys.path.insert(0, {repo!r})
import tensorflow as tf
from action_tx.data import convert
real = tf.io.TFRecordWriter
class Killed(real):   # the process dies (no cleanup runs) after the 5th record
    n = 0
    def write(self, record):
        super().write(record)
        Killed.n += 1
        if Killed.n == 5:
            self.flush()
            os._exit(137)
tf.io.TFRecordWriter = Killed
convert.convert_split({ava!r}, "train", {out!r}, num_frames=8, num_workers=1, progress=False)
"""


def test_killed_conversion_leaves_nothing_the_glob_matches(ava, tmp_path):
    out = tmp_path / "tf"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _KILL_AFTER_WRITES.format(
                repo=str(REPO), ava=str(ava), out=str(out / "train.tfrecord@2")
            ),
        ],
        env=ENV,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 137
    leftovers = sorted(os.listdir(out))
    assert leftovers  # the killed run did leave its unfinished shards ...
    assert not glob.glob(str(out / "train.tfrecord-*"))  # ... that the documented glob skips
    with pytest.raises(FileNotFoundError):
        tfrecords.match_files(str(out / "train.tfrecord-*"))
    # A wider glob does match them: the reader refuses, naming the file, rather than read it.
    with pytest.raises(
        tfrecords.NotTFRecordError,
        match=rf"{out}/{leftovers[0]} is an "
        "unfinished shard",
    ):
        tfrecords.match_files(str(out / "*"))
    m = _convert(ava, out / "train.tfrecord@2")  # the rerun completes and replaces them
    assert sorted(os.listdir(out)) == [
        "train.tfrecord-00000-of-00002",
        "train.tfrecord-00001-of-00002",
        "train_manifest.json",
    ]
    assert sum(s["records"] for s in m["shards"]) == m["keyframes"]["total"]


def test_shards_of_another_count_are_refused_or_removed(ava, tmp_path):
    out = tmp_path / "tf"
    old = _records(_convert(ava, out / "train.tfrecord@2"))
    before = {p: pathlib.Path(p).read_bytes() for p in glob.glob(str(out / "train.tfrecord-*"))}
    with pytest.raises(
        convert.ConversionError,
        match=r"2 shard\(s\) of an earlier conversion "
        r"with another shard count \(train.tfrecord-00000-of-00002.*--overwrite",
    ):
        _convert(ava, out / "train.tfrecord@3")
    after = {p: pathlib.Path(p).read_bytes() for p in glob.glob(str(out / "train.tfrecord-*"))}
    assert after == before  # refused before touching anything
    proc = _cli(
        f"--ava_dir={ava}",
        "--split=train",
        f"--out={out}/train.tfrecord@3",
        "--num_frames=8",
        "--noprogress",
    )
    assert "another shard count" in _one_error_line(proc)

    m = _convert(ava, out / "train.tfrecord@3", overwrite=True)
    assert (
        sorted(glob.glob(str(out / "train.tfrecord-*"))) == sorted(s["path"] for s in m["shards"])
        and len(m["shards"]) == 3
    )
    assert _records(m) == old  # the same records, in three shards


def test_a_glob_matching_a_non_shard_is_refused_by_name(ava, tmp_path):
    out = tmp_path / "tf"
    m = _convert(ava, out / "train.tfrecord@2")
    wide = str(out / "train*")  # also matches train_manifest.json
    kw = dict(batch_size=1, num_classes=m["label_map"]["num_classes"])
    for read in (
        lambda: pipeline.build_dataset(wide, **kw),
        lambda: eval_lib.count_keyframes(wide),
        lambda: tfrecords.match_files([str(out / "train.tfrecord-*"), wide]),
    ):
        with pytest.raises(
            tfrecords.NotTFRecordError, match=rf"{out}/train_manifest.json is not a TFRecord file"
        ):
            read()
    assert tfrecords.match_files(str(out / "train.tfrecord-*")) == [s["path"] for s in m["shards"]]
    assert eval_lib.count_keyframes(str(out / "train.tfrecord-*")) == m["keyframes"]["written"]
    proc = _cli(
        f"--train_tfrecords={wide}",
        f"--label_map={ava}/annotations/action_list.pbtxt",
        f"--model_dir={tmp_path}/model",
        tool="train.py",
    )
    assert "train_manifest.json is not a TFRecord file" in _one_error_line(proc)


# --- 11. exit status and summary --------------------------------------------------------------


def test_cli_exits_2_on_bad_input_and_its_summary_agrees_with_the_manifest(ava, tmp_path):
    frame = _frame_path(ava, "syn0000", 31)
    frame.write_bytes(b"")
    with open(ava / "annotations" / "ava_train.csv", "a") as f:  # an id the map lacks
        f.write("syn0000,0003,0.1,0.1,0.5,0.5,999,7\n")
    proc = _cli(
        f"--ava_dir={ava}",
        "--split=train",
        f"--out={tmp_path}/a/train.tfrecord@2",
        "--num_frames=8",
        "--noprogress",
    )
    assert f"{frame}: not a decodable JPEG" in _one_error_line(proc)

    proc = _cli(
        f"--ava_dir={ava}",
        "--split=train",
        f"--out={tmp_path}/b/train.tfrecord@2",
        "--num_frames=8",
        "--noprogress",
        "--skip_bad",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads((tmp_path / "b" / "train_manifest.json").read_text())
    summary = proc.stdout.strip().splitlines()[-1]
    k = m["keyframes"]
    assert summary.startswith(f"wrote {k['written']} of {k['total']} keyframes to 2 shard(s); ")
    assert k["rejected"] == {"undecodable frame": 1}
    assert (
        "keyframes 1 (undecodable frame: 1)" in summary
        and "frames 1 (undecodable frame: 1)" in summary
    )
    rows = {role: r["rejected"] for role, r in m["rows"].items() if r["rejected"]}
    assert rows["annotations"]["action id not in label map"] == 1  # the premise
    for role, rejected in rows.items():
        assert (
            f"{role} rows {sum(rejected.values())} ("
            + ", ".join(f"{r}: {n}" for r, n in sorted(rejected.items()))
            + ")"
            in summary
        )
