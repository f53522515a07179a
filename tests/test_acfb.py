import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from action_tx.acfb import attach_banks, extract_bank, load_bank
from action_tx.checkpointing import checkpointable
from action_tx.feature_model import FeatureActionModel
from action_tx.heads.acar import ACARHead
from action_tx.heads.acar_bank import BankTable
from action_tx.heads.linear import LinearHead

C, M, N, K = 6, 7, 3, 2  # channels, map size, actors per keyframe, classes
# Keyframes of the split, by keyframe index: (video_index, timestamp, real actors).
# Video 1 skips second 901, so keyframes 4 and 5 lie 2 s apart.
KEYFRAMES = [
    (0, 900, 2),
    (0, 901, 3),
    (0, 902, 1),
    (0, 903, 2),
    (1, 900, 3),
    (1, 902, 2),
    (1, 903, 1),
]


def _batches(batch_size=2, training=False):
    """Feature-mode batches (keys of build_feature_dataset): consecutive keyframes of one video,
    the last chunk of a video padded with keyframe_mask false."""
    rng = np.random.default_rng(0)
    feats = rng.normal(size=[len(KEYFRAMES), M, M, C]).astype(np.float32)
    actors = rng.normal(size=[len(KEYFRAMES), N, C]).astype(np.float32)
    out = []
    for video in (0, 1):
        idx = [i for i, k in enumerate(KEYFRAMES) if k[0] == video]
        for start in range(0, len(idx), batch_size):
            chunk = idx[start : start + batch_size]
            pad = batch_size - len(chunk)
            rows = chunk + [chunk[-1]] * pad
            n_real = np.array([KEYFRAMES[i][2] for i in rows])
            roi_mask = np.arange(N)[None] < n_real[:, None]
            vec = actors[rows]
            labels = np.stack([vec[..., 0] > 0, vec[..., 1] > 0], -1) & roi_mask[..., None]
            out.append(
                dict(
                    features=feats[rows][:, None],
                    rois=np.tile([[0.1, 0.1, 0.5, 0.5]], [batch_size, N, 1]).astype(np.float32),
                    roi_mask=roi_mask,
                    roi_scores=roi_mask.astype(np.float32),
                    roi_features=vec[:, :, None, None, None],
                    labels=labels.astype(np.float32),
                    video_id=np.array([f"v{video}".encode()] * batch_size),
                    video_index=np.array([KEYFRAMES[i][0] for i in rows], np.int32),
                    timestamp=np.array([KEYFRAMES[i][1] for i in rows], np.int32),
                    keyframe_index=np.array(rows, np.int32),
                    keyframe_mask=np.arange(batch_size) < len(chunk),
                    target_mask=np.arange(batch_size) < len(chunk),
                )
            )
    return [{k: tf.constant(v) for k, v in b.items()} for b in out]


def _model(bank_dir=None, eval_bank_dir=None, **head_kwargs):
    """A FeatureActionModel on an ACARHead; with bank folders, the head gets their banks."""
    head = ACARHead(
        num_classes=K,
        hidden_size=4,
        dropout=0.0,
        block_dropout=0.0,
        use_bank=bool(bank_dir or eval_bank_dir),
        **head_kwargs,
    )
    if bank_dir or eval_bank_dir:
        attach_banks(head, bank_dir, eval_bank_dir)
    model = FeatureActionModel(head, num_classes=K, max_detections=N)
    model(_batches()[0], training=False)
    return model


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    keras.utils.set_random_seed(1)
    model = _model()
    out_dir = str(tmp_path_factory.mktemp("acfb"))
    manifest = extract_bank(model, _batches(), out_dir, progress=False, shard_size=3)
    return model, out_dir, manifest


