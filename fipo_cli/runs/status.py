"""The run status record (``status.json``), run states and run names.

A run lives in ``experiments/<exp>/runs/<run>/``. Every file fipo writes there is replaced
atomically (:func:`fipo_cli.core.files.atomic_write_json`), never edited in place: run directories
sit on shared network filesystems, where a reader must see the old file or the new one, never half of one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, get_args

from fipo_cli.core.clock import utc_now
from fipo_cli.core.errors import FipoError
from fipo_cli.core.files import atomic_write_json
from fipo_cli.core.processes import ProcessRef
from fipo_cli.runs.layout import STATUS_FILE

RunState = Literal["created", "pending", "running", "succeeded", "failed", "cancelled", "timeout"]
RUN_STATES: tuple[str, ...] = get_args(RunState)
#: States a run never leaves by itself (a requeue or a retry starts it again).
FINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "timeout"})

_RUN_NAME_FORMAT = "%Y%m%d-%H%M%S"
_REQUIRED_STATUS_KEYS = ("state", "launcher", "created_at")
_INTEGER_KEYS = ("exit_code", "array_index", "restarts", "runner_pid")


@dataclass
class RunStatus:
    """The small record of where a run stands, kept in ``<run dir>/status.json``."""

    state: RunState
    launcher: str
    exit_code: int | None = None
    created_at: str = dataclasses.field(default_factory=utc_now)
    started_at: str | None = None
    finished_at: str | None = None
    job_id: str | None = None
    """The scheduler's job id (``123``, or ``123_4`` for an array task; a Ray job's submission id); None for local runs."""
    array_index: int | None = None
    sweep: str | None = None
    scheduler_log: str | None = None
    """The job's own output file (SLURM's ``--output``), next to the trainer's ``train.log``."""
    restarts: int = 0
    """How often SLURM restarted the job (a requeue after preemption or node failure)."""
    wandb_run_id: str | None = None
    wandb_url: str | None = None
    resumed_from: str | None = None
    """The name of the run this one resumes, if any."""
    ray_address: str | None = None
    """The Ray cluster a ray-launched run was submitted to."""
    runner_host: str | None = None
    """Who runs the trainer, recorded when it starts (:class:`fipo_cli.core.processes.ProcessRef`): the
    host, pid and start of ``fipo train`` for a local run, of the job's task elsewhere. A local run
    whose runner died is found by ``fipo status`` on that host."""
    runner_pid: int | None = None
    runner_start: str | None = None
    stop_signal: str | None = None
    """A signal ``fipo train`` received while it ran a local run's trainer (``SIGINT``, ``SIGTERM``), passed on to it."""
    reason: str | None = None
    """Why the run failed or last stopped short of its end, when fipo knows more than an exit code: a
    launcher that died, a node that never joined the job's Ray cluster or left it (then SLURM requeued it)."""

    @property
    def runner(self) -> ProcessRef | None:
        """The process recorded as running the trainer, if one was."""
        if self.runner_host is None or self.runner_pid is None:
            return None
        return ProcessRef(self.runner_host, self.runner_pid, self.runner_start)

    @runner.setter
    def runner(self, process: ProcessRef) -> None:
        self.runner_host, self.runner_pid, self.runner_start = process.host, process.pid, process.start


def write_status(run_dir: Path, status: RunStatus) -> None:
    """Replace ``run_dir/status.json`` with ``status`` atomically."""
    atomic_write_json(Path(run_dir) / STATUS_FILE, dataclasses.asdict(status))


def read_status(run_dir: Path) -> RunStatus:
    """Read ``run_dir/status.json``; :class:`FipoError` naming the file if it is missing or corrupt."""
    path = Path(run_dir) / STATUS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FipoError(
            f"{path} does not exist", hint=f"is {run_dir} a fipo run directory? fipo writes it when it creates a run"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FipoError(f"cannot read the run status {path}: {exc}") from exc
    problem = _status_problem(data)
    if problem is not None:
        raise FipoError(f"the run status {path} is corrupt: {problem}")
    # Keys a newer fipo added are skipped, so an older fipo can still read the record.
    known = {field.name for field in dataclasses.fields(RunStatus)}
    return RunStatus(**{key: value for key, value in data.items() if key in known})


def _status_problem(data: Any) -> str | None:
    """What is wrong with a status record as read from JSON, or None when nothing is."""
    if not isinstance(data, dict):
        return f"expected a JSON object, found {type(data).__name__}"
    missing = [name for name in _REQUIRED_STATUS_KEYS if data.get(name) is None]
    if missing:
        return f"missing values for {missing}"
    if data["state"] not in RUN_STATES:
        return f"state {data['state']!r} is not one of {', '.join(RUN_STATES)}"
    # state was checked above; the rest are integers or strings.
    fields = {field.name for field in dataclasses.fields(RunStatus)}
    mistyped = [
        f"{name}={value!r}"
        for name, value in data.items()
        if name in fields and value is not None and type(value) is not (int if name in _INTEGER_KEYS else str)
    ]
    if mistyped:
        return f"{', '.join(mistyped)}: {', '.join(_INTEGER_KEYS)} must be integers, the other values strings"
    return None


def new_run_name(runs_dir: Path, now: datetime | None = None, *, prefix: str = "", extension: str = "") -> str:
    """A name for a new run in ``runs_dir``: its start time in UTC, ``20261122-013000``.

    Names sort by time (UTC, so runs started from different time zones sort together), are
    safe as file names and SLURM job names, and are unique in ``runs_dir``: ``-2``, ``-3``, …
    is appended when the name is taken. A naive ``now`` is taken as local time. Two processes
    can still pick the same name at the same moment; :func:`create_run_dir` claims one safely.
    Other time-named files use ``prefix`` and ``extension`` (``eval-20261122-013000.sbatch``).
    """
    stamp = prefix + (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime(_RUN_NAME_FORMAT)
    runs_dir = Path(runs_dir)
    name = stamp
    suffix = 2
    while (runs_dir / f"{name}{extension}").exists():
        name = f"{stamp}-{suffix}"
        suffix += 1
    return f"{name}{extension}"


def create_run_dir(runs_dir: Path, now: datetime | None = None) -> Path:
    """Create and return a new, empty run directory in ``runs_dir`` named by :func:`new_run_name`.

    ``mkdir`` is atomic, also on network filesystems, so concurrent fipo processes (a sweep)
    never share a directory: the one that loses the race takes the next name.
    """
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    while True:
        run_dir = runs_dir / new_run_name(runs_dir, now)
        try:
            run_dir.mkdir()
        except FileExistsError:
            continue
        return run_dir
