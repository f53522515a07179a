"""Shared fixtures. Real files in ../shared/data exist on our machines and in CI, never in a
user's clone: tests that read them use `shared_data` and skip with a clear reason without them."""

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
SHARED_DATA = pathlib.Path(os.environ.get("ACTION_TX_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN CPU kernels (~100x faster 3D-conv gradients here); read when TensorFlow starts.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """Path of ../shared/data; skips the test when the folder is absent (a user's clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real test files not present: {SHARED_DATA} is absent (they exist only on "
            "the project's machines and in CI)"
        )
    return SHARED_DATA
