"""`fipo eval --run`: a run's checkpoints evaluated step by step into RUN/eval/BENCH/step_N and a curve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import wandb_records
from checkpointed import actor_dir
from fipo_run import run_fipo


@pytest.fixture
def project(checkpointed_run: Path) -> Path:
    """The project of the session's checkpointed run (tests/checkpointed.py)."""
    return checkpointed_run.parent.parent.parent.parent


@pytest.fixture
def run_dir(checkpointed_run: Path) -> Path:
    return checkpointed_run


def test_fipo_eval_run_all_steps_writes_results_and_a_curve(project, run_dir):
    reference = f"{run_dir.parent.parent.name}/{run_dir.name}"
    pytest.importorskip("wandb")
    wandb_env = {name: str(project / "wandb-home") for name in ("WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR")}
    result = run_fipo(project, "eval", "aime24", "--run", reference, "--step", "all", "--engine", "transformers",
                      "--samples", "2", "--limit", "2", "--max-tokens", "8", "--json", WANDB_MODE="offline", **wandb_env)
    assert result.returncode == 0, result.stderr[-3000:]
    # The run finished, so each step's results went into the training run's W&B history.
    training_id = json.loads((run_dir / "status.json").read_text())["wandb_run_id"]
    assert result.stderr.count(f"W&B: run {training_id}") == 2
    logged = [row["eval/step"] for path in wandb_records.run_files(run_dir / "wandb")
              for row in wandb_records.history(path) if "eval/step" in row]
    assert sorted(logged) == [2, 4]
    for step in (2, 4):
        results = json.loads((run_dir / "eval" / "aime24" / f"step_{step}" / "results.json").read_text())
        assert results["settings"]["model"] == str(actor_dir(run_dir, step) / "huggingface_merged")
        assert results["graders"]["dapo"]["problems"] == 2
    curve = json.loads((run_dir / "eval" / "aime24" / "curve.json").read_text())
    assert [point["step"] for point in curve["points"]] == [2, 4]
    assert "merging the checkpoint" in result.stderr