def test_bank_holds_every_keyframes_first_order_maps(bank):
    model, out_dir, manifest = bank
    assert manifest["keyframes"] == 7 and manifest["num_keyframes"] == 7
    assert manifest["max_persons"] == 3 and manifest["map_shape"] == [3, 3, 4]
    assert len(manifest["shards"]) == 3  # 7 keyframes, 3 per shard
    with open(os.path.join(out_dir, "acfb.json")) as f:
        assert json.load(f) == manifest
    loaded = load_bank(out_dir)
    np.testing.assert_array_equal(loaded.video_index, [k[0] for k in KEYFRAMES])
    np.testing.assert_array_equal(loaded.timestamp, [k[1] for k in KEYFRAMES])
    np.testing.assert_array_equal(loaded.mask.sum(1), [k[2] for k in KEYFRAMES])
    assert loaded.video_id == ["v0"] * 4 + ["v1"] * 3
    # The stored maps are the head's first-order maps F of the real actors (float16).
    for batch in _batches():
        with model.head.recording() as recorded:
            model(batch, training=False)
        maps = recorded[0].numpy()
        for b in range(2):
            if not batch["keyframe_mask"][b]:
                continue
            i, n = int(batch["keyframe_index"][b]), KEYFRAMES[int(batch["keyframe_index"][b])][2]
            np.testing.assert_allclose(
                loaded.maps[i, :n].astype(np.float32), maps[b, :n], rtol=2e-3, atol=2e-3
            )
            np.testing.assert_array_equal(loaded.maps[i, n:], 0.0)


def test_window_read_gives_stored_maps_and_masks_outside_the_video(bank):
    _, out_dir, _ = bank
    loaded = load_bank(out_dir)
    table = BankTable(loaded)
    # Keyframe 3 (video 0, last second), keyframe 4 (video 1, first; next one is 2 s later).
    maps, mask = table.read(
        tf.constant([3, 4]), tf.constant([0, 1]), tf.constant([903, 900]), window=1
    )
    assert maps.shape == (2, 3, 3, 3, 3, 4)
    expected_mask = np.zeros([2, 3, 3], bool)
    expected_mask[0, 0, :1] = True  # keyframe 2: 1 actor
    expected_mask[0, 1, :2] = True  # keyframe 3 itself: 2 actors; keyframe 4 is video 1
    expected_mask[1, 1, :3] = True  # keyframe 4 itself; 3 is video 0, 5 is 2 s away
    np.testing.assert_array_equal(mask.numpy(), expected_mask)
    np.testing.assert_array_equal(maps.numpy()[0, 0, 0], loaded.maps[2, 0].astype(np.float32))
    np.testing.assert_array_equal(maps.numpy()[0, 1, :2], loaded.maps[3, :2].astype(np.float32))
    np.testing.assert_array_equal(maps.numpy()[0, 2], 0.0)
    # Window 2 reaches keyframe 5 (dt = 2) from keyframe 4; keyframe -1 / 7 never exist.
    _, mask = table.read(tf.constant([4, 0]), tf.constant([1, 0]), tf.constant([900, 900]), 2)
    np.testing.assert_array_equal(
        mask.numpy().any(-1), [[False, False, True, True, False], [False, False, True, True, True]]
    )


def test_stage2_uses_train_bank_in_training_eval_bank_in_inference(bank, tmp_path):
    _, out_dir, _ = bank
    model = _model(bank_dir=out_dir, bank_window=1)
    bank_vars = {id(v) for v in model.head.bank_tables["train"].variables}
    assert bank_vars and not bank_vars & {id(v) for v in model.variables}
    ckpt = tf.train.Checkpoint(model=checkpointable(model))
    path = ckpt.save(str(tmp_path / "ckpt"))
    # An "evaluation split" bank: keyframes 0-2 only (different K), restored without trouble.
    eval_dir = str(tmp_path / "eval_bank")
    loaded = load_bank(out_dir)
    os.makedirs(eval_dir)
    np.savez(
        os.path.join(eval_dir, "acfb-00000.npz"),
        keyframe_index=np.arange(3),
        video_index=loaded.video_index[:3],
        timestamp=loaded.timestamp[:3],
        video_id=np.array(loaded.video_id[:3]),
        maps=loaded.maps[:3],
        mask=loaded.mask[:3],
        boxes=np.zeros([3, 3, 4]),
        scores=np.zeros([3, 3]),
    )
    with open(os.path.join(eval_dir, "acfb.json"), "w") as f:
        json.dump(
            dict(
                num_keyframes=3,
                max_persons=3,
                map_shape=[3, 3, 4],
                shards=["acfb-00000.npz"],
                keyframes=3,
            ),
            f,
        )
    evaluator = _model(bank_dir=out_dir, eval_bank_dir=eval_dir, bank_window=1)
    tf.train.Checkpoint(model=checkpointable(evaluator)).restore(path).assert_consumed()
    batch = _batches()[1]  # keyframes 2, 3: keyframe 3 lies outside the eval bank
    _, att = evaluator.head.bank_tables["eval"].read(
        batch["keyframe_index"], batch["video_index"], batch["timestamp"], 1
    )
    np.testing.assert_array_equal(att.numpy().sum(-1), [[3, 1, 0], [1, 0, 0]])
    train_att = evaluator(batch, training=True)["attention"].numpy()  # [B, N, 3 * 3, h, w]
    eval_att = evaluator(batch, training=False)["attention"].numpy()
    np.testing.assert_allclose(train_att[1, 0].sum(0), 1.0, rtol=1e-5)  # 2 + 2 actors
    np.testing.assert_allclose(eval_att[1, 0].sum(0), 1.0, rtol=1e-5)  # keyframe 2's one
    np.testing.assert_array_equal(eval_att[1, 0, 3:], 0.0)


