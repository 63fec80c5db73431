"""A run's metrics files and their merge rule: the last step from the end, earlier attempts kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fipo_cli.runs.metrics import keep_earlier_metrics, last_step
from fipo_cli.runs.status import RunStatus, write_status


def make_run(root: Path, experiment: str, name: str, *, steps: int = 0, sweep: str | None = None, **status) -> Path:
    run_dir = root / experiment / "runs" / name
    run_dir.mkdir(parents=True)
    write_status(run_dir, RunStatus(**{"state": "succeeded", "launcher": "slurm", "sweep": sweep, **status}))
    with open(run_dir / "metrics.jsonl", "w") as metrics:
        for step in range(1, steps + 1):
            metrics.write(json.dumps({"step": step, "data": {"response_length/mean": 10.0 * step}}) + "\n")
    return run_dir


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "experiments"
    make_run(root, "a", "r1", steps=3, job_id="11", started_at="2026-11-22T01:00:00+00:00",
             finished_at="2026-11-22T02:30:05+00:00", wandb_url="https://wandb.ai/me/fipo/runs/a-r1")
    make_run(root, "a", "s-000", sweep="s", state="failed", exit_code=3, job_id="12_0", array_index=0)
    make_run(root, "b", "r1", state="cancelled")
    (root / "a" / "sweeps" / "s").mkdir(parents=True)
    (root / "a" / "sweeps" / "s" / "sweep.json").write_text(json.dumps({"runs": ["s-000", "s-001"]}))
    return root


def test_the_last_step_comes_from_the_end_of_the_metrics_file(tmp_path):
    run_dir = make_run(tmp_path, "e", "r", steps=500)
    with open(run_dir / "metrics.jsonl", "a") as metrics:
        metrics.write('{"step": 501, "data": {"x": ')  # the trainer is writing this line
    assert last_step(run_dir) == 500
    keep_earlier_metrics(run_dir)  # what a requeued run does before verl truncates the file
    assert not (run_dir / "metrics.jsonl").exists()
    assert last_step(run_dir) == 500
    (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 501, "data": {"x": 1.0}}) + "\n")
    assert last_step(run_dir) == 501


def test_a_requeued_runs_report_keeps_the_steps_before_the_requeue(tmp_path):
    from fipo_cli.report.data import read_metrics

    run_dir = make_run(tmp_path, "e", "r", steps=4)
    keep_earlier_metrics(run_dir)
    # verl resumes from the step-3 checkpoint and logs step 4 again, then 5.
    (run_dir / "metrics.jsonl").write_text("".join(
        json.dumps({"step": step, "data": {"response_length/mean": 1000.0 + step}}) + "\n" for step in (4, 5)))
    series = read_metrics(run_dir / "metrics.jsonl")["response_length/mean"]
    assert series == {1: 10.0, 2: 20.0, 3: 30.0, 4: 1004.0, 5: 1005.0}
