"""tools/eval.py, file mode: the real sample's official mAP, JSON layout, flags, clear errors."""

import json
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def run_tool(*args):
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "eval.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def test_real_sample_official_map(shared_data, tmp_path):
    root = shared_data / "ava_format" / "eval_sample"
    out = tmp_path / "out" / "R.json"
    proc = run_tool(
        f"--groundtruth={root / 'gt.csv'}",
        f"--detections={root / 'pred.csv'}",
        f"--label_map={root / 'action_list.txt'}",
        f"--output_json={out}",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["mAP@0.5IOU"] == pytest.approx(0.0938552188552, abs=1e-6)
    assert set(result["per_class"]) == {"1", "2", "3"}
    assert result["per_class"]["2"] == 0.0
    assert set(result["localization"]) == {"AP@0.5IOU", "AP@0.75IOU"}
    assert set(result["by_persons"]) == {"1", "2", "3+"}
    assert "frame-mAP@0.5IOU" in proc.stdout


def test_excluded_and_evidence_flags(tmp_path):
    # Two keys, class 1: (v,1) found, (v,2) only a false positive; excluding (v,2) -> AP 1.
    (tmp_path / "gt.csv").write_text(
        "v,0001,0.1,0.1,0.5,0.5,1,0\nv,0002,0.1,0.1,0.5,0.5,1,0\nv,0003\n"
    )
    (tmp_path / "det.csv").write_text(
        "v,0001,0.1,0.1,0.5,0.5,1,0.5\nv,0002,0.6,0.6,0.9,0.9,1,0.9\n"
    )
    (tmp_path / "map.pbtxt").write_text(
        'item {\n  name: "bend/bow"\n  id: 1\n}\nitem {\n  name: "x"\n  id: 20\n}\n'
    )
    (tmp_path / "ex.csv").write_text("v,0002\n")
    (tmp_path / "ev.csv").write_text(
        "video_id,timestamp,person_id,action_id,evidence\nv,1,0,1,self\nv,2,0,1,temporal\n"
    )
    common = [
        f"--groundtruth={tmp_path / 'gt.csv'}",
        f"--detections={tmp_path / 'det.csv'}",
        f"--label_map={tmp_path / 'map.pbtxt'}",
    ]
    proc = run_tool(
        *common, f"--output_json={tmp_path / 'a.json'}", f"--evidence={tmp_path / 'ev.csv'}"
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "a.json").read_text())
    assert result["mAP@0.5IOU"] == pytest.approx(0.25)  # FP first, then 1 of 2
    assert result["per_class"] == {"1": 0.25, "20": None}
    assert result["by_evidence"]["self"]["mAP"] == pytest.approx(0.5)  # FP ranks first
    assert result["by_evidence"]["temporal"]["mAP"] == 0.0
    proc = run_tool(
        *common, f"--output_json={tmp_path / 'b.json'}", f"--excluded={tmp_path / 'ex.csv'}"
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "b.json").read_text())["mAP@0.5IOU"] == 1.0


