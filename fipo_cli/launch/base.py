"""The launcher interface: how runs reach the machines that train them, and how fipo follows them there.

A launcher is one way to run trainers: ``local`` (in a subprocess here), ``slurm`` (a batch job or
a job array), ``ray`` (one job per run on a Ray cluster that already runs). Every launcher
implements the same operations, and nothing outside ``fipo_cli.launch`` asks which one it has::

    check(batch, inherited)                  refuse before anything is written (GPUs here, a cluster that answers)
    plan(batch, inherited) -> Submission     pure: exactly what submit will do (what --dry-run shows)
    submit(submission, hooks) -> Outcome     create the runs, hand them over, record where they went
    run_trainer(job, inherited, screen)      the trainer on this node (here, or inside the job), shown on screen
    feed(entry) -> RunFeed                   what a run writes, read from wherever it trains (``fipo watch``)
    refresh(statuses) -> [JobState | None]   ask the scheduler where the runs' jobs stand
    cancel(statuses)                         stop their jobs
    logs(entry, job_log, follow, out) -> int print a run's log, following it until the run ends

Training builds a :class:`Batch` of :class:`RunJob` s (one for ``fipo train``, a sweep's runs for
``fipo sweep``) and gives :meth:`Launcher.submit` two hooks of its own: ``create`` writes a run's
record just before the run is handed over, ``execute`` runs a created run here (the local launcher;
the others run it inside their job, through ``python -m fipo_cli.run_task``). A submission that
fails removes the runs it created (:func:`removed_on_failure`): nothing half-made stays behind.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Literal

from fipo_cli.core.clock import utc_now
from fipo_cli.core.errors import FipoError, UsageError
from fipo_cli.experiment.config import ClusterConfig, Experiment, LauncherName
from fipo_cli.launch.watch import FileFeed, RunFeed, RunWatch, Screen, run_watched
from fipo_cli.runs.layout import LOG_FILE
from fipo_cli.runs.registry import RunEntry, elapsed_seconds
from fipo_cli.runs.status import FINAL_STATES, RunState, RunStatus, read_status, write_status

#: How often a followed log is read again while its run goes on.
LOG_POLL_S = 0.5


@dataclass(frozen=True)
class RunJob:
    """One run as a launcher sees it: where it lives, what it runs, with which variables."""

    run_dir: Path
    reference: str
    """``EXP/RUN``, as the user names it."""
    experiment: Experiment
    command: Sequence[str]
    """The trainer's command line."""
    env: Mapping[str, str]
    """The variables fipo sets for the trainer, on top of the environment it inherits."""

    @property
    def cluster(self) -> ClusterConfig:
        return self.experiment.cluster


@dataclass(frozen=True)
class Batch:
    """What one ``fipo train`` (one run) or ``fipo sweep`` (its runs to submit) hands a launcher."""

    jobs: Sequence[RunJob]
    name: str
    """The scheduler's job name: ``fipo-EXP-RUN`` or ``fipo-SWEEP``."""
    description: str
    command: Literal["train", "sweep"]
    sweep_dir: Path | None = None
    """A sweep's directory (its array scripts and their logs); None for one run."""
    max_parallel: int | None = None
    sweep_runs: Sequence[Path] = ()
    """Every run directory of the sweep, submitted earlier or now: what ``--max-parallel`` counts."""

    @property
    def is_sweep(self) -> bool:
        return self.sweep_dir is not None


@dataclass(frozen=True)
class JobState:
    """Where a scheduler says a run's job stands, in fipo's states and the scheduler's own word.

    ``unknown``: nobody can tell from here (a local run fipo runs on another host); shown, never recorded.
    """

    state: RunState | Literal["unknown"]
    scheduler_state: str
    exit_code: int | None = None
    reason: str | None = None
    """Why, when the record should say more than the state (a launcher that died)."""


@dataclass(frozen=True)
class Submitted:
    """What the scheduler gave one run: its job, and where the job itself logs."""

    job_id: str
    scheduler_log: Path | None = None
    array_index: int | None = None
    address: str | None = None
    """The Ray cluster a job went to."""


