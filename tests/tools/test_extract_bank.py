"""ACAR's feature bank at scale (issue 31 item 5): tools/extract_features.py --bank=acfb shards
by video, runs as N workers over disjoint shards and resumes per shard; the bank it writes
equals today's one-pass bank (acfb.extract_bank), which still loads."""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from train_helpers import ENV, REPO, TINY_DETECTOR, assert_clean_error, make_tiny_data

TOOL = os.path.join(REPO, "tools", "extract_features.py")
# A tiny end-to-end ACAR detector (stage 1 of ACFB, as configs/ava_acar.flags).
MODEL_FLAGS = dict(TINY_DETECTOR, head="acar", acar_dim=8)
SHARDS = ["acfb-00000-of-00003.npz", "acfb-00001-of-00003.npz", "acfb-00002-of-00003.npz"]


def run(*args):
    return subprocess.run(
        [sys.executable, TOOL, *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=ENV,
        cwd=REPO,
    )


def assert_same_bank(got, want, atol=0.0):
    np.testing.assert_array_equal(got.video_index, want.video_index)
    np.testing.assert_array_equal(got.timestamp, want.timestamp)
    np.testing.assert_array_equal(got.mask, want.mask)
    assert got.video_id == want.video_id
    np.testing.assert_allclose(got.maps.astype(np.float32), want.maps.astype(np.float32), atol=atol)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny data (3 training videos), a random-weight ACAR detector checkpointed with its
    config.json, today's one-pass bank of it (in process) and the tool's one-process bank (3
    shards)."""
    import model_flags

    from action_tx import config as C
    from action_tx import eval_lib
    from action_tx.acfb import extract_bank
    from action_tx.checkpointing import checkpointable
    from action_tx.data import tfrecords
    from action_tx.tasks import make_task

    root = tmp_path_factory.mktemp("bank")
    data = make_tiny_data(root, videos=4)  # 3 training videos
    keras.utils.set_random_seed(0)
    config = model_flags.legacy_config(
        dict(MODEL_FLAGS, label_map=data["label_map"], train_tfrecords=data["train"])
    )
    task = make_task(config)
    model = task.build_model()
    dataset = task.eval_dataset(4, "train", tfrecords.match_files(data["train"]))
    eval_lib.build_detector_on(model, dataset)
    model_dir = root / "acar"
    checkpoint = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=checkpointable(model)), str(model_dir), 1
    ).save(checkpoint_number=1)
    C.save(config, str(model_dir))
    legacy = root / "legacy"
    extract_bank(model, dataset, str(legacy), progress=False, shard_size=256)
    args = [
        f"--checkpoint_dir={model_dir}",
        "--split=train",
        f"--tfrecords={data['train']}",
        "--bank=acfb",
        "--shard_size=4",  # smaller than a video: one video a shard
        "--noprogress",
    ]
    one = root / "one"
    proc = run(*args, f"--out={one}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(
        args=args, one=one, legacy=legacy, root=root, data=data, task=task, checkpoint=checkpoint
    )


def extract(setup, out, worker_index, logs):
    """Worker `worker_index` of 2 in process, with the tool's settings of the setup."""
    from action_tx.data import tfrecords
    from action_tx.feature_extraction import extract_split_bank

    files = tfrecords.match_files(setup["data"]["train"])
    opts = dict(split="train", batch_size=4, files=files, shard_size=4, num_workers=2)
    extract_split_bank(
        setup["task"],
        setup["checkpoint"],
        str(out),
        worker_index=worker_index,
        log=logs.append,
        progress=False,
        **opts,
    )


def test_one_process_bank_is_todays_one_pass_bank(setup):
    from action_tx.acfb import load_bank

    one = setup["one"]
    summary = json.loads((one / "acfb.json").read_text())
    manifest = json.loads((one / "manifest.json").read_text())
    assert summary["shards"] == SHARDS and sorted(p.name for p in one.glob("*.npz")) == SHARDS
    assert [s["videos"] for s in manifest["shards"]] == [1, 1, 1]
    assert all(s["done"] for s in manifest["shards"]) and not list(one.glob("*.tmp"))
    # Today's folder (acfb-00000.npz, no manifest.json) loads as before; the same values.
    legacy = json.loads((setup["legacy"] / "acfb.json").read_text())
    assert legacy["shards"] == ["acfb-00000.npz"]
    assert {k: v for k, v in summary.items() if k != "shards"} == {
        k: v for k, v in legacy.items() if k != "shards"
    }
    got, want = load_bank(str(one)), load_bank(str(setup["legacy"]))
    assert_same_bank(got, want)
    assert summary["keyframes"] == manifest["keyframes"] == len(got.video_id) > 12
    assert got.mask.any(1).all()  # every keyframe archived some actor


def test_two_workers_write_the_one_process_bank(setup, tmp_path):
    """Workers 0 and 1 of 2 (in process, one after the other; the parallel run's manifest lock
    is the features' one, tests/tools/test_extract_features.py): the tool's one-process bank."""
    from action_tx.acfb import load_bank

    out, logs = tmp_path / "par", []
    extract(setup, out, 1, logs)
    assert logs[-1] == f"worker 1 done; 2 of 3 shards still to write: {out}"
    assert not (out / "acfb.json").exists() and sorted(p.name for p in out.iterdir()) == [
        SHARDS[1],
        "manifest.json",
        "manifest.json.lock",
    ]
    extract(setup, out, 0, logs)
    assert json.loads((out / "acfb.json").read_text())["shards"] == SHARDS
    # Worker 0 wrote shards 0 and 2 in one batched pass, worker 1 shard 1: the same values.
    assert_same_bank(load_bank(str(out)), load_bank(str(setup["one"])), atol=1e-3)


def test_a_run_killed_halfway_redoes_only_the_missing_shard(setup, tmp_path):
    from action_tx.acfb import load_bank

    out = tmp_path / "killed"
    shutil.copytree(setup["one"], out)
    # Killed while writing shard 1 (worker 1 of 2): its partial NAME.tmp, no NAME, not marked
    # done; no acfb.json, which the last shard's worker writes.
    (out / "acfb.json").unlink()
    partial = (out / SHARDS[1]).read_bytes()
    (out / SHARDS[1]).unlink()
    (out / (SHARDS[1] + ".tmp")).write_bytes(partial[: len(partial) // 2])
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["shards"][1]["done"] = False
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"unfinished \(2 of 3 shards done\).*--bank=acfb"):
        load_bank(str(out))
    stamps = {name: (out / name).stat().st_mtime_ns for name in (SHARDS[0], SHARDS[2])}
    logs = []
    extract(setup, out, 0, logs)  # worker 0's shards are done: nothing to write
    assert logs[0] == f"all 2 shards of worker 0 already in {out}" and len(logs) == 2
    assert "1 of 3 shards still to write" in logs[1]
    extract(setup, out, 1, logs)  # the killed worker, re-run: shard 1 alone
    assert {name: (out / name).stat().st_mtime_ns for name in stamps} == stamps
    assert not list(out.glob("*.tmp")) and (out / "acfb.json").exists()
    assert_same_bank(load_bank(str(out)), load_bank(str(setup["one"])), atol=1e-3)


def test_bad_worker_index_and_todays_bank_as_output_are_one_error_line(setup):
    proc = run(*setup["args"], f"--out={setup['root']}/x", "--num_workers=2", "--worker_index=2")
    assert_clean_error(proc, "--worker_index=2 must be in [0, --num_workers=2)")
    proc = run(*setup["args"], f"--out={setup['legacy']}")
    assert_clean_error(proc, "one-process extraction", "delete the folder")


def _feature_folder(folder, counts, k, c=6, m=3):
    """A feature folder (`features.write_feature_dir`) of len(counts) videos with counts[v]
    keyframes each, k classes, written in shuffled order in shards of 4 that cut across videos."""
    from action_tx.data import features

    rng = np.random.default_rng(0)
    keyframes, index = [], 0
    for v, count in enumerate(counts):
        for t in range(count):
            n = 1 + (index % 3)
            keyframes.append(
                dict(
                    video_id=f"vid{v}",
                    video_index=v,
                    timestamp=900 + t,
                    keyframe_index=index,
                    context=rng.normal(size=[m, m, c]),
                    scene=rng.normal(size=[c]),
                    gt=dict(
                        boxes=np.tile([[0.1, 0.1, 0.6, 0.5]], [n, 1]),
                        labels=np.eye(k)[np.arange(n) % k],
                        person_ids=np.arange(n),
                        features=rng.normal(size=[n, c]),
                    ),
                    det=dict(
                        boxes=np.tile([[0.2, 0.1, 0.7, 0.5]], [n, 1]),
                        scores=np.linspace(0.9, 0.5, n),
                        features=rng.normal(size=[n, c]),
                        labels=np.eye(k)[np.arange(n) % k],
                    ),
                    obj=dict(
                        boxes=np.zeros([0, 4]),
                        classes=np.zeros([0]),
                        scores=np.zeros([0]),
                        features=np.zeros([0, c]),
                    ),
                )
            )
            index += 1
    order = rng.permutation(len(keyframes))
    features.write_feature_dir(
        str(folder), [keyframes[i] for i in order], num_classes=k, shard_size=4
    )


def test_feature_mode_bank_sharded_by_video_in_two_workers(setup, tmp_path):
    """On stored features: the plan follows the videos (not the feature folder's shards), a
    half-done bank is refused, and two workers' bank equals the one-pass bank exactly."""
    import model_flags

    from action_tx import eval_lib
    from action_tx.acfb import extract_bank, load_bank
    from action_tx.checkpointing import checkpointable
    from action_tx.data import ava
    from action_tx.feature_extraction import extract_split_bank
    from action_tx.tasks import make_task

    folder = tmp_path / "features"
    classes = ava.read_label_map(setup["data"]["label_map"]).num_classes
    _feature_folder(folder, [3, 2, 4], classes)
    config = model_flags.legacy_config(
        dict(
            head="acar",
            acar_dim=4,
            input="features",
            feature_dir=str(folder),
            label_map=setup["data"]["label_map"],
        )
    )
    task = make_task(config)
    keras.utils.set_random_seed(0)
    model = task.build_model()
    dataset = task.eval_dataset(2, "train")
    eval_lib.build_detector_on(model, dataset)
    path = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=checkpointable(model)), str(tmp_path / "ckpt"), 1
    ).save(checkpoint_number=1)
    extract_bank(model, dataset, str(tmp_path / "one_pass"), progress=False)
    out, logs = str(tmp_path / "bank"), []
    opts = dict(split="train", batch_size=2, shard_size=3, num_workers=2, progress=False)
    extract_split_bank(task, path, out, worker_index=0, log=logs.append, **opts)
    plan = json.loads((tmp_path / "bank" / "manifest.json").read_text())["shards"]
    # Videos of 3, 2, 4 keyframes, shards of >= 3: [video 0], [videos 1, 2].
    assert [(s["start"], s["records"], s["videos"], s["done"]) for s in plan] == [
        (0, 3, 1, True),
        (3, 6, 2, False),
    ]
    assert "1 of 2 shards still to write" in logs[-1]
    with pytest.raises(ValueError, match=r"unfinished \(1 of 2 shards done\)"):
        load_bank(out)
    extract_split_bank(task, path, out, worker_index=1, log=logs.append, **opts)
    assert logs[-1].endswith(f"9 keyframes in 2 bank shards: {out}")
    assert_same_bank(load_bank(out), load_bank(str(tmp_path / "one_pass")))
    extract_split_bank(task, path, out, worker_index=0, log=logs.append, **opts)  # a re-run
    assert logs[-2] == f"all 1 shards of worker 0 already in {out}"