def test_pooled_splits(tmp_path):
    # Two splits, both naming their video "v": split 0 found (0.5), split 1's 0.9 detection
    # misses its own box. Pooled: FP first, then 1 of 2 -> 0.25; split 1 excluded -> 1.
    (tmp_path / "gt0.csv").write_text("v,0001,0.1,0.1,0.5,0.5,1,0\n")
    (tmp_path / "gt1.csv").write_text("v,0001,0.6,0.6,0.9,0.9,1,0\n")
    (tmp_path / "det0.csv").write_text("v,0001,0.1,0.1,0.5,0.5,1,0.5\n")
    (tmp_path / "det1.csv").write_text("v,0001,0.1,0.1,0.5,0.5,1,0.9\n")
    (tmp_path / "ex0.csv").write_text("")
    (tmp_path / "ex1.csv").write_text("v,0001\n")
    (tmp_path / "map.pbtxt").write_text('item {\n  name: "bend/bow"\n  id: 1\n}\n')
    pooled = [
        f"--groundtruth={tmp_path / 'gt0.csv'},{tmp_path / 'gt1.csv'}",
        f"--detections={tmp_path / 'det0.csv'},{tmp_path / 'det1.csv'}",
        f"--label_map={tmp_path / 'map.pbtxt'}",
    ]
    proc = run_tool(*pooled, f"--output_json={tmp_path / 'a.json'}")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "a.json").read_text())["mAP@0.5IOU"] == pytest.approx(0.25)
    proc = run_tool(
        *pooled,
        f"--output_json={tmp_path / 'b.json'}",
        f"--excluded={tmp_path / 'ex0.csv'},{tmp_path / 'ex1.csv'}",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "b.json").read_text())["mAP@0.5IOU"] == 1.0
    proc = run_tool(*pooled, f"--excluded={tmp_path / 'ex1.csv'}")
    assert proc.returncode == 2
    assert "same number of comma-separated files" in proc.stderr
    assert "--excluded (1)" in proc.stderr
    proc = run_tool(*pooled[1:], f"--groundtruth={tmp_path / 'gt0.csv'},{tmp_path / 'no.csv'}")
    assert proc.returncode == 2
    assert f"--groundtruth: no such file: {tmp_path / 'no.csv'}" in proc.stderr


def test_bad_input_is_one_clear_line(tmp_path):
    (tmp_path / "gt.csv").write_text("v,0001,0.1,0.1,0.5,0.5,1,0\n")
    (tmp_path / "det.csv").write_text(
        "v,0001,0.1,0.1,0.5,0.5,1,0.5\nv,0001,0.1,oops,0.5,0.5,1,0.4\n"
    )
    (tmp_path / "map.txt").write_text("1: bend/bow\n")
    proc = run_tool(
        f"--groundtruth={tmp_path / 'gt.csv'}",
        f"--detections={tmp_path / 'det.csv'}",
        f"--label_map={tmp_path / 'map.txt'}",
    )
    assert proc.returncode != 0
    assert f"{tmp_path / 'det.csv'}:2:" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_tool(f"--groundtruth={tmp_path / 'gt.csv'}")
    assert proc.returncode != 0 and "--detections" in proc.stderr


# ----------------------------------------------------------------------------- model mode
MODEL_FLAGS = {
    "trunk": "i3d_tiny",
    "head": "linear",
    "anchor_sizes": ["16", "32", "48"],
    "rpn_filters": 32,
    "post_nms_top_k": 20,
    "num_roi_samples": 16,
    "max_detections": 10,
    "num_frames": 8,
    "frame_stride": 1,
    "image_size": 64,
    "seed": 0,
    "learning_rate": 0.1,
}  # a trainer-only flag: ignored


def make_model_dir(root):
    """Tiny synthetic val split (1 video, 5 keyframes) + a tiny detector's ckpt-1 and ckpt-2
    + model_flags.json, as the trainer leaves them."""
    import tensorflow as tf

    from action_tx import eval_lib
    from action_tx.checkpointing import checkpointable
    from action_tx.data import ava, convert, synthetic
    from action_tx.data.pipeline import build_dataset
    from action_tx.model_builder import build_detector

    synthetic.generate(str(root / "syn"), preset="tiny", seed=0, check=False, videos=3, seconds=8)
    convert.convert_split(
        str(root / "syn"),
        "val",
        str(root / "rec" / "val@1"),
        num_frames=8,
        progress=False,
        num_workers=1,
    )
    label_map = ava.read_label_map(str(root / "syn" / "annotations" / "action_list.pbtxt"))
    detector = build_detector(
        num_classes=label_map.num_classes,
        trunk="i3d_tiny",
        head="linear",
        anchor_sizes=(16.0, 32.0, 48.0),
        rpn_filters=32,
        post_nms_top_k=20,
        num_roi_samples=16,
        max_detections=10,
    )
    eval_lib.build_detector_on(
        detector,
        build_dataset(
            str(root / "rec" / "val-*"),
            batch_size=2,
            num_classes=label_map.num_classes,
            num_frames=8,
            frame_stride=1,
            image_size=64,
            training=False,
        ),
    )
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=checkpointable(detector)), str(root / "model"), max_to_keep=5
    )
    manager.save()
    detector.head.weights[0].assign(detector.head.weights[0] * -1.0)  # a different ckpt-2
    manager.save()
    (root / "model" / "model_flags.json").write_text(json.dumps(MODEL_FLAGS))
    return root / "syn" / "annotations"


