"""Two real runs of the length lab, kept for the tests of what fipo shows of a FIPO/DAPO comparison.

``lab_fipo_metrics.jsonl`` and ``lab_dapo_metrics.jsonl`` are the metrics.jsonl verl's file logger
wrote in real 30-step runs of the lab recipes (``fipo init lab-ALGO --model tiny-reasoner --algo
ALGO && fipo train lab-ALGO trainer.seed=1``: verl 0.9.1 on CPU, vLLM's CPU build, validation before
step 1 and every 10 steps, the ``builtin:tiny-reasoner`` warm start), unedited: the first seed of
``benchmarks/bench_length_lab.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

from fipo_cli.experiment import config, recipes

METRICS = {algo: Path(__file__).parent / f"lab_{algo}_metrics.jsonl" for algo in ("fipo", "dapo")}
STEPS = 30


def run_dir(project: Path, algo: str, name: str = "20261202-013000") -> Path:
    """``project/experiments/lab-ALGO/runs/NAME`` as the real run left it: its config and metrics file."""
    run = project / "experiments" / f"lab-{algo}" / "runs" / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(config.load(recipes.recipe_path("tiny-reasoner", algo)).to_yaml())
    (run / "metrics.jsonl").write_bytes(METRICS[algo].read_bytes())
    return run


def records(algo: str) -> list[dict]:
    return [json.loads(line) for line in METRICS[algo].read_text().splitlines()]