@dataclass(frozen=True)
class Hooks:
    """What training lends a submission.

    ``create(jobs)`` writes the runs' records (config, command, environment, a ``created`` status)
    and returns the directories it made, which a failed submission removes again. ``execute(job)``
    runs a created run's trainer in this process and returns its exit code. ``submitted(job, handed)``
    hears of each run handed over, as it happens (a submission interrupted half-way has handed some).
    ``say`` tells the user.
    """

    create: Callable[[Sequence[RunJob]], list[Path]]
    execute: Callable[[RunJob], int]
    submitted: Callable[[RunJob, Submitted], None] = lambda job, handed: None
    say: Callable[[str], None] = print


@dataclass
class Outcome:
    """How a submission went: the runs handed to a scheduler, or the exit code of the runs run here."""

    submitted: list[tuple[RunJob, Submitted]] = field(default_factory=list)
    exit_code: int | None = None
    """Set when the runs ran in this process (the local launcher): the worst exit code."""
    lines: list[str] = field(default_factory=list)
    """What the launcher tells the user about where the runs went."""


class Submission:
    """A planned submission, computed before anything is written: ``--dry-run`` shows it, submit carries it out."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch

    @property
    def script(self) -> str | None:
        """The batch script the submission hands to a scheduler, if it hands one."""
        return None

    def jobs_json(self) -> list[dict[str, Any]] | None:
        """The jobs it submits to a Ray cluster, as ``--dry-run --json`` shows them; None when it submits none."""
        return None

    def to_json(self) -> dict[str, Any]:
        """What ``--dry-run --json`` adds to the plan: ``sbatch`` and ``ray_job`` (``ray_jobs`` for a sweep)."""
        jobs = self.jobs_json()
        if self.batch.is_sweep:
            return {"sbatch": self.script, "ray_jobs": jobs}
        return {"sbatch": self.script, "ray_job": jobs[0] if jobs else None}

    def describe(self) -> str:
        """The submission for people ("" when the plan says it all)."""
        return ""

    def manifest_record(self, submitted: Sequence[tuple[RunJob, Submitted]]) -> dict[str, Any] | None:
        """What a sweep's manifest records of this submission (None: nothing, the runs ran here)."""
        return {"job_ids": [handed.job_id for _, handed in submitted],
                "runs": [job.run_dir.name for job, _ in submitted], "submitted_at": utc_now()}


class Launcher(ABC):
    """One way to run trainers; see the module docstring for the operations."""

    name: ClassVar[LauncherName]
    #: The trainer runs elsewhere: the training set need not be installed where fipo submits.
    remote: ClassVar[bool] = True
    #: The scheduler allocates the GPUs (none need be visible where fipo submits).
    allocates_gpus: ClassVar[bool] = False
    #: A trainer stopped by a signal keeps the run's state: the scheduler knows why (cancel, time
    #: limit, preemption, requeue) and :meth:`refresh` asks it.
    scheduler_records_stops: ClassVar[bool] = False

    def check(self, batch: Batch, inherited: Mapping[str, str]) -> None:  # noqa: B027 - most launchers take any batch
        """Refuse, before anything is written, a batch this launcher cannot take."""

    @abstractmethod
    def plan(self, batch: Batch, inherited: Mapping[str, str]) -> Submission:
        """The submission of ``batch``: pure, nothing written or sent."""

    @abstractmethod
    def submit(self, submission: Submission, hooks: Hooks) -> Outcome:
        """Create the runs (``hooks.create``), hand them over and record each one's job."""

    def run_trainer(self, job: RunJob, inherited: Mapping[str, str], screen: Screen | None = None) -> int:
        """Run the trainer of ``job`` on this node, its output in the run's ``train.log``; its exit code.

        On ``screen``, the run's view (its steps, and the trainer's real warnings and errors); without
        one, everything the trainer prints. Inside a SLURM or Ray job the job's Ray cluster is up
        already (``RAY_ADDRESS``).
        """
        return run_watched(job.command, env={**inherited, **job.env}, log_path=job.run_dir / LOG_FILE,
                           watch=watch_of(job, screen))

    def feed(self, entry: RunEntry) -> RunFeed:
        """What the run writes, for ``fipo watch``: read from its directory (here, or shared with the cluster)."""
        return FileFeed(entry.run_dir)

    @abstractmethod
    def refresh(self, statuses: Sequence[RunStatus]) -> list[JobState | None]:
        """Where each run's job stands (None: nothing known, the record stands), in the order given."""

    def cancel_refusal(self, status: RunStatus) -> str | None:
        """Why fipo cannot cancel this run from here (None: it can)."""
        return None

    @abstractmethod
    def cancel(self, statuses: Sequence[RunStatus]) -> None:
        """Stop the runs' jobs (queued or running); their records are marked cancelled by the caller."""

    def logs(self, entry: RunEntry, *, job_log: bool, follow: bool, out: BinaryIO) -> int:
        """Copy the run's log to ``out``; with ``follow``, until the run ends. 0, or 130 on Ctrl-C.

        ``job_log``: the scheduler's log of the job instead of the trainer's ``train.log``.
        """
        return follow_file(entry, log_file(entry, job_log), follow=follow, out=out)

    def preflight(self, experiment: Experiment, env: Mapping[str, str]) -> list[tuple[str, str, str]]:
        """``fipo doctor``'s checks of this launcher: (name, pass | warn | fail, detail) each."""
        return []

    def update(self, entries: Sequence[RunEntry]) -> list[RunEntry]:
        """Ask the scheduler about these runs of this launcher and record what changed; the entries updated.

        A run the scheduler no longer knows (purged, accounting off, a restarted Ray cluster) keeps
        its record; so does one whose record moved on meanwhile (the job's own task writes it too).
        """
        open_runs = [entry for entry in entries if entry.status and entry.status.state not in FINAL_STATES]
        changed = []
        for entry, seen in zip(open_runs, self.refresh([entry.status for entry in open_runs]) if open_runs else [],
                               strict=True):
            if seen is not None and seen.state == "unknown":
                entry.unknown = seen.reason or seen.scheduler_state
                continue
            if seen is None or seen.state == entry.status.state:
                continue
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
            status.reason = seen.reason or status.reason
            write_status(entry.run_dir, status)
            entry.status = status
            changed.append(entry)
        return changed


