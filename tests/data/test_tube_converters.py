"""UCF101-24 (pickle) and JHMDB-21 (puppet-mask .mat) readers and the AVA-format layout writer."""

import json
import pickle

import numpy as np
import pytest
import scipy.io
from PIL import Image

import tensorflow as tf

from action_tx.data import ava, convert, jhmdb, tfrecords, tube_layout, ucf24


def gray(k):
    return 20 + 10 * k


def write_frames(folder, n, ext="jpg", size=(32, 24)):
    folder.mkdir(parents=True)
    for k in range(n):
        Image.fromarray(np.full((size[1], size[0], 3), gray(k), np.uint8)).save(
            folder / f"{k + 1:05d}.{ext}"
        )


def ucf_pickle(path, tubes=None, **overrides):
    """A pickle with the real key names: two videos of 32x24, one train, one test."""
    if tubes is None:
        tubes = {
            "Basketball/v_Basketball_g01_c01": {
                0: [np.array([[f, 4, 2, 20, 22] for f in range(2, 7)], np.float32)]
            },
            "Diving/v_Diving_g02_c01": {
                1: [np.array([[1, 0, 0, 16, 12], [2, 0, 0, 16, 12]]), np.array([[4, 8, 6, 32, 24]])]
            },
        }
    data = {
        "labels": ["Basketball", "Diving"],
        "gttubes": tubes,
        "nframes": {"Basketball/v_Basketball_g01_c01": 8, "Diving/v_Diving_g02_c01": 5},
        "train_videos": [["Basketball/v_Basketball_g01_c01"]],
        "test_videos": [["Diving/v_Diving_g02_c01"]],
        "resolution": {
            "Basketball/v_Basketball_g01_c01": (24, 32),
            "Diving/v_Diving_g02_c01": (24, 32),
        },
    }
    data.update(overrides)
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=2)


@pytest.fixture
def ucf_root(tmp_path):
    write_frames(tmp_path / "rgb-images" / "Basketball" / "v_Basketball_g01_c01", 8)
    write_frames(tmp_path / "rgb-images" / "Diving" / "v_Diving_g02_c01", 5)
    ucf_pickle(tmp_path / "UCF101v2-GT.pkl")
    return tmp_path


def test_ucf24_layout_rows_are_exact(ucf_root, tmp_path):
    data = ucf24.read(ucf_root / "UCF101v2-GT.pkl", frames_dir=ucf_root / "rgb-images")
    out = tmp_path / "out"
    manifest = tube_layout.write_layout(data, str(out), name="ucf101_24")
    train = (out / "annotations" / "ava_train.csv").read_text().splitlines()
    # Frames 2..6 (1-based) -> timestamps 1..5; boxes x/32, y/24; background keys 0, 6, 7.
    assert train[:3] == [
        "v_Basketball_g01_c01,0000",
        "v_Basketball_g01_c01,0001,0.125,0.083,0.625,0.917,1,0",
        "v_Basketball_g01_c01,0002,0.125,0.083,0.625,0.917,1,0",
    ]
    assert len(train) == 8 and train[-1] == "v_Basketball_g01_c01,0007"
    test = (out / "annotations" / "ava_test.csv").read_text().splitlines()
    assert test == [
        "v_Diving_g02_c01,0000,0.000,0.000,0.500,0.500,2,0",
        "v_Diving_g02_c01,0001,0.000,0.000,0.500,0.500,2,0",
        "v_Diving_g02_c01,0002",
        "v_Diving_g02_c01,0003,0.250,0.250,1.000,1.000,2,1",
        "v_Diving_g02_c01,0004",
    ]
    label_map = ava.read_label_map(str(out / "annotations" / "ucf101_24_action_list.pbtxt"))
    assert label_map.names == {1: "Basketball", 2: "Diving"}
    assert manifest["splits"]["train"] == {
        "videos": 1,
        "tubes": 1,
        "keyframes": 8,
        "boxes": 5,
        "background_keyframes": 3,
        "excluded_keyframes": 0,
    }
    assert "fps=1" in (out / "README.txt").read_text()
    # The TFRecord converter reads the layout unchanged: timestamp t is exactly frame t + 1.
    result = convert.convert_split(
        str(out),
        "train",
        str(tmp_path / "tf" / "train@1"),
        num_frames=3,
        progress=False,
        num_workers=1,
    )
    assert result["options"]["fps_for_frame_folders"] == 1.0
    records = [
        tfrecords.parse_example(r) for r in tf.data.TFRecordDataset(result["shards"][0]["path"])
    ]
    assert [int(r["timestamp"]) for r in records] == list(range(8))
    # Keyframe 3's window is frames 3, 4, 5 (1-based): grays of 0-based 2, 3, 4.
    means = [float(tf.io.decode_jpeg(f).numpy().mean()) for f in records[3]["frames"]]
    np.testing.assert_allclose(means, [gray(2), gray(3), gray(4)], atol=2)


