"""tools/create_ava_tfrecords.py --beam: the Beam pipeline (DirectRunner) writes the same
shards and manifest, byte for byte, as the single-process converter."""

import hashlib
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from action_tx.data import convert, synthetic

REPO = pathlib.Path(__file__).resolve().parents[2]
ENV = dict(
    os.environ,
    PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    ),
)


def digests(folder):
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(pathlib.Path(folder).iterdir())
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny synthetic preset (3 videos of 8 s); the last frames of syn0001 (train) removed,
    so that it is a bad video (its last keyframes need them)."""
    root = tmp_path_factory.mktemp("beam") / "syn"
    synthetic.generate(str(root), preset="tiny", seed=0, check=False, videos=3, seconds=8)
    frames = sorted((root / "frames" / "syn0001").iterdir())
    for path in frames[len(frames) // 2 :]:
        path.unlink()
    return root


@pytest.mark.parametrize("keyframes_per_record", [1, 3])
def test_beam_output_is_byte_identical(tiny, tmp_path, keyframes_per_record):
    pytest.importorskip(
        "apache_beam",
        reason="apache-beam is not installed (pip install -e '.[beam]'; `make test` installs it)",
    )
    out = tmp_path / "rec"
    spec = str(out / "train.tfrecord@3")
    single = convert.convert_split(
        str(tiny),
        "train",
        spec,
        num_frames=4,
        keyframes_per_record=keyframes_per_record,
        skip_bad=True,
        num_workers=1,
        progress=False,
    )
    shards = single["shards"]
    # layout 2 (K = 3): fewer records than keyframes in some shard
    assert (sum(s["records"] for s in shards) < single["keyframes"]["written"]) == (
        keyframes_per_record > 1
    )
    assert sum(s["keyframes"] for s in shards) == single["keyframes"]["written"]
    assert sum(map(len, single["files_rejected"].values())) == 1
    assert 0 < single["keyframes"]["written"] < single["keyframes"]["total"]
    expected = digests(out)
    assert sorted(expected) == [
        "train.tfrecord-00000-of-00003",
        "train.tfrecord-00001-of-00003",
        "train.tfrecord-00002-of-00003",
        "train_manifest.json",
    ]
    shutil.rmtree(out)

    # In-process DirectRunner keeps the test short; the default (one process per core) wrote
    # the same bytes when tried (`--direct_num_workers=2`, 65 s here: every worker loads TF).
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "create_ava_tfrecords.py"),
            "--beam",
            f"--ava_dir={tiny}",
            "--split=train",
            f"--out={spec}",
            "--num_frames=4",
            f"--keyframes_per_record={keyframes_per_record}",
            "--skip_bad",
            "--noprogress",
            "--direct_num_workers=1",
            "--direct_running_mode=in_memory",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=ENV,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"wrote {single['keyframes']['written']} of" in run.stdout
    assert digests(out) == expected  # no leftovers (.beam-* summaries, temporaries) either


def test_beam_fails_like_the_converter_on_a_bad_video(tiny, tmp_path):
    pytest.importorskip(
        "apache_beam",
        reason="apache-beam is not installed (pip install -e '.[beam]'; `make test` installs it)",
    )
    from action_tx.data import beam_convert

    spec = str(tmp_path / "rec" / "train.tfrecord@2")
    with pytest.raises(convert.ConversionError) as single:
        convert.convert_split(str(tiny), "train", spec, num_frames=4, num_workers=1, progress=False)
    with pytest.raises(convert.ConversionError) as beam:
        beam_convert.convert_split_beam(
            str(tiny),
            "train",
            spec,
            num_frames=4,
            pipeline_args=["--direct_num_workers=1", "--direct_running_mode=in_memory"],
        )
    assert str(beam.value) == str(single.value)
    assert not (tmp_path / "rec").exists() or not list((tmp_path / "rec").iterdir())
