"""Experiment directories: a run found by EXP/RUN, by path or as a recipe's."""

from __future__ import annotations

from pathlib import Path

import pytest

from fipo_cli.core.errors import UsageError
from fipo_cli.runs.experiments import find_run


@pytest.fixture
def project(checkpointed_run: Path) -> Path:
    """The project of the session's checkpointed run (tests/checkpointed.py)."""
    return checkpointed_run.parent.parent.parent.parent


@pytest.fixture
def run_dir(checkpointed_run: Path) -> Path:
    return checkpointed_run


def test_find_run_by_name_or_path_and_names_the_runs_when_missing(project, run_dir):
    root = project / "experiments"
    assert find_run(f"exp/{run_dir.name}", root=root) == run_dir
    assert find_run(f"{root / 'exp'}/{run_dir.name}/", root=root) == run_dir
    with pytest.raises(UsageError) as missing:
        find_run("exp/20990101-000000", root=root)
    assert "no run '20990101-000000'" in missing.value.message and run_dir.name in missing.value.hint
    with pytest.raises(UsageError, match="expected EXP/RUN"):
        find_run("exp", root=root)
    with pytest.raises(UsageError, match="no experiment 'nope'"):
        find_run("nope/1", root=root)


def test_find_run_of_a_recipe_experiment(tmp_path):
    # `fipo train --model M` keeps its runs in experiments/<recipe>/runs/ without a fipo.yaml.
    run = tmp_path / "qwen2.5-0.5b-fipo" / "runs" / "20261122-013000"
    run.mkdir(parents=True)
    assert find_run("qwen2.5-0.5b-fipo/20261122-013000", root=tmp_path) == run
