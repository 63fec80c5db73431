"""The one temp-then-rename: a write replaces the file whole, a failed one leaves it and no temporary."""

from __future__ import annotations

import json

import pytest

from fipo_cli.core.files import atomic_write_json, atomic_write_text


def test_atomic_writes_replace_the_file(tmp_path):
    target = tmp_path / "command.txt"
    atomic_write_text(target, "first\n")
    atomic_write_text(target, "second ✓\n")
    assert target.read_text(encoding="utf-8") == "second ✓\n"

    atomic_write_json(tmp_path / "config.json", {"lr": 1e-6, "steps": [1, 2]})
    assert json.loads((tmp_path / "config.json").read_text()) == {"lr": 1e-6, "steps": [1, 2]}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["command.txt", "config.json"]


def test_a_failed_write_leaves_the_target_intact_and_no_temporary_file(tmp_path):
    target = tmp_path / "status.json"
    atomic_write_json(target, {"state": "running"})
    # json writes the first keys, then fails on the object it cannot encode.
    half_encodable = {"state": "succeeded", "padding": "x" * 100_000, "bad": object()}
    with pytest.raises(TypeError):
        atomic_write_json(target, half_encodable)
    assert json.loads(target.read_text()) == {"state": "running"}
    assert [path.name for path in tmp_path.iterdir()] == ["status.json"]
