"""Feature files and build_feature_dataset: label transfer, chunks of one video in time order,
every keyframe exactly once in eval, context margin, actor selection, stored values."""

import os

import numpy as np
import pytest
import tensorflow as tf

from action_tx.data import feature_dataset, features

K, C, M = 3, 4, 2  # classes, feature channels, map size


def keyframe(
    video: str,
    vindex: int,
    t: int,
    kindex: int,
    num_gt: int = 1,
    num_det: int = 2,
    num_obj: int = 1,
) -> dict:
    """A keyframe whose every stored value encodes its keyframe index (checked after reads)."""
    v = float(kindex)
    gt_boxes = np.tile([[0.1, 0.1, 0.5, 0.5]], (num_gt, 1)).astype(np.float32)
    return dict(
        video_id=video,
        video_index=vindex,
        timestamp=t,
        keyframe_index=kindex,
        context=np.full((M, M, C), v, np.float32),
        scene=np.full(C, v, np.float32),
        gt=dict(
            boxes=gt_boxes,
            labels=np.eye(K, dtype=np.float32)[[kindex % K] * num_gt],
            person_ids=np.arange(num_gt),
            features=np.full((num_gt, C), v + 0.5),
        ),
        det=dict(
            boxes=np.tile([[0.2, 0.2, 0.6, 0.6]], (num_det, 1)),
            scores=np.linspace(0.9, 0.5, num_det),
            features=np.full((num_det, C), -v),
            labels=np.zeros((num_det, K)),
        ),
        obj=dict(
            boxes=np.tile([[0.0, 0.0, 1.0, 1.0]], (num_obj, 1)),
            classes=np.full(num_obj, 7),
            scores=np.full(num_obj, 0.8),
            features=np.full((num_obj, C), v + 0.25),
        ),
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Video a: 5 keyframes (t = 10..14), video b: 2 keyframes; written in shuffled order over
    3 shards (the reader sorts by (video_id, timestamp))."""
    kfs = [keyframe("a", 0, 10 + i, i) for i in range(5)] + [
        keyframe("b", 1, 3 + i, 5 + i, num_gt=2, num_det=0) for i in range(2)
    ]
    order = np.random.default_rng(0).permutation(len(kfs))
    directory = str(tmp_path_factory.mktemp("features"))
    features.write_feature_dir(directory, [kfs[i] for i in order], num_classes=K, shard_size=3)
    return directory


def test_transfer_labels_iou_half():
    gt = tf.constant([[[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0, 0, 0, 0]]])
    gt_mask = tf.constant([[True, True, False]])
    labels = tf.constant([[[1.0, 0, 0], [0, 1, 1], [1, 1, 1]]])
    det = tf.constant(
        [
            [
                [0.0, 0.0, 0.4, 0.5],  # IoU 0.8 with gt 0
                [0.5, 0.5, 0.9, 1.0],  # IoU 0.8 with gt 1
                [0.0, 0.0, 0.25, 0.5],  # IoU exactly 0.5 with gt 0: transferred
                [0.0, 0.0, 0.2, 0.5],  # IoU 0.4: no labels
                [0.0, 0.0, 0.5, 0.5],
            ]
        ]
    )  # padding row
    det_mask = tf.constant([[True, True, True, True, False]])
    want = [[1, 0, 0], [0, 1, 1], [1, 0, 0], [0, 0, 0], [0, 0, 0]]
    got = features.transfer_labels(det, det_mask, gt, gt_mask, labels)
    np.testing.assert_array_equal(got[0].numpy(), want)
    graph = tf.function(features.transfer_labels)(det, det_mask, gt, gt_mask, labels)
    np.testing.assert_array_equal(graph[0].numpy(), want)


def test_read_sorts_and_round_trips(folder):
    data = features.read_feature_dir(folder)
    keys = [(kf["video_id"], kf["timestamp"]) for kf in data["keyframes"]]
    assert keys == [("a", 10 + i) for i in range(5)] + [("b", 3), ("b", 4)]
    kf = data["keyframes"][6]
    assert kf["context"].dtype == np.float16 and kf["context"].shape == (M, M, C)
    assert kf["context"][0, 0, 0] == 6.0
    np.testing.assert_array_equal(kf["gt"]["labels"], np.eye(K)[[0, 0]])
    assert kf["det"]["boxes"].shape == (0, 4) and kf["obj"]["classes"].tolist() == [7]
    assert (data["num_classes"], data["feature_dim"], data["map_size"]) == (K, C, M)


def _targets(batch):
    keep = (batch["keyframe_mask"] & batch["target_mask"]).numpy()
    return keep, batch["video_id"].numpy()[keep], batch["timestamp"].numpy()[keep]


def test_training_chunks_are_consecutive_keyframes_of_one_video(folder):
    ds = feature_dataset.build_feature_dataset(
        folder, num_classes=K, batch_size=3, training=True, seed=1, context=1
    )
    starts = set()
    for batch in ds.take(40):
        assert batch["features"].shape == (5, 1, M, M, C)  # B = 3 + 2 * 1
        keep, vids, ts = _targets(batch)
        assert len(set(vids)) == 1 and len(ts) == (3 if vids[0] == b"a" else 2)
        np.testing.assert_array_equal(np.diff(ts), 1)  # sorted, consecutive
        real = batch["keyframe_mask"].numpy()
        assert set(batch["video_id"].numpy()[real]) == {vids[0]}  # context: same video
        np.testing.assert_array_equal(np.diff(batch["timestamp"].numpy()[real]), 1)
        # The features are those of the gathered keyframe (value = keyframe index).
        kidx = batch["keyframe_index"].numpy()
        np.testing.assert_array_equal(
            batch["features"].numpy()[:, 0, 0, 0, 0], np.where(real, kidx, 0)
        )
        assert not keep[0] and not keep[-1]  # margins are context only
        starts.add((vids[0], ts[0]))
    # Random chunks: every start of a window of 3 in video a, and video b's only window.
    assert starts == {(b"a", 10), (b"a", 11), (b"a", 12), (b"b", 3)}
    first, again = (
        feature_dataset.build_feature_dataset(
            folder, num_classes=K, batch_size=3, training=True, seed=1, context=1
        )
        for _ in "ab"
    )
    for x, y in zip(first.take(5), again.take(5)):  # seeded
        np.testing.assert_array_equal(x["keyframe_index"], y["keyframe_index"])


def test_eval_covers_every_keyframe_once_in_order(folder):
    ds = feature_dataset.build_feature_dataset(
        folder, num_classes=K, batch_size=2, training=False, context=1
    )
    seen = []
    for batch in ds:
        keep, vids, ts = _targets(batch)
        assert len(set(vids)) <= 1
        seen += list(zip(vids.tolist(), ts.tolist()))
        # a context keyframe is real only inside the same video
        ctx = batch["keyframe_mask"].numpy() & ~batch["target_mask"].numpy()
        assert set(batch["video_id"].numpy()[ctx]) <= set(vids)
    assert seen == [(b"a", 10 + i) for i in range(5)] + [(b"b", 3), (b"b", 4)]
    batches = list(ds)
    assert len(batches) == 4  # a: 2+2+1, b: 2
    last_a = batches[2]
    np.testing.assert_array_equal(last_a["keyframe_mask"], [True, True, False, False])
    np.testing.assert_array_equal(last_a["target_mask"], [False, True, False, False])
    assert last_a["video_index"].numpy()[2] == -1 and last_a["keyframe_index"].numpy()[3] == -1


@pytest.mark.parametrize(
    "actors,n,scores", [("gt", 2, [1, 0]), ("detected", 2, [0.9, 0.5]), ("both", 3, [1, 0.9, 0.5])]
)
def test_actor_selection(folder, actors, n, scores):
    batch = next(
        iter(
            feature_dataset.build_feature_dataset(
                folder, num_classes=K, batch_size=1, training=False, actors=actors
            )
        )
    )
    assert batch["rois"].shape[1] == n  # N = the most of any keyframe
    np.testing.assert_allclose(batch["roi_scores"][0], scores, atol=1e-6)  # keyframe a/10
    feats = batch["roi_features"].numpy()[0, :, 0, 0, 0, 0]
    mask = batch["roi_mask"].numpy()[0]
    want = {"gt": [0.5, 0], "detected": [0, 0], "both": [0.5, 0, 0]}[actors]
    np.testing.assert_allclose(feats, want)  # keyframe 0: gt 0.5, det -0
    assert mask.sum() == {"gt": 1, "detected": 2, "both": 3}[actors]
    if actors != "detected":
        np.testing.assert_array_equal(batch["labels"][0, 0], [1, 0, 0])
    assert batch["object_features"].shape == (1, 1, 1, 1, 1, C)
    assert batch["object_classes"].numpy().tolist() == [[7]]


def test_unfinished_or_mismatched_folder_is_refused(folder, tmp_path):
    with pytest.raises(features.FeatureFileError, match="no feature manifest"):
        features.read_feature_dir(str(tmp_path))
    with pytest.raises(features.FeatureFileError, match="the model has 5"):
        feature_dataset.build_feature_dataset(folder, num_classes=5, batch_size=1, training=False)


def test_manifest_updates_apply_in_turn_and_leave_no_temporary_file(tmp_path):
    """update_manifest: None when there is none yet, each update reads the last one's result,
    and the file is replaced whole (output_files: no `.manifest.json.PID.partial` is left)."""
    seen = []

    def add(key):
        def update(manifest):
            seen.append(None if manifest is None else dict(manifest))
            return {**(manifest or {}), key: len(seen)}

        return update

    features.update_manifest(str(tmp_path), add("a"))
    assert features.update_manifest(str(tmp_path), add("b")) == {"a": 1, "b": 2}
    assert seen == [None, {"a": 1}]
    assert features.read_manifest(str(tmp_path)) == {"a": 1, "b": 2}
    assert sorted(os.listdir(tmp_path)) == ["manifest.json", "manifest.json.lock"]
