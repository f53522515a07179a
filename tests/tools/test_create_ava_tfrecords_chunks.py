"""--keyframes_per_record=K > 1: layout-2 records (`action_tx.data.chunks`) hold the same
keyframes as layout 1, each frame once; chunks stay inside a video and skip rejected keyframes."""

import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf
from test_create_ava_tfrecords import _run, root  # noqa: F401  (root: the fixture)

from action_tx.data import chunks, convert


def _keyframes(manifest):
    """Every keyframe of the manifest's shards as numpy dicts (either layout)."""
    out = []
    for shard in manifest["shards"]:
        for ex in chunks.shard_keyframes(tf.constant(shard["path"])):
            out.append({k: np.asarray(v.numpy()) for k, v in ex.items() if k != "shard"})
    return out


def _record_sizes(manifest):
    """Keyframes in each record, shard by shard."""
    return [
        [
            int(chunks.parse_chunk(r)["timestamp"].shape[0])
            for r in tf.data.TFRecordDataset(s["path"])
        ]
        for s in manifest["shards"]
    ]


@pytest.mark.parametrize("k", [2, 10])
def test_layout2_holds_the_same_keyframes(root, tmp_path, k):  # noqa: F811
    one = _run(root, tmp_path / "one")
    two = _run(root, tmp_path / "two", keyframes_per_record=k)
    want, got = _keyframes(one), _keyframes(two)
    assert len(got) == len(want) == 3
    for a, b in zip(want, got):
        assert sorted(a) == sorted(b)
        for key in a:
            assert (a[key].dtype, a[key].shape) == (b[key].dtype, b[key].shape), key
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # vidA's two keyframes in one record, vidB's one in another: a chunk never spans videos.
    assert _record_sizes(two) == [[2], [1]]
    m = json.loads(pathlib.Path(two["manifest_path"]).read_text())
    assert m["options"]["layout"] == 2 and m["options"]["keyframes_per_record"] == k
    assert [(s["records"], s["keyframes"]) for s in m["shards"]] == [(1, 2), (1, 1)]
    assert m["keyframes"]["written"] == 3
    m1 = json.loads(pathlib.Path(one["manifest_path"]).read_text())
    assert m1["options"]["layout"] == 1 and m1["options"]["keyframes_per_record"] == 1
    assert [(s["records"], s["keyframes"]) for s in m1["shards"]] == [(2, 2), (1, 1)]
    # vidA's windows [0, 0, 0, 1] and [18, 19, 20, 21] are 6 distinct frames: stored once.
    first = next(iter(tf.data.TFRecordDataset(two["shards"][0]["path"])))
    chunk = chunks.parse_chunk(first)
    assert chunk["frames"].shape[0] == 6
    np.testing.assert_array_equal(chunk["windows"], [[0, 0, 0, 1], [2, 3, 4, 5]])
    # The manifests count the frames stored: layout 1 three 4-frame windows (vidA's first
    # repeats frame 0), layout 2 each distinct frame of a chunk once.
    assert m1["frames"]["stored"] == 12
    assert m["frames"]["stored"] == m["frames"]["distinct"] == m1["frames"]["distinct"] < 12
    assert f"12 frames stored for {m1['frames']['distinct']} distinct" in convert.summary(one)
    size = lambda m: sum(pathlib.Path(s["path"]).stat().st_size for s in m["shards"])  # noqa: E731
    assert size(two) < size(one)


def test_rejected_keyframe_drops_out_before_grouping(root, tmp_path):  # noqa: F811
    with open(root / "annotations" / "ava_train.csv", "a") as f:
        f.write("vidA,0001,0.1,0.2,0.5,0.6,2,0\n")  # t=1: window frames 8..11
    (root / "frames" / "vidA" / "vidA_000010.jpg").unlink()  # frame 9: only t=1 needs it
    m = _run(root, tmp_path / "out", skip_bad=True, keyframes_per_record=2)
    assert m["keyframes"] == {"total": 4, "written": 3, "rejected": {"missing frame": 1}}
    assert _record_sizes(m) == [[2], [1]]  # vidA: t=0 and t=2 together
    keys = [(str(ex["video_id"].item().decode()), int(ex["timestamp"])) for ex in _keyframes(m)]
    assert keys == [("vidA", 0), ("vidA", 2), ("vidB", 2)]
    assert [int(ex["keyframe_index"]) for ex in _keyframes(m)] == [0, 2, 3]


def test_layout2_shards_identical_across_workers_and_shard_counts(root, tmp_path):  # noqa: F811
    m1 = _run(root, tmp_path / "one", keyframes_per_record=3)
    m2 = _run(root, tmp_path / "two", keyframes_per_record=3, num_workers=2)
    for s1, s2 in zip(m1["shards"], m2["shards"]):
        assert pathlib.Path(s1["path"]).read_bytes() == pathlib.Path(s2["path"]).read_bytes()
    with pytest.raises(ValueError, match="keyframes_per_record must be >= 1"):
        _run(root, tmp_path / "three", keyframes_per_record=0)