def test_model_mode_continuous_gt_proposals(tmp_path):
    from object_detection_ext.ava_eval import evaluate
    from tensorboard.backend.event_processing import event_accumulator

    ann = make_model_dir(tmp_path)
    out = tmp_path / "eval_out"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "eval.py"),
            f"--model_dir={tmp_path / 'model'}",
            f"--eval_tfrecords={tmp_path / 'rec' / 'val-*'}",
            f"--groundtruth={ann / 'ava_val.csv'}",
            f"--label_map={ann / 'action_list.pbtxt'}",
            f"--output_dir={out}",
            "--continuous",
            "--eval_timeout=1",
            "--eval_poll=0.2",
            "--proposals=gt",
            "--num_images=1",
            "--noprogress",
            "--eval_batch_size=5",
        ],  # one batch: one trace
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "upper bound" in proc.stderr and "stopping after 2 evaluated" in proc.stderr
    maps = []
    for n in (1, 2):
        report = json.loads((out / f"ckpt-{n}_results.json").read_text())
        again = evaluate(
            str(ann / "ava_val.csv"),
            str(out / f"ckpt-{n}_detections.csv"),
            str(ann / "action_list.pbtxt"),
        )
        assert report["mAP@0.5IOU"] == pytest.approx(again.map, abs=1e-12)
        assert report["step"] == n
        # Ground-truth boxes as proposals: every detected box is a ground-truth box, so the
        # class-agnostic localization AP@0.5 is 1 whatever the classifier.
        assert report["localization"]["AP@0.5IOU"] == pytest.approx(1.0)
        maps.append(report["mAP@0.5IOU"])
    acc = event_accumulator.EventAccumulator(str(out), size_guidance={"tensors": 0})
    acc.Reload()
    assert [e.step for e in acc.Tensors("eval/mAP@0.5IOU")] == [1, 2]
    assert "eval/keyframes" in acc.Tags()["tensors"]


def test_model_mode_errors(tmp_path):
    proc = run_tool("--detections=a.csv", "--model_dir=m")
    assert proc.returncode == 2 and "choose one mode" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = run_tool("--label_map=x")
    assert proc.returncode == 2 and "choose one mode" in proc.stderr
    proc = run_tool(f"--model_dir={tmp_path / 'nope'}")
    assert proc.returncode == 2 and "no such directory" in proc.stderr
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model_flags.json").write_text('{"image_size": "big"}')
    proc = run_tool(f"--model_dir={tmp_path / 'm'}")
    assert proc.returncode == 2 and "model_flags.json: flag image_size" in proc.stderr
    (tmp_path / "m" / "model_flags.json").write_text("{}")
    (tmp_path / "map.txt").write_text("1: bend/bow\n")
    (tmp_path / "gt.csv").write_text("v,0001,0.1,0.1,0.5,0.5,1,0\n")
    proc = run_tool(
        f"--model_dir={tmp_path / 'm'}",
        f"--label_map={tmp_path / 'map.txt'}",
        f"--groundtruth={tmp_path / 'gt.csv'}",
        f"--eval_tfrecords={tmp_path / 'none-*'}",
    )
    assert proc.returncode == 2 and "--eval_tfrecords: no TFRecord files" in proc.stderr
    assert "Traceback" not in proc.stderr