@contextlib.contextmanager
def removed_on_failure(create: Callable[[], list[Path]]) -> Iterator[list[Path]]:
    """Create runs with ``create`` and remove the directories it made if the block fails (or is interrupted)."""
    made: list[Path] = []
    try:
        made.extend(create())
        yield made
    except BaseException:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)
        raise


def watch_of(job: RunJob, screen: Screen | None) -> RunWatch | None:
    """The view of a run that starts now on this node (its record says it runs), on ``screen``; None without one."""
    if screen is None:
        return None
    status = read_status(job.run_dir)
    return RunWatch(screen, run=job.reference, wandb=status.wandb_url, log=job.run_dir / LOG_FILE,
                    total=job.experiment.trainer.total_training_steps, elapsed=lambda: elapsed_seconds(status))


def record_submission(job: RunJob, handed: Submitted) -> RunStatus:
    """Mark a run pending as its job, unless the job already started and said so itself."""
    status = read_status(job.run_dir)
    if status.state in ("created", *FINAL_STATES):
        status.state = "pending"
        status.exit_code = status.started_at = status.finished_at = None
    status.job_id, status.array_index, status.ray_address = handed.job_id, handed.array_index, handed.address
    status.scheduler_log = str(handed.scheduler_log.absolute()) if handed.scheduler_log else None
    write_status(job.run_dir, status)
    return status


def log_file(entry: RunEntry, job_log: bool) -> Path:
    """The trainer's ``train.log``, or with ``job_log`` the scheduler's log of the run's job."""
    if not job_log:
        return entry.run_dir / LOG_FILE
    if entry.status is None or not entry.status.scheduler_log:
        raise UsageError(f"{entry.reference} has no SLURM job log (launcher: "
                         f"{entry.status.launcher if entry.status else 'unknown'})", hint="drop --job")
    return Path(entry.status.scheduler_log)


def follow_file(entry: RunEntry, path: Path, *, follow: bool, out: BinaryIO | None = None) -> int:
    """Copy ``path`` to ``out`` (stdout); with ``follow``, keep copying until the run reaches a final state.

    Returns the exit code for ``fipo logs``: 0, or 130 when interrupted.
    """
    out = out or sys.stdout.buffer
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
            time.sleep(LOG_POLL_S)
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
