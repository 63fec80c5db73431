"""The launchers by name, and what fipo does to runs whatever launched them: refresh their states,
cancel them, print their logs, watch one.

Each run's ``status.json`` names its launcher; the runs of one launcher are handed to it together
(one ``squeue``, one query per Ray cluster).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import BinaryIO, get_args

from fipo_cli.core.errors import FipoError, UsageError
from fipo_cli.experiment.config import LauncherName
from fipo_cli.launch.base import Launcher, log_file
from fipo_cli.launch.watch import RunWatch, Screen, follow
from fipo_cli.runs.registry import RunEntry, elapsed_seconds, mark_cancelled
from fipo_cli.runs.status import FINAL_STATES, read_status

#: What ``cluster.launcher`` may name.
NAMES: tuple[str, ...] = get_args(LauncherName)


def launcher_for(name: str) -> Launcher:
    """The launcher called ``name``; UsageError naming the launchers for any other."""
    if name == "local":
        from fipo_cli.launch.local import LocalLauncher

        return LocalLauncher()
    if name == "slurm":
        from fipo_cli.launch.slurm import SlurmLauncher

        return SlurmLauncher()
    if name == "ray":
        from fipo_cli.launch.ray_job import RayLauncher

        return RayLauncher()
    raise UsageError(f"no launcher {name!r}", hint=f"the launchers are {', '.join(NAMES)}")


def _by_launcher(entries: Iterable[RunEntry]) -> dict[str, list[RunEntry]]:
    grouped: dict[str, list[RunEntry]] = {}
    for entry in entries:
        if entry.status is not None:
            grouped.setdefault(entry.status.launcher, []).append(entry)
    return grouped


def refresh(entries: Iterable[RunEntry]) -> list[RunEntry]:
    """Ask each launcher's scheduler about its unfinished runs and record what changed; the entries updated.

    Runs that are finished, local or unreadable cost no query.
    """
    return [changed for name, group in _by_launcher(entries).items() for changed in launcher_for(name).update(group)]


@dataclass(frozen=True)
class CancelPlan:
    """What ``fipo cancel`` would do: the runs it stops, and those it cannot stop from here, with why."""

    runs: list[RunEntry]
    refused: list[tuple[RunEntry, str]]


def plan_cancel(entries: Sequence[RunEntry]) -> CancelPlan:
    """The runs among ``entries`` that are created, queued or running, split by whether fipo can stop them."""
    runs, refused = [], []
    for entry in entries:
        if entry.state not in ("created", "pending", "running"):
            continue
        why = launcher_for(entry.status.launcher).cancel_refusal(entry.status)
        if why is None:
            runs.append(entry)
        else:
            refused.append((entry, why))
    return CancelPlan(runs, refused)


def cancel(plan: CancelPlan) -> None:
    """Stop the plan's runs' jobs (``scancel``, Ray's ``stop_job``) and record the runs as cancelled."""
    for name, group in _by_launcher(plan.runs).items():
        launcher_for(name).cancel([entry.status for entry in group])
    for entry in plan.runs:
        mark_cancelled(entry)


def print_log(entry: RunEntry, *, job_log: bool = False, follow: bool = False, out: BinaryIO | None = None) -> int:
    """Copy the run's log to ``out`` (stdout); with ``follow``, until the run ends. 0, or 130 on Ctrl-C."""
    out = out or sys.stdout.buffer
    launcher = launcher_for(entry.status.launcher if entry.status is not None else "local")
    return launcher.logs(entry, job_log=job_log, follow=follow, out=out)


def watch(entry: RunEntry, screen: Screen, *, poll_s: float = 1.0, refresh_s: float = 10.0) -> RunEntry:
    """Follow a run on ``screen`` until it ends (``fipo watch``); the entry as it ended.

    What the run writes comes through its launcher's feed (its files, or a Ray job's log); where it
    stands, from its record, which the launcher refreshes from its scheduler every ``refresh_s``.
    """
    import time

    from fipo_cli.experiment import config
    from fipo_cli.runs.layout import RUN_CONFIG_FILE

    launcher = launcher_for(entry.status.launcher if entry.status is not None else "local")
    total = config.load(entry.run_dir / RUN_CONFIG_FILE).trainer.total_training_steps
    run = RunWatch(screen, run=entry.reference, wandb=entry.status.wandb_url if entry.status else None,
                   log=log_file(entry, job_log=False), total=total,
                   elapsed=lambda: elapsed_seconds(entry.status) if entry.status else None)
    refreshed = [float("-inf")]

    def finished() -> bool:
        if time.monotonic() - refreshed[0] >= refresh_s:
            launcher.update([entry])
            refreshed[0] = time.monotonic()
        with contextlib.suppress(FipoError):
            entry.status = read_status(entry.run_dir)
        state = entry.state
        if state not in ("running", *FINAL_STATES):
            job = entry.status.job_id if entry.status else None
            run.phase(f"{state}" + (f" as job {job}" if job else ""))
        return state in FINAL_STATES

    follow(launcher.feed(entry), run, finished=finished, poll_s=poll_s)
    return entry
