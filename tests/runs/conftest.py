"""What the runs tests share: run directories written as fipo writes them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from fipo_cli.runs.status import RunStatus, write_status


@pytest.fixture
def make_run() -> Callable[..., Path]:
    """``make_run(root, experiment, name, steps=N, sweep=S, **status)``: a run with a status record and N steps of metrics."""
    return _make_run


def _make_run(root: Path, experiment: str, name: str, *, steps: int = 0, sweep: str | None = None, **status) -> Path:
    run_dir = root / experiment / "runs" / name
    run_dir.mkdir(parents=True)
    write_status(run_dir, RunStatus(**{"state": "succeeded", "launcher": "slurm", "sweep": sweep, **status}))
    with open(run_dir / "metrics.jsonl", "w") as metrics:
        for step in range(1, steps + 1):
            metrics.write(json.dumps({"step": step, "data": {"response_length/mean": 10.0 * step}}) + "\n")
    return run_dir
