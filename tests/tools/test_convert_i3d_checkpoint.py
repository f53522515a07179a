import os
import pathlib
import subprocess
import sys

import numpy as np
import tensorflow as tf

from action_tx.trunks import i3d_checkpoint as ckpt
from action_tx.trunks.i3d import InceptionI3D

REPO = pathlib.Path(__file__).resolve().parents[2]


def _convert(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "convert_i3d_checkpoint.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )


def test_convert_kin600_checkpoint_then_restore_trunk(shared_data, tmp_path):
    # A checkpoint with the release's kin600 names and shapes, random values.
    variables = tf.train.list_variables(
        str(shared_data / "i3d_checkpoint_index" / "rgb_scratch_kin600.model.ckpt")
    )
    rng = np.random.default_rng(600)
    values = {n: rng.normal(size=s).astype("float32") for n, s in variables}
    source = ckpt.write_checkpoint(str(tmp_path / "kin600" / "model.ckpt"), values)

    wrong = _convert(f"--checkpoint={source}", "--num_classes=400", f"--output={tmp_path}/bad")
    assert wrong.returncode != 0
    assert "600 classes, expected num_classes=400" in wrong.stderr
    assert not (tmp_path / "bad").exists()

    done = _convert(f"--checkpoint={source}", "--num_classes=600", f"--output={tmp_path}/out")
    assert done.returncode == 0, done.stderr
    assert "loaded 230 variables" in done.stdout and "116 optimizer variables" in done.stdout
    prefix = str(tmp_path / "out" / "i3d_kinetics600")
    assert (tmp_path / "out" / "i3d_kinetics600.txt").read_text().startswith(f"source: {source}")

    trunk = InceptionI3D()  # our Mixed_4f trunk reads the converted weights
    assert len(ckpt.restore_trunk(trunk, prefix).loaded) == 45 * 4
    for key, var in trunk.release_variables().items():
        np.testing.assert_array_equal(var.numpy(), values[key].reshape(var.shape))
