"""tools/eval.py, file mode: the real sample's official mAP, JSON layout, flags, clear errors."""
import json
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def run_tool(*args):
    return subprocess.run([sys.executable, str(REPO / "tools" / "eval.py"), *args],
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def test_real_sample_official_map(shared_data, tmp_path):
    root = shared_data / "ava_format" / "eval_sample"
    out = tmp_path / "out" / "R.json"
    proc = run_tool(f"--groundtruth={root / 'gt.csv'}", f"--detections={root / 'pred.csv'}",
                    f"--label_map={root / 'action_list.txt'}", f"--output_json={out}")
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
    (tmp_path / "gt.csv").write_text("v,0001,0.1,0.1,0.5,0.5,1,0\nv,0002,0.1,0.1,0.5,0.5,1,0\n"
                                     "v,0003\n")
    (tmp_path / "det.csv").write_text("v,0001,0.1,0.1,0.5,0.5,1,0.5\n"
                                      "v,0002,0.6,0.6,0.9,0.9,1,0.9\n")
    (tmp_path / "map.pbtxt").write_text('item {\n  name: "bend/bow"\n  id: 1\n}\n'
                                        'item {\n  name: "x"\n  id: 20\n}\n')
    (tmp_path / "ex.csv").write_text("v,0002\n")
    (tmp_path / "ev.csv").write_text("video_id,timestamp,person_id,action_id,evidence\n"
                                     "v,1,0,1,self\nv,2,0,1,temporal\n")
    common = [f"--groundtruth={tmp_path / 'gt.csv'}", f"--detections={tmp_path / 'det.csv'}",
              f"--label_map={tmp_path / 'map.pbtxt'}"]
    proc = run_tool(*common, f"--output_json={tmp_path / 'a.json'}",
                    f"--evidence={tmp_path / 'ev.csv'}")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "a.json").read_text())
    assert result["mAP@0.5IOU"] == pytest.approx(0.25)       # FP first, then 1 of 2
    assert result["per_class"] == {"1": 0.25, "20": None}
    assert result["by_evidence"]["self"]["mAP"] == pytest.approx(0.5)   # FP ranks first
    assert result["by_evidence"]["temporal"]["mAP"] == 0.0
    proc = run_tool(*common, f"--output_json={tmp_path / 'b.json'}",
                    f"--excluded={tmp_path / 'ex.csv'}")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "b.json").read_text())["mAP@0.5IOU"] == 1.0


def test_bad_input_is_one_clear_line(tmp_path):
    (tmp_path / "gt.csv").write_text("v,0001,0.1,0.1,0.5,0.5,1,0\n")
    (tmp_path / "det.csv").write_text("v,0001,0.1,0.1,0.5,0.5,1,0.5\nv,0001,0.1,oops,0.5,0.5,1,0.4\n")
    (tmp_path / "map.txt").write_text("1: bend/bow\n")
    proc = run_tool(f"--groundtruth={tmp_path / 'gt.csv'}", f"--detections={tmp_path / 'det.csv'}",
                    f"--label_map={tmp_path / 'map.txt'}")
    assert proc.returncode != 0
    assert f"{tmp_path / 'det.csv'}:2:" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_tool(f"--groundtruth={tmp_path / 'gt.csv'}")
    assert proc.returncode != 0 and "--detections" in proc.stderr
