"""Fixtures shared by the tests of tools/ (tools/ is on sys.path: pyproject's pytest
`pythonpath`, as for `python tools/X.py`)."""

import pytest


@pytest.fixture
def model_flags():
    """tools/model_flags.py with the trainer's flags defined too (flagfiles set both); absl
    defines a flag once per process, so the modules load once. The parsed flags are reset
    after each test."""
    import model_flags
    import train  # noqa: F401  (the trainer's flags)

    model_flags.FLAGS.unparse_flags()
    yield model_flags
    model_flags.FLAGS.unparse_flags()
