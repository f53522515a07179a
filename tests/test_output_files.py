"""output_files.write_texts: every file appears at once, or none changes."""

import os

import pytest

from action_tx import output_files


def test_write_texts_renames_all_once_all_are_written(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.md"
    a.write_text("old a")
    output_files.write_texts({str(a): "new a", str(b): "new b"})
    assert (a.read_text(), b.read_text()) == ("new a", "new b")
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.md"]  # no temporary file left


def test_write_texts_changes_nothing_when_a_write_fails(tmp_path):
    a = tmp_path / "a.json"
    a.write_text("old a")
    with pytest.raises(TypeError):
        output_files.write_texts({str(a): "new a", str(tmp_path / "b.md"): None})
    assert a.read_text() == "old a"
    assert os.listdir(tmp_path) == ["a.json"]  # b never appeared, temporaries removed
