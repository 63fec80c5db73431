"""A real run's files, kept for the tests of what fipo shows of a run.

``tiny_fipo_metrics.jsonl`` is the metrics.jsonl verl's file logger wrote in a real 20-step run of the
tiny FIPO recipe (``fipo init tiny --model tiny && fipo train tiny``: verl 0.9.1 on CPU, vLLM's CPU
build, checkpoints at steps 10 and 20), unedited.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from fipo_cli.experiment import config, recipes
from fipo_cli.runs.status import RunStatus, write_status

METRICS = Path(__file__).parent / "tiny_fipo_metrics.jsonl"
STEPS = 20


def run_dir(project: Path, name: str = "20261201-222345", **status) -> Path:
    """``project/experiments/tiny/runs/NAME`` as the real run left it: its config, metrics file and record."""
    run = project / "experiments" / "tiny" / "runs" / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(config.load(recipes.recipe_path("tiny")).to_yaml())
    shutil.copy(METRICS, run / "metrics.jsonl")
    write_status(run, RunStatus(**{"state": "succeeded", "launcher": "local", "exit_code": 0,
                                   "started_at": "2026-12-01T22:23:46+00:00", "finished_at": "2026-12-01T22:35:35+00:00",
                                   **status}))
    return run


def records() -> list[dict]:
    return [json.loads(line) for line in METRICS.read_text().splitlines()]
