"""What `fipo report` reads: the runs named on its command line, their metrics and eval results.

A reference is an experiment (all of its runs) or one run, ``EXP/RUN``. Of a run directory
``experiments/EXP/runs/RUN/`` it reads::

    config.yaml                         the resolved config: the legend's parameters
    metrics.jsonl                       verl's file logger: {"step": N, "data": {...}} per line
    eval/BENCH/step_N/results.json      `fipo eval BENCH --run EXP/RUN` at checkpoint N

Metrics are kept as ``{name: {step: value}}``; a step logged twice (a resumed run repeats
the steps after its last checkpoint) keeps its last value.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fipo_cli.core.errors import FipoError, UsageError
from fipo_cli.core.files import read_utf8
from fipo_cli.experiment import config
from fipo_cli.experiment.config import Experiment
from fipo_cli.loss import knobs
from fipo_cli.runs import experiments
from fipo_cli.runs.layout import (
    EXPERIMENTS_DIR,
    METRICS_FILE,
    RUN_CONFIG_FILE,
    checkpoint_results,
    step_of,
)
from fipo_cli.runs.metrics import Metrics, read_metrics

_STEPS = re.compile(r"^\s*(\d*)\s*:\s*(\d*)\s*$")


@dataclass(frozen=True)
class StepRange:
    """Training steps ``first`` to ``last``, both included; None is open."""

    first: int | None = None
    last: int | None = None

    def __contains__(self, step: int) -> bool:
        return (self.first is None or step >= self.first) and (self.last is None or step <= self.last)

    def __str__(self) -> str:
        return f"{'' if self.first is None else self.first}:{'' if self.last is None else self.last}"


def parse_steps(text: str | None) -> StepRange:
    """``--steps A:B`` (either end may be left out) as a :class:`StepRange`; None means every step."""
    if text is None:
        return StepRange()
    match = _STEPS.match(text)
    if not match or not any(match.groups()):
        raise UsageError(
            f"--steps {text!r}: expected A:B with whole numbers, either end may be left out",
            hint="for example --steps 10:200, --steps 50: or --steps :100",
        )
    first, last = (int(value) if value else None for value in match.groups())
    if first is not None and last is not None and first > last:
        raise UsageError(f"--steps {text!r}: the first step {first} is after the last {last}")
    return StepRange(first, last)


@dataclass(frozen=True)
class EvalPoint:
    """One checkpoint's evaluation: avg@n and cons@n (fractions) with the headline grader."""

    step: int
    n: int
    avg: float
    cons: float
    mean_length: float | None
    """Mean response length of the evaluation's samples, in tokens; None when unknown."""


@dataclass
class RunData:
    """One run as the report sees it."""

    experiment: str
    name: str
    directory: Path
    config: Experiment | None
    metrics: Metrics = field(default_factory=dict)
    evals: dict[str, list[EvalPoint]] = field(default_factory=dict)
    """Benchmark → its evaluated checkpoints, by step."""
    non_finite: dict[str, list[int]] = field(default_factory=dict)
    """Metric → the steps whose logged value was NaN or ±infinity (left out of ``metrics``)."""

    @property
    def steps_logged(self) -> set[int]:
        """Every training step with a metric or an evaluation."""
        return {step for values in self.metrics.values() for step in values} | {
            point.step for points in self.evals.values() for point in points}

    @property
    def ref(self) -> str:
        return f"{self.experiment}/{self.name}"

    @property
    def parameters(self) -> str:
        """The key parameters for a legend: ``fipo γ=0.979 ε_f,high=0.2``, or ``dapo``."""
        if self.config is None:
            return ""
        algorithm = self.config.algorithm
        if algorithm.name != "fipo":
            return algorithm.name
        settings = knobs.resolve(algorithm.fipo_knobs())  # either spelling of the bounds (clip_high or clip_ratio)
        return f"fipo γ={settings.gamma:.4g} ε_f,high={settings.clip_high - 1:.4g}"

    @property
    def label(self) -> str:
        return f"{self.ref} · {self.parameters}" if self.parameters else self.ref

    def series(self, key: str, steps: StepRange) -> tuple[list[int], list[float]]:
        """The steps and values of metric ``key`` within ``steps``, by step."""
        points = sorted((step, value) for step, value in self.metrics.get(key, {}).items() if step in steps)
        return [step for step, _ in points], [value for _, value in points]


def resolve(references: list[str], root: Path = EXPERIMENTS_DIR) -> list[tuple[Path, bool]]:
    """The run directories the references name, each with whether it was named by itself (``EXP/RUN``).

    An experiment stands for every run in its ``runs/``. UsageError for an unknown
    experiment or run, or an experiment without runs.
    """
    found: dict[Path, bool] = {}
    for reference in references:
        for run_dir, named in _resolve_one(reference, root):
            found[run_dir] = found.get(run_dir, False) or named
    return list(found.items())


def _resolve_one(reference: str, root: Path) -> list[tuple[Path, bool]]:
    try:
        runs_dir = experiments.find_runs_dir(reference, root)
    except UsageError as not_an_experiment:
        if "/" not in reference.rstrip("/"):
            raise UsageError(
                f"{reference!r} is neither an experiment nor a run (EXP/RUN): {not_an_experiment.message}",
                hint=not_an_experiment.hint,
            ) from None
        return [(experiments.find_run(reference, root), True)]
    runs = experiments.run_names(runs_dir)
    if not runs:
        raise UsageError(f"experiment {reference!r} has no runs ({runs_dir} is empty)",
                         hint=f"train one with `fipo train {reference}`")
    return [(runs_dir / name, False) for name in runs]


def load_run(run_dir: Path, *, from_wandb: bool = False) -> RunData:
    """A run with its config, its metrics (``metrics.jsonl``, or its W&B history) and its eval results."""
    experiment = config.load(run_dir / RUN_CONFIG_FILE) if (run_dir / RUN_CONFIG_FILE).is_file() else None
    non_finite: dict[str, list[int]] = {}
    if from_wandb:
        from fipo_cli.report.wandb_history import read_history

        metrics = read_history(run_dir, experiment)
    else:
        metrics = read_metrics(run_dir / METRICS_FILE, non_finite)
    return RunData(run_dir.parent.parent.name, run_dir.name, run_dir, experiment, metrics, read_evals(run_dir),
                   non_finite)


def read_evals(run_dir: Path) -> dict[str, list[EvalPoint]]:
    """The run's checkpoint evaluations (``eval/BENCH/step_N/results.json``) by benchmark, each by step."""
    evals: dict[str, list[EvalPoint]] = {}
    for results in checkpoint_results(run_dir):
        evals.setdefault(results.parent.parent.name, []).append(_eval_point(results, step_of(results.parent)))
    return {benchmark: sorted(points, key=lambda point: point.step) for benchmark, points in sorted(evals.items())}


def _eval_point(path: Path, step: int) -> EvalPoint:
    try:
        results: dict[str, Any] = json.loads(read_utf8(path))
        headline = results["graders"][results["primary_grader"]]
        n = headline["n"]
        mean_length = (results.get("lengths") or {}).get("mean")
        return EvalPoint(step, n, headline[f"avg@{n}"]["value"], headline[f"cons@{n}"]["value"], mean_length)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise FipoError(f"{path}: not a results file of `fipo eval` ({type(error).__name__}: {error})",
                        hint="re-run the evaluation of that checkpoint, or move the file away") from error
