"""Fixtures shared by the tests of tools/."""

import importlib.util
import pathlib
import sys

import pytest

TOOLS = pathlib.Path(__file__).resolve().parents[2] / "tools"


@pytest.fixture
def model_flags():
    """tools/model_flags.py, loaded once per process (absl refuses to define a flag twice);
    the parsed flags are reset after each test."""
    module = sys.modules.get("model_flags")
    if module is None:
        spec = importlib.util.spec_from_file_location("model_flags", TOOLS / "model_flags.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["model_flags"] = module
        spec.loader.exec_module(module)
    yield module
    module.FLAGS.unparse_flags()