def test_stage2_training_steps_lower_the_loss(bank):
    _, out_dir, _ = bank
    keras.utils.set_random_seed(2)
    model = _model(bank_dir=out_dir, bank_window=1)
    optimizer = keras.optimizers.Adam(0.02)
    batches = _batches()
    losses = []
    for step in range(16):
        batch = batches[step % len(batches)]
        with tf.GradientTape() as tape:
            loss = model.compute_losses(model(batch, training=True))["total_loss"]
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        losses.append(float(loss))
    assert np.mean(losses[-4:]) < 0.7 * np.mean(losses[:4])


def test_missing_bank_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="acfb.json: not an ACFB manifest"):
        load_bank(str(tmp_path))


def test_head_takes_loaded_banks_and_keeps_them_out_of_its_config(bank):
    _, out_dir, _ = bank
    loaded = load_bank(out_dir)
    head = ACARHead(
        num_classes=K, hidden_size=4, dropout=0.0, block_dropout=0.0, use_bank=True, bank_window=1
    )
    head.set_bank(loaded)  # no eval bank: inference reads this one too
    tables = head.bank_tables
    assert tables["eval"] is tables["train"]
    np.testing.assert_array_equal(tables["train"].maps.numpy(), loaded.maps)
    # get_config is exactly the init args: a flag for the bank, never its arrays.
    config = head.get_config()
    assert config["use_bank"] is True and config["bank_window"] == 1
    assert not any(
        isinstance(v, (np.ndarray, list, tf.Variable)) and np.size(v) > 8 for v in config.values()
    )
    assert len(json.dumps(config)) < 1000
    clone = ACARHead.from_config(config)
    assert clone.get_config() == config and clone.bank_tables == {"train": None, "eval": None}
    model = FeatureActionModel(clone, num_classes=K, max_detections=N)
    with pytest.raises(ValueError, match="no bank was given; call set_bank"):
        model(_batches()[0], training=False)
    # An eval bank alone serves inference; training then asks for the training bank.
    clone.set_bank(eval_bank=loaded)
    assert model(_batches()[0], training=False)["attention"].shape[2] == 3 * 3
    with pytest.raises(ValueError, match="training needs the training split's bank"):
        model(_batches()[0], training=True)


def test_bank_mismatches_are_clear_errors(bank):
    _, out_dir, _ = bank
    loaded = load_bank(out_dir)
    with pytest.raises(ValueError, match="use_bank=False"):
        ACARHead(num_classes=K, hidden_size=4).set_bank(loaded)
    with pytest.raises(ValueError, match="d = 4, this head hidden_size = 8"):
        ACARHead(num_classes=K, hidden_size=8, use_bank=True).set_bank(loaded)
    with pytest.raises(ValueError, match="needs a bank or an eval_bank"):
        ACARHead(num_classes=K, hidden_size=4, use_bank=True).set_bank()
    with pytest.raises(ValueError, match="LinearHead is not an ACARHead"):
        attach_banks(LinearHead(K), out_dir)
    with pytest.raises(ValueError, match="not an ACARHead"):
        extract_bank(FeatureActionModel(LinearHead(K), num_classes=K), _batches(), out_dir)
