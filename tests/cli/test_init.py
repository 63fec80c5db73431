"""`fipo init` as a user runs it: a commented recipe, next steps, refusals that write nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fipo_run import run_fipo
from stand_in import stand_in_project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """experiments/smoke from the one-GPU recipe, training with the stand-in (:mod:`stand_in`)."""
    return stand_in_project(tmp_path)


def test_init_writes_the_commented_recipe_and_refuses_to_overwrite(tmp_path):
    result = run_fipo(tmp_path, "init", "exp-1", "--model", "qwen2.5-32b", "--algo", "dapo")
    assert result.returncode == 0, result.stderr
    written = tmp_path / "experiments" / "exp-1" / "fipo.yaml"
    assert "fipo train exp-1" in result.stdout
    text = written.read_text()
    assert "# T2: mini-batch 32 prompts" in text
    assert yaml.safe_load(text)["name"] == "exp-1"
    before = (written.read_bytes(), written.stat().st_mtime_ns)

    again = run_fipo(tmp_path, "init", "exp-1", "--model", "qwen2.5-32b")
    assert again.returncode == 2 and "already exists" in again.stderr and "--force" in again.stderr
    assert (written.read_bytes(), written.stat().st_mtime_ns) == before

    assert run_fipo(tmp_path, "init", "exp-1", "--model", "qwen2.5-32b", "--force").returncode == 0
    assert "# T2: mini-batch 64 prompts" in written.read_text()


def test_init_lines_up_its_next_steps_for_any_name(tmp_path):
    result = run_fipo(tmp_path, "init", "a-rather-long-experiment-name", "--model", "qwen2.5-0.5b")
    steps = result.stdout.split("next:\n", 1)[1].splitlines()
    assert len(steps) == 4 and len({line.index("  # ") for line in steps}) == 1, result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["init", "../escape", "--model", "qwen2.5-32b"], "not safe as a directory and job name"),
        (["init", "ok", "--model", "llama-70b"], "--model 'llama-70b' has no recipe"),
        (["init", "ok", "--model", "qwen2.5-32b", "--algo", "ppo"], "--algo 'ppo' is not known"),
    ],
)
def test_init_refuses_bad_input_and_writes_nothing(tmp_path, args, message):
    result = run_fipo(tmp_path, *args)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "experiments").exists()


def test_missing_experiment_is_a_usage_error(project):
    result = run_fipo(project, "train", "nope")
    assert result.returncode == 2 and "no experiment 'nope'" in result.stderr and "smoke" in result.stderr