def test_keyframe_stride_and_bad_boxes(ucf_root, tmp_path):
    tubes = {
        "Basketball/v_Basketball_g01_c01": {
            0: [np.array([[1, 4, 2, 20, 22], [3, 4, 2, 4, 22], [5, 4, 2, 20, 22]])]
        },
        "Diving/v_Diving_g02_c01": {1: [np.array([[1, 0, 0, 16, 12]])]},
    }
    ucf_pickle(ucf_root / "bad.pkl", tubes=tubes)
    data = ucf24.read(ucf_root / "bad.pkl", frames_dir=ucf_root / "rgb-images")
    with pytest.raises(tube_layout.TubeDataError, match=r"v_Basketball_g01_c01:2: empty box"):
        tube_layout.write_layout(data, str(tmp_path / "o1"), name="u")
    m = tube_layout.write_layout(
        data, str(tmp_path / "o2"), name="u", keyframe_stride=2, skip_bad=True
    )
    assert m["rejected_boxes"] == [
        {"where": "v_Basketball_g01_c01:2", "reason": "empty box 4,2,4,22"}
    ]
    rows = (tmp_path / "o2" / "annotations" / "ava_train.csv").read_text().splitlines()
    assert [r.split(",")[1] for r in rows] == ["0000", "0004", "0006"]  # 2 is excluded
    excluded = tmp_path / "o2" / "annotations" / "ava_train_excluded_timestamps.csv"
    assert excluded.read_text() == "v_Basketball_g01_c01,0002\n"


def test_ucf24_structure_errors(tmp_path):
    path = tmp_path / "x.pkl"
    with open(path, "wb") as f:
        pickle.dump({"labels": [], "gttubes": {}}, f)
    with pytest.raises(tube_layout.TubeDataError, match="missing key.*nframes, train_videos"):
        ucf24.read(path)
    ucf_pickle(
        path,
        tubes={
            "Basketball/v_Basketball_g01_c01": {0: [np.array([[9, 0, 0, 4, 4]])]},
            "Diving/v_Diving_g02_c01": {},
        },
    )
    data = ucf24.read(path)
    assert data.problems == [("v_Basketball_g01_c01:8", "tube 0 of label 0: frame 9 outside 1..8")]
    ucf_pickle(path)
    data = ucf24.read(path)  # no frames_dir: every video is bad
    with pytest.raises(tube_layout.TubeDataError, match="no frame folder or video found"):
        tube_layout.write_layout(data, str(tmp_path / "o"), name="u")


def test_jhmdb_masks_splits_and_layout(tmp_path):
    root = tmp_path / "JHMDB"
    (root / "splits").mkdir(parents=True)
    videos = {"brush_hair": ["hair_a", "hair_b"], "catch": ["catch_a", "catch_b"]}
    for cls, names in videos.items():
        (root / "splits" / f"{cls}_test_split1.txt").write_text(
            f"{names[0]}.avi 1\n{names[1]}.avi 2\n"
        )
        for k, name in enumerate(names):
            mask = np.zeros((24, 32, 4), np.uint8)
            for t in range(4):
                mask[2 + t : 10 + t, 4 + k : 12 + k + t, t] = 1  # rows 2+t..9+t, cols 4+k..11+k+t
            mask[:, :, 3] = 0 if name == "catch_b" else mask[:, :, 3]  # empty last mask
            (root / "puppet_mask" / cls / name).mkdir(parents=True)
            scipy.io.savemat(
                root / "puppet_mask" / cls / name / "puppet_mask.mat", {"part_mask": mask}
            )
            write_frames(root / "Rename_Images" / cls / name, 4, ext="png")
    data = jhmdb.read(str(root), 1)
    assert data.class_names == ["brush_hair", "catch"]
    assert data.splits == {"train": ["hair_a", "catch_a"], "test": ["hair_b", "catch_b"]}
    tube = data.videos["hair_b"].tubes[0]
    np.testing.assert_array_equal(tube.frames, [0, 1, 2, 3])
    np.testing.assert_allclose(tube.boxes[1], [3 / 24, 5 / 32, 11 / 24, 14 / 32])
    np.testing.assert_array_equal(data.videos["catch_b"].tubes[0].frames, [0, 1, 2])
    out = tmp_path / "out"
    tube_layout.write_layout(data, str(out), name="jhmdb21")
    test = (out / "annotations" / "ava_test.csv").read_text().splitlines()
    assert test[-1] == "hair_b,0003,0.156,0.208,0.500,0.542,1,0"
    assert "catch_b,0003" in test
    jpeg = Image.open(out / "frames" / "hair_b" / "00003.jpg")
    assert jpeg.format == "JPEG" and abs(np.asarray(jpeg).mean() - gray(2)) < 3
    manifest = json.loads((out / "conversion_manifest.json").read_text())
    assert manifest["classes"] == ["brush_hair", "catch"] and manifest["layout_fps"] == 1


def test_jhmdb_bad_split_line(tmp_path):
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "run_test_split2.txt").write_text("a.avi 1\nb.avi three\n")
    with pytest.raises(tube_layout.TubeDataError, match=r"run_test_split2.txt:2: expected"):
        jhmdb.read(str(tmp_path), 2)
