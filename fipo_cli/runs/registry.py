"""The run registry: every run's status record, found on disk (launchers refresh them: :mod:`fipo_cli.launch`).

The registry is the run directories themselves: one ``status.json`` per run, replaced
atomically (temp file + rename) by whoever writes it, fipo on the login node or the task
inside a job. That works on the network filesystems clusters share, where SQLite's locking
does not, and a crash mid-write leaves the old record, never half of one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from fipo_cli.core.clock import parse_utc, utc_now
from fipo_cli.core.errors import FipoError, UsageError
from fipo_cli.runs import experiments
from fipo_cli.runs.layout import (
    EXPERIMENTS_DIR,
    RUNS_DIR,
    STATUS_FILE,
    SWEEP_MANIFEST,
    sweep_dir,
)
from fipo_cli.runs.metrics import last_step
from fipo_cli.runs.status import FINAL_STATES, RunStatus, read_status, write_status


@dataclass
class RunEntry:
    """One run as the registry sees it; ``status`` is None when its record cannot be read."""

    experiment: str
    run_dir: Path
    status: RunStatus | None
    problem: str | None = None
    unknown: str | None = None
    """Why the recorded state cannot be checked from here (a local run on another host): it shows as ``unknown``."""

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def reference(self) -> str:
        return f"{self.experiment}/{self.name}"

    @property
    def state(self) -> str:
        if self.status is None:
            return "unreadable"
        return "unknown" if self.unknown else self.status.state


def run_entry(run_dir: Path) -> RunEntry:
    """The registry's view of one run directory."""
    try:
        return RunEntry(run_dir.parent.parent.name, run_dir, read_status(run_dir))
    except FipoError as error:
        return RunEntry(run_dir.parent.parent.name, run_dir, None, error.message)


def _run_dirs(experiment_dir: Path) -> list[Path]:
    runs = experiment_dir / RUNS_DIR
    return sorted(path.parent for path in runs.glob(f"*/{STATUS_FILE}")) if runs.is_dir() else []


def find_runs(target: str | None = None, root: Path = EXPERIMENTS_DIR) -> list[RunEntry]:
    """The runs ``target`` names: all (None), an experiment, ``EXP/RUN``, a sweep or ``EXP/SWEEP``."""
    root = Path(root)
    experiments = sorted(path for path in root.iterdir() if path.is_dir()) if root.is_dir() else []
    if target is None:
        return [run_entry(run_dir) for experiment in experiments for run_dir in _run_dirs(experiment)]
    head, _, tail = target.partition("/")
    if tail:
        if (root / head / RUNS_DIR / tail / STATUS_FILE).is_file():
            return [run_entry(root / head / RUNS_DIR / tail)]
        if sweep_dir(root, head, tail).is_dir():
            return _sweep_runs(root / head, tail)
    elif (root / head).is_dir() and (root / head / RUNS_DIR).is_dir():
        return [run_entry(run_dir) for run_dir in _run_dirs(root / head)]
    else:
        matches = [experiment for experiment in experiments if sweep_dir(root, experiment.name, head).is_dir()]
        if len(matches) == 1:
            return _sweep_runs(matches[0], head)
        if len(matches) > 1:
            names = ", ".join(f"{m.name}/{head}" for m in matches)
            raise UsageError(f"sweep {head!r} exists in several experiments", hint=f"name one: {names}")
        if (root / head).is_dir():
            return []  # an experiment without runs yet
    known = [p.name for p in experiments]
    raise UsageError(
        f"{target!r} is not an experiment, run (EXP/RUN) or sweep under {root}",
        hint=f"experiments: {', '.join(known)}" if known else "no experiments yet: fipo init NAME --model MODEL",
    )


def _sweep_runs(experiment_dir: Path, sweep: str) -> list[RunEntry]:
    manifest = sweep_dir(experiment_dir.parent, experiment_dir.name, sweep) / SWEEP_MANIFEST
    try:
        names = json.loads(manifest.read_text())["runs"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise FipoError(f"cannot read the sweep manifest {manifest}: {error}") from error
    runs = experiment_dir / RUNS_DIR
    return [run_entry(runs / name) for name in names if (runs / name / STATUS_FILE).is_file()]


def find_run(reference: str, root: Path = EXPERIMENTS_DIR) -> RunEntry:
    """One run: ``EXP/RUN``, or a run name that only one experiment has."""
    root = Path(root)
    if "/" in reference.rstrip("/"):
        return run_entry(experiments.find_run(reference, root))
    found = sorted(path.parent for path in root.glob(f"*/{RUNS_DIR}/{reference}/{STATUS_FILE}"))
    if len(found) == 1:
        return run_entry(found[0])
    if found:
        raise UsageError(f"run {reference!r} exists in several experiments",
                         hint="name it as EXP/RUN: " + ", ".join(f"{p.parent.parent.name}/{reference}" for p in found))
    raise UsageError(f"no run {reference!r} under {root}", hint="list runs with `fipo status`")


def elapsed_seconds(status: RunStatus, now: datetime | None = None) -> float | None:
    """Seconds from the run's start to its end, or to now while it runs."""
    started = parse_utc(status.started_at)
    if started is None:
        return None
    finished = parse_utc(status.finished_at) if status.state in FINAL_STATES else None
    return max(0.0, ((finished or now or datetime.now(timezone.utc)) - started).total_seconds())


def row(entry: RunEntry, now: datetime | None = None) -> dict:
    """One run for ``fipo status --json`` (and the table)."""
    status = entry.status
    return {
        "experiment": entry.experiment,
        "run": entry.name,
        "state": entry.state,
        "launcher": status.launcher if status else None,
        "job_id": status.job_id if status else None,
        "array_index": status.array_index if status else None,
        "sweep": status.sweep if status else None,
        "elapsed_s": elapsed_seconds(status, now) if status else None,
        "last_step": last_step(entry.run_dir),
        "wandb": status.wandb_url if status else None,
        "restarts": status.restarts if status else 0,
        "exit_code": status.exit_code if status else None,
        "reason": entry.unknown or (status.reason if status else None),
        "run_dir": str(entry.run_dir),
        "problem": entry.problem,
    }


def mark_cancelled(entry: RunEntry) -> None:
    status = read_status(entry.run_dir)
    status.state = "cancelled"
    status.finished_at = utc_now()
    write_status(entry.run_dir, status)
    entry.status = status
