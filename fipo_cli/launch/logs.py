"""``fipo logs``: print a run's trainer log, SLURM job log or Ray job log, and follow it while the run goes on."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import BinaryIO

from fipo_cli.core.errors import FipoError, UsageError
from fipo_cli.runs.layout import LOG_FILE
from fipo_cli.runs.registry import RunEntry
from fipo_cli.runs.status import FINAL_STATES, read_status

_POLL_S = 0.5


def log_path(entry: RunEntry, job_log: bool) -> Path:
    if not job_log:
        return entry.run_dir / LOG_FILE
    if entry.status is None or not entry.status.scheduler_log:
        raise UsageError(f"{entry.reference} has no SLURM job log (launcher: "
                         f"{entry.status.launcher if entry.status else 'unknown'})", hint="drop --job")
    return Path(entry.status.scheduler_log)


def print_log(entry: RunEntry, *, job_log: bool = False, follow: bool = False, out: BinaryIO | None = None) -> int:
    """Copy the log to ``out`` (stdout); with ``follow``, keep copying until the run reaches a final state.

    Returns the exit code for ``fipo logs``: 0, or 130 when interrupted.
    """
    out = out or sys.stdout.buffer
    if entry.status is not None and entry.status.launcher == "ray" and entry.status.job_id and entry.status.ray_address:
        from fipo_cli.launch import ray_job

        # The job's output is the trainer's, on the cluster: the run directory may not be shared.
        return ray_job.copy_log(entry.status.ray_address, entry.status.job_id, follow=follow, out=out)
    path = log_path(entry, job_log)
    if not path.exists() and not follow:
        state = entry.state
        raise FipoError(f"{entry.reference} is {state}: {path} does not exist"
                        + ("" if state in FINAL_STATES else " yet"),
                        hint=None if state in FINAL_STATES else f"follow it with: fipo logs {entry.reference} -f")
    offset = 0
    try:
        while True:
            finished = read_status(entry.run_dir).state in FINAL_STATES if follow else True
            offset = _copy_from(path, offset, out)
            if finished:
                return 0
            time.sleep(_POLL_S)
    except KeyboardInterrupt:
        return 130


def _copy_from(path: Path, offset: int, out: BinaryIO) -> int:
    """Write what ``path`` holds past ``offset``; the new offset (0 while the file does not exist)."""
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            while chunk := file.read(1 << 16):
                out.write(chunk)
                offset += len(chunk)
    except FileNotFoundError:
        return offset
    out.flush()
    return offset
