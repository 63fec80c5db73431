"""The run registry: every run's status record, found on disk and refreshed from SLURM.

The registry is the run directories themselves: one ``status.json`` per run, replaced
atomically (temp file + rename) by whoever writes it, fipo on the login node or the task
inside a job. That works on the network filesystems clusters share, where SQLite's locking
does not, and a crash mid-write leaves the old record, never half of one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from fipo_cli.core.clock import utc_now
from fipo_cli.core.errors import FipoError, UsageError
from fipo_cli.runs import experiments
from fipo_cli.runs.layout import (
    EARLIER_METRICS_FILE,
    EXPERIMENTS_DIR,
    METRICS_FILE,
    RUNS_DIR,
    STATUS_FILE,
    SWEEP_MANIFEST,
    sweep_dir,
)
from fipo_cli.runs.status import FINAL_STATES, RunStatus, read_status, write_status

_TAIL_BYTES = 1 << 16  # verl's file logger writes a few KiB per step


@dataclass
class RunEntry:
    """One run as the registry sees it; ``status`` is None when its record cannot be read."""

    experiment: str
    run_dir: Path
    status: RunStatus | None
    problem: str | None = None

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def reference(self) -> str:
        return f"{self.experiment}/{self.name}"

    @property
    def state(self) -> str:
        return self.status.state if self.status else "unreadable"


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


def refresh(entries: Iterable[RunEntry]) -> list[RunEntry]:
    """Ask SLURM, or the Ray cluster, about the submitted runs that are not finished, and record what changed.

    Returns the entries it updated. Runs that are finished, local or unreadable cost no query;
    a run the scheduler no longer knows (purged, accounting off, a restarted Ray cluster) keeps its record.
    """
    open_runs = [e for e in entries if e.status and e.status.job_id and e.status.state not in FINAL_STATES
                 and (e.status.launcher == "slurm" or (e.status.launcher == "ray" and e.status.ray_address))]
    if not open_runs:
        return []
    # One query per scheduler: SLURM (None), or each Ray cluster by its address.
    by_scheduler: dict[str | None, set[str]] = {}
    for entry in open_runs:
        by_scheduler.setdefault(_scheduler(entry.status), set()).add(entry.status.job_id)
    states = {}
    for scheduler, job_ids in by_scheduler.items():
        if scheduler is None:
            from fipo_cli.launch import slurm

            found = slurm.job_states(job_ids)
        else:
            from fipo_cli.launch import ray_job

            found = ray_job.job_states(scheduler, job_ids)
        states |= {(scheduler, job_id): state for job_id, state in found.items()}
    changed = []
    for entry in open_runs:
        seen = states.get((_scheduler(entry.status), entry.status.job_id))
        if seen is None or seen.state == entry.status.state:
            continue
        # The record may have moved on since it was read (the job's own task writes it too).
        status = read_status(entry.run_dir)
        if status.state in FINAL_STATES or status.job_id != entry.status.job_id:
            entry.status = status
            continue
        status.state = seen.state
        if seen.state == "running" and status.started_at is None:
            status.started_at = utc_now()
        if seen.state in FINAL_STATES:
            status.finished_at = status.finished_at or utc_now()
            status.exit_code = seen.exit_code if seen.exit_code is not None else status.exit_code
        write_status(entry.run_dir, status)
        entry.status = status
        changed.append(entry)
    return changed


def _scheduler(status: RunStatus) -> str | None:
    """Who knows a submitted run's job: SLURM (None), or the Ray cluster at this address."""
    return status.ray_address if status.launcher == "ray" else None


def last_step(run_dir: Path) -> int | None:
    """The last step in the run's metrics file, read from its end (the file grows to many MiB).

    A requeued run that has not logged again yet shows the last step of its earlier attempts.
    """
    for name in (METRICS_FILE, EARLIER_METRICS_FILE):
        step = _last_step_in(run_dir / name)
        if step is not None:
            return step
    return None


def _last_step_in(path: Path) -> int | None:
    try:
        with open(path, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - _TAIL_BYTES))
            lines = file.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            step = json.loads(line).get("step")
        except (ValueError, AttributeError):
            continue  # a line being written, or cut by the tail's start
        if isinstance(step, int):
            return step
    return None


def _parse_time(stamp: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(stamp) if stamp else None
    except ValueError:
        return None


def elapsed_seconds(status: RunStatus, now: datetime | None = None) -> float | None:
    """Seconds from the run's start to its end, or to now while it runs."""
    started = _parse_time(status.started_at)
    if started is None:
        return None
    finished = _parse_time(status.finished_at) if status.state in FINAL_STATES else None
    return max(0.0, ((finished or now or datetime.now(timezone.utc)) - started).total_seconds())


def format_elapsed(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return (f"{days}-" if days else "") + f"{hours:02d}:{minutes:02d}:{seconds:02d}"


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
        "run_dir": str(entry.run_dir),
        "problem": entry.problem,
    }


def mark_cancelled(entry: RunEntry) -> None:
    status = read_status(entry.run_dir)
    status.state = "cancelled"
    status.finished_at = utc_now()
    write_status(entry.run_dir, status)
    entry.status = status
