"""The ray launcher: submit a run to a Ray cluster that already runs, through Ray's job submission API.

A job carries what its run needs and nothing more: a working directory fipo assembles from the
run's record (``config.yaml``, ``command.json``, ``env.json``, ``tracking_config.json``,
``status.json``, under ``run/``) and the local inputs the config names by a relative path (data
files, a reward function's file, a custom entrypoint's script), each at that path. Absolute paths
and hub ids are read where they point, on the cluster. The entrypoint, ``python3 -m
fipo_cli.training.run_task --record run RUN_DIR`` (the cluster's Python, with fipo installed), puts the
record into the run directory as the cluster sees it when it is not there already, and runs the
trainer as a SLURM job's task does; verl's trainer joins the job's Ray cluster (``RAY_ADDRESS``,
set by Ray), and Ray merges the job's variables into those of verl's workers.

Where the run writes (checkpoints, metrics, logs): the run directory's own path by default, for
clusters that share the filesystem, as SLURM clusters do; ``cluster.ray_run_root`` names another
root (a volume every node mounts) for clusters that do not. fipo follows the job through the API:
its state for ``fipo status``, its output for ``fipo logs``, ``stop_job`` for ``fipo cancel``, and for
``fipo watch`` the run's files, or the job's log where the run is written elsewhere (it then carries
the run's metrics records too).

Ray's job client is imported inside the functions that talk to the cluster: planning a job and
``fipo --help`` import no ray.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import shlex
import shutil
import sys
import tempfile
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from fipo_cli import __version__
from fipo_cli.core.errors import FipoError, UsageError
from fipo_cli.core.secrets import is_secret_name, mask_secrets
from fipo_cli.core.text import byte_size
from fipo_cli.experiment import config
from fipo_cli.experiment.config import Experiment
from fipo_cli.launch.base import (
    Batch,
    Hooks,
    JobState,
    Launcher,
    Outcome,
    RunJob,
    Submission,
    Submitted,
    record_submission,
    removed_on_failure,
)
from fipo_cli.launch.process import run_local
from fipo_cli.launch.watch import RunFeed, Screen
from fipo_cli.runs.layout import LOG_FILE, METRICS_FILE, RUN_CONFIG_FILE, RUN_RECORD, STATUS_FILE
from fipo_cli.runs.metrics import MetricsTail, parse_records
from fipo_cli.runs.progress import VIEW_METRICS
from fipo_cli.runs.registry import RunEntry, run_entry
from fipo_cli.runs.status import RunStatus, read_status, write_status

#: The folder of the job's working directory that holds the run's record.
RECORD_DIR = "run"
#: Ray warns above half of its 512 MiB package limit (``ray._private.runtime_env.packaging``,
#: ``PACKAGE_SIZE_WARNING``) and uploads the working directory on every submission: fipo refuses
#: more than that, naming the files, rather than send gigabytes each time.
MAX_UPLOAD_BYTES = 256 * 1024**2
#: Inherited variables the job gets: W&B's and Hugging Face's settings. A secret among them goes
#: by name, ``${NAME}``, which Ray expands from the environment of the cluster's node (empty where
#: the node has none): its value never reaches Ray's job table or logs unless
#: ``cluster.ray_forward_secrets`` says so.
FORWARDED_PREFIXES = ("WANDB_", "HF_", "HUGGING_FACE_")
#: Ray's job states (``ray.job_submission.JobStatus``) as fipo's run states.
RAY_STATES = {"PENDING": "pending", "RUNNING": "running", "SUCCEEDED": "succeeded", "FAILED": "failed",
              "STOPPED": "cancelled"}
#: What Ray's job client raises: RuntimeError for an HTTP error or a refusal, OSError (requests'
#: errors, ConnectionError) when nothing answers, ValueError for an address it cannot use.
_RAY_ERRORS = (RuntimeError, OSError, ValueError)
_ADDRESS = re.compile(r"^(https?://)?[A-Za-z0-9.\-\[\]:]+(:\d+)?/?$")
#: Starts the line of a metrics record in the log of a job that writes its run where fipo cannot read it.
METRICS_MARKER = "fipo-metrics "
#: How often a sweep held by ``--max-parallel`` asks the cluster whether one of its jobs ended.
SLOT_POLL_S = 5.0
_ADDRESS_HINT = ("the head's dashboard address, e.g. http://HEAD:8265 (cluster.ray_address, or RAY_API_SERVER_ADDRESS / "
                 "RAY_ADDRESS as for `ray job submit`)")


def resolve_address(configured: str | None, env: Mapping[str, str]) -> str:
    """The cluster to submit to: ``cluster.ray_address``, else what ``ray job submit`` reads
    (``RAY_API_SERVER_ADDRESS``, then ``RAY_ADDRESS``)."""
    source = "cluster.ray_address" if configured else next(
        (name for name in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS") if env.get(name)), None)
    if source is None:
        raise UsageError("the ray launcher needs the address of a Ray cluster", hint=f"set {_ADDRESS_HINT}")
    address = configured or env[source]
    if not _ADDRESS.match(address):
        raise UsageError(f"{source}={address!r} is not a Ray address", hint=f"use {_ADDRESS_HINT}")
    return address


@dataclass(frozen=True)
class Upload:
    """A local file or folder the job's working directory carries, at ``target`` inside it."""

    source: Path
    target: str
    size: int


@dataclass(frozen=True)
class JobSubmission:
    """Everything ``submit_job`` gets for one run, decided before anything is sent."""

    address: str
    submission_id: str
    entrypoint: str
    env_vars: dict[str, str]
    record: list[Path]
    """The run's record files, which travel under ``run/`` (not its logs, metrics or checkpoints)."""
    uploads: list[Upload]
    cluster_run_dir: str
    metadata: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        """The submission as ``--dry-run --json`` shows it: secrets masked, by name only."""
        return {
            "address": self.address,
            "submission_id": self.submission_id,
            "entrypoint": self.entrypoint,
            "runtime_env": {"working_dir": f"<{RECORD_DIR}/ and {len(self.uploads)} input files, assembled at submit>",
                            "env_vars": self.shown_env_vars()},
            "working_dir": [*(f"{RECORD_DIR}/{path.name} (from {path.parent})" for path in self.record),
                            *(f"{upload.target} ({upload.size} bytes, from {upload.source})" for upload in self.uploads)],
            "run_dir_on_cluster": self.cluster_run_dir,
            "metadata": self.metadata,
        }

    def describe(self) -> str:
        """The submission for people."""
        lines = [f"Ray job for {self.address}:", f"  submission id: {self.submission_id}",
                 f"  entrypoint:    {self.entrypoint}", f"  run directory on the cluster: {self.cluster_run_dir}",
                 "  working directory:", f"    {RECORD_DIR}/  the run's record: {', '.join(p.name for p in self.record)}"]
        lines += [f"    {upload.target}  {byte_size(upload.size)}" for upload in self.uploads]
        lines.append("  runtime env variables (a secret goes by name, as ${NAME}, or masked when sent by value):")
        lines += [f"    {name}={value}" for name, value in sorted(self.shown_env_vars().items())]
        return "\n".join(lines)

    def shown_env_vars(self) -> dict[str, str]:
        """The job's variables as fipo shows them: a secret sent by value masked, one sent by name as is."""
        masked = mask_secrets(self.env_vars)
        return {name: value if value == f"${{{name}}}" else masked[name] for name, value in self.env_vars.items()}


def cluster_run_dir(run_dir: Path, run_root: str | None) -> str:
    """Where the run writes on the cluster: under ``run_root`` as ``EXP/runs/RUN``, else its own path."""
    run_dir = Path(run_dir).absolute()
    if run_root is None:
        return str(run_dir)
    return str(Path(run_root) / run_dir.parent.parent.name / run_dir.parent.name / run_dir.name)


def input_uploads(paths: Sequence[str], *, cwd: Path | None = None) -> list[Upload]:
    """The local inputs named by a relative path, with their sizes; refused past :data:`MAX_UPLOAD_BYTES`.

    A relative path that does not exist here is left to the cluster (a hub id looks like one).
    """
    cwd = Path.cwd() if cwd is None else cwd
    uploads = {}
    for name in paths:
        path = Path(name)
        if path.is_absolute() or not (cwd / path).exists() or str(path) in uploads:
            continue
        if ".." in path.parts:
            raise UsageError(f"{name!r} leaves the project directory: a Ray job sees it nowhere",
                             hint="give the path inside the project, or an absolute path the cluster's nodes read")
        source = (cwd / path).absolute()
        size = sum(p.stat().st_size for p in source.rglob("*") if p.is_file()) if source.is_dir() else source.stat().st_size
        uploads[str(path)] = Upload(source, path.as_posix(), size)
    total = sum(upload.size for upload in uploads.values())
    if total > MAX_UPLOAD_BYTES:
        listed = ", ".join(f"{u.target} ({byte_size(u.size)})" for u in sorted(uploads.values(), key=lambda u: -u.size))
        raise UsageError(
            f"the job would upload {byte_size(total)} of local inputs: {listed}; "
            f"Ray uploads a job's working directory on every submission, and fipo sends at most {byte_size(MAX_UPLOAD_BYTES)}",
            hint="put large inputs (a model, a big dataset) where the cluster's nodes read them and give that absolute "
                 "path (or a hub id) in the config",
        )
    return list(uploads.values())


def plan_submission(
    *,
    address: str,
    run_dir: Path,
    record: Sequence[str],
    reference: str,
    run_root: str | None,
    inputs: Sequence[str],
    inherited: Mapping[str, str],
    fipo_version: str,
    forward_secrets: bool = False,
) -> JobSubmission:
    """The job of one run: its entrypoint, variables and working directory."""
    on_cluster = cluster_run_dir(run_dir, run_root)
    forwarded = {name: value if forward_secrets or not is_secret_name(name) else f"${{{name}}}"
                 for name, value in inherited.items() if name.startswith(FORWARDED_PREFIXES)}
    safe = re.sub(r"[^A-Za-z0-9_-]", "-", reference)[:80]
    return JobSubmission(
        address=address,
        submission_id=f"fipo-{safe}-{secrets.token_hex(3)}",
        entrypoint=shlex.join(["python3", "-m", "fipo_cli.run_task", "--record", RECORD_DIR, on_cluster]),
        env_vars=forwarded,
        record=[Path(run_dir).absolute() / name for name in record],
        uploads=input_uploads(inputs),
        cluster_run_dir=on_cluster,
        metadata={"fipo_run": reference, "fipo_version": fipo_version},
    )


@contextlib.contextmanager
def _quiet_ray() -> Iterator[None]:
    """Ray's job client logs each request at INFO on the root handler; fipo says what matters itself."""
    loggers = [logging.getLogger(name) for name in ("ray", "ray.dashboard.modules.job.sdk")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def connect(address: str):
    """A job client for ``address``; :class:`FipoError` (exit 1) when nothing answers there."""
    with _quiet_ray():
        from ray.job_submission import JobSubmissionClient

        try:
            return JobSubmissionClient(address)
        except _RAY_ERRORS as error:
            raise FipoError(
                f"cannot reach a Ray cluster at {address}: {str(error).splitlines()[0] if str(error) else error!r}",
                hint=f"is the cluster up (`ray status` on its head)? give {_ADDRESS_HINT}",
            ) from None


def submit(client, submission: JobSubmission) -> str:
    """Assemble the working directory, submit the job; its submission id."""
    with tempfile.TemporaryDirectory(prefix="fipo-ray-job-") as staging:
        record = Path(staging) / RECORD_DIR
        record.mkdir()
        for item in submission.record:
            if item.is_file():
                shutil.copy2(item, record / item.name)
        for upload in submission.uploads:
            target = Path(staging) / upload.target
            target.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if upload.source.is_dir() else shutil.copy2)(upload.source, target)
        with _quiet_ray():
            try:
                return client.submit_job(
                    entrypoint=submission.entrypoint,
                    submission_id=submission.submission_id,
                    runtime_env={"working_dir": staging, "env_vars": submission.env_vars},
                    metadata=submission.metadata,
                )
            except _RAY_ERRORS as error:
                raise FipoError(f"the Ray cluster at {submission.address} refused the job: {error}") from None


def job_states(address: str, job_ids: Collection[str]) -> dict[str, JobState]:
    """Where each job stands; jobs the cluster does not know, or a cluster that does not answer, are left out."""
    try:
        client = connect(address)
    except FipoError:
        return {}
    states = {}
    with _quiet_ray():
        for job_id in job_ids:
            try:
                info = client.get_job_info(job_id)
            except _RAY_ERRORS:  # the cluster was restarted and forgot the job
                continue
            status = str(getattr(info.status, "value", info.status))
            if status in RAY_STATES:
                states[job_id] = JobState(RAY_STATES[status], status, info.driver_exit_code)
    return states


def stop(address: str, job_ids: Collection[str]) -> None:
    """``stop_job`` each job: Ray sends SIGTERM to its entrypoint's process group, then SIGKILL."""
    client = connect(address)
    with _quiet_ray():
        for job_id in job_ids:
            try:
                client.stop_job(job_id)
            except _RAY_ERRORS as error:
                if "does not exist" in str(error):  # never submitted: a submission that died half-way
                    continue
                raise FipoError(f"the Ray cluster at {address} did not stop job {job_id}: {error}") from None


def copy_log(address: str, job_id: str, *, follow: bool, out: BinaryIO | None = None) -> int:
    """Write the job's output to ``out`` (stdout); with ``follow``, until the job ends. 0, or 130 on Ctrl-C.

    The metrics records a job carries for ``fipo watch`` (:class:`MetricsEcho`) are left out: the log is
    what the trainer printed.
    """
    import asyncio

    out = out or sys.stdout.buffer
    client = connect(address)
    printed = _TrainerLines()
    with _quiet_ray():
        try:
            if not follow:
                out.write(printed.of(client.get_job_logs(job_id)) + printed.of("", end=True))
                out.flush()
                return 0

            async def tail() -> None:
                async for chunk in client.tail_job_logs(job_id):
                    out.write(printed.of(chunk))
                    out.flush()
                out.write(printed.of("", end=True))

            asyncio.run(tail())
        except KeyboardInterrupt:
            return 130
        except _RAY_ERRORS as error:
            raise FipoError(f"cannot read the log of Ray job {job_id} at {address}: {error}") from None
    return 0


class _TrainerLines:
    """A job's log, pieces at a time, without the lines of :data:`METRICS_MARKER`."""

    def __init__(self) -> None:
        self._partial = ""

    def of(self, text: str, *, end: bool = False) -> bytes:
        *lines, self._partial = (self._partial + text).split("\n")
        if end and self._partial:
            lines.append(self._partial)
            self._partial = ""
        return "".join(line + "\n" for line in lines if not line.startswith(METRICS_MARKER)).encode()


class MetricsEcho:
    """Inside a Ray job whose run directory only the cluster sees: the trainer's output to the job's log,
    and each metrics record as it is logged, as one :data:`METRICS_MARKER` line between the trainer's
    lines, so that ``fipo watch`` follows the run through the job API (:class:`JobLogFeed`)."""

    def __init__(self, metrics: Path, out: BinaryIO) -> None:
        self._tail = MetricsTail(metrics)
        self._out = out
        self._at_line_start = True

    def output(self, chunk: bytes) -> None:
        if not chunk:  # the trainer is done: the last records
            self.tick()
            return
        self._out.write(chunk)
        self._out.flush()
        self._at_line_start = chunk.endswith(b"\n")

    def tick(self) -> None:
        records = self._tail.read()
        if not records:
            return
        lines = [METRICS_MARKER + json.dumps({"step": step, "data": {key: data[key] for key in VIEW_METRICS if key in data}})
                 for step, data in records]
        self._out.write(("" if self._at_line_start else "\n").encode() + "\n".join(lines).encode() + b"\n")
        self._out.flush()
        self._at_line_start = True


class JobLogFeed:
    """A Ray job's log, read through the job API as it grows: the trainer's output, and the metrics
    records :class:`MetricsEcho` put into it."""

    def __init__(self, address: str, job_id: str) -> None:
        import queue
        import threading

        self._chunks: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._partial = ""
        self._failed: list[str] = []
        self._client = connect(address)
        self._job_id = job_id
        threading.Thread(target=self._tail, name="fipo-ray-job-log", daemon=True).start()

    def _tail(self) -> None:
        import asyncio

        async def tail() -> None:
            async for chunk in self._client.tail_job_logs(self._job_id):
                self._chunks.put(chunk)

        with _quiet_ray():
            try:
                asyncio.run(tail())
            except _RAY_ERRORS as error:
                self._failed.append(f"fipo: cannot read the log of Ray job {self._job_id}: {error}\n")

    def poll(self) -> tuple[bytes, list[tuple[int, dict[str, float]]]]:
        text = self._partial + "".join(self._drain()) + "".join(self._failed)
        self._failed.clear()
        *lines, self._partial = text.split("\n")
        output, records = [], []
        for line in lines:
            if line.startswith(METRICS_MARKER):
                records += parse_records([line.removeprefix(METRICS_MARKER)])
            else:
                output.append(line + "\n")
        return "".join(output).encode(), records

    def _drain(self) -> Iterator[str]:
        import queue

        while True:
            try:
                yield self._chunks.get_nowait()
            except queue.Empty:
                return

    def close(self) -> None:
        """The reading thread ends with the job's log (a daemon: it never holds fipo up)."""


def run_inputs(job: RunJob) -> list[str]:
    """What a run reads by a path relative to the project: the data, a reward function's file, a custom
    entrypoint's script (a Ray job uploads those that exist here)."""
    experiment = job.experiment
    reward = experiment.algorithm.reward_function
    return [*experiment.asset_paths(), *([reward.partition(":")[0]] if reward else []),
            *experiment.trainer.entrypoint[1:]]


class RaySubmission(Submission):
    """One Ray job per run, each decided (id, entrypoint, variables, uploads) before anything is sent."""

    def __init__(self, batch: Batch, jobs: Sequence[JobSubmission]) -> None:
        super().__init__(batch)
        self.jobs = list(jobs)

    def jobs_json(self) -> list[dict]:
        return [job.to_json() for job in self.jobs]

    def describe(self) -> str:
        return "" if self.batch.is_sweep else "\n".join(job.describe() for job in self.jobs)


class RayLauncher(Launcher):
    name = "ray"

    def __init__(self) -> None:
        self._clients: dict[str, object] = {}

    def _client(self, address: str):
        if address not in self._clients:
            self._clients[address] = connect(address)
        return self._clients[address]

    def check(self, batch: Batch, inherited: Mapping[str, str]) -> None:
        """The cluster is asked first: an unreachable one, or a bad address, leaves nothing behind."""
        if batch.jobs:
            self._client(resolve_address(batch.jobs[0].cluster.ray_address, inherited))

    def plan(self, batch: Batch, inherited: Mapping[str, str]) -> RaySubmission:
        """Every run's job; a bad address or inputs too large are refused here, before anything is written."""
        return RaySubmission(batch, [
            plan_submission(
                address=resolve_address(job.cluster.ray_address, inherited),
                run_dir=job.run_dir,
                record=RUN_RECORD,
                reference=job.reference,
                run_root=job.cluster.ray_run_root,
                inputs=run_inputs(job),
                inherited=inherited,
                fipo_version=__version__,
                forward_secrets=job.cluster.ray_forward_secrets,
            )
            for job in batch.jobs
        ])

    def submit(self, submission: Submission, hooks: Hooks) -> Outcome:
        """One job per run; with ``--max-parallel K`` fipo stays and submits the next run when fewer than K
        of the sweep's jobs are queued or running.

        Each run is created just before its job is submitted, and removed again if the cluster refuses it
        or Ctrl-C comes first: the runs not submitted do not exist, and running the sweep again submits them.
        """
        assert isinstance(submission, RaySubmission)
        batch = submission.batch
        outcome = Outcome()
        try:
            for position, (job, planned) in enumerate(zip(batch.jobs, submission.jobs, strict=True), 1):
                if batch.max_parallel is not None:
                    self._wait_for_slot(batch, batch.max_parallel)
                client = self._client(planned.address)
                with removed_on_failure(lambda job=job: hooks.create([job])):
                    # The job id goes into the record before the record travels, so the job's own task keeps it.
                    status = read_status(job.run_dir)
                    status.job_id, status.ray_address = planned.submission_id, planned.address
                    write_status(job.run_dir, status)
                    handed = Submitted(submit(client, planned), address=planned.address)
                    record_submission(job, handed)
                hooks.submitted(job, handed)
                outcome.submitted.append((job, handed))
                if batch.is_sweep:
                    hooks.say(f"[{position}/{len(batch.jobs)}] {job.run_dir.name}: Ray job {handed.job_id}")
        except KeyboardInterrupt:
            if batch.is_sweep:
                hooks.say(f"interrupted: {len(outcome.submitted)} of {len(batch.jobs)} runs submitted; "
                          "run the sweep again to submit the rest")
            raise
        if not batch.is_sweep:
            job, handed = outcome.submitted[0]
            outcome.lines.append(f"submitted run {job.reference} as Ray job {handed.job_id} to {handed.address}")
        return outcome

    def _wait_for_slot(self, batch: Batch, max_parallel: int) -> None:
        """Until fewer than ``max_parallel`` of the sweep's runs are queued or running on the cluster."""
        import time

        while True:
            entries = [run_entry(run_dir) for run_dir in batch.sweep_runs if (run_dir / STATUS_FILE).is_file()]
            self.update(entries)
            if sum(entry.state in ("pending", "running") for entry in entries) < max_parallel:
                return
            time.sleep(SLOT_POLL_S)

    def refresh(self, statuses: Sequence[RunStatus]) -> list[JobState | None]:
        """One query per cluster, for the runs that have a job there."""
        by_address: dict[str, set[str]] = {}
        for status in statuses:
            if status.job_id and status.ray_address:
                by_address.setdefault(status.ray_address, set()).add(status.job_id)
        found = {(address, job_id): state for address, job_ids in by_address.items()
                 for job_id, state in job_states(address, job_ids).items()}
        return [found.get((status.ray_address, status.job_id)) for status in statuses]

    def cancel(self, statuses: Sequence[RunStatus]) -> None:
        for address in sorted({status.ray_address for status in statuses if status.ray_address}):
            stop(address, sorted({status.job_id for status in statuses
                                  if status.ray_address == address and status.job_id}))

    def run_trainer(self, job: RunJob, inherited: Mapping[str, str], screen: Screen | None = None) -> int:
        """Inside the job: everything the trainer prints goes to the job's log, the copy of ``train.log``
        that fipo reads through the job API (``fipo logs``); where the cluster writes the run elsewhere
        (``cluster.ray_run_root``) the metrics records go with it (:class:`MetricsEcho`). The view is
        ``fipo watch``'s, from any machine that reaches the cluster."""
        env, log_path = {**inherited, **job.env}, job.run_dir / LOG_FILE
        if job.cluster.ray_run_root is None:
            return run_local(job.command, env=env, log_path=log_path)
        echo = MetricsEcho(job.run_dir / METRICS_FILE, sys.stdout.buffer)
        return run_local(job.command, env=env, log_path=log_path, output=echo.output, tick=echo.tick)

    def feed(self, entry: RunEntry) -> RunFeed:
        """The run's files where the cluster writes into the run directory; the job's log through the job
        API where it writes elsewhere (``cluster.ray_run_root``)."""
        status, record = entry.status, entry.run_dir / RUN_CONFIG_FILE
        if (status is not None and status.job_id and status.ray_address and record.is_file()
                and config.load(record).cluster.ray_run_root is not None):
            return JobLogFeed(status.ray_address, status.job_id)
        return super().feed(entry)

    def logs(self, entry: RunEntry, *, job_log: bool, follow: bool, out: BinaryIO) -> int:
        """The job's output, from the cluster (the run directory may not be shared with it)."""
        status = entry.status
        if status is not None and status.job_id and status.ray_address:
            return copy_log(status.ray_address, status.job_id, follow=follow, out=out)
        return super().logs(entry, job_log=job_log, follow=follow, out=out)

    def preflight(self, experiment: Experiment, env: Mapping[str, str]) -> list[tuple[str, str, str]]:
        """The cluster answers on its job API."""
        try:
            address = resolve_address(experiment.cluster.ray_address, env)
            connect(address)
        except FipoError as error:
            return [("Ray cluster", "fail", error.message + (f" ({error.hint})" if error.hint else ""))]
        except ImportError:
            return [("Ray cluster", "fail", "the ray package is not installed here: pip install 'ray[default]'")]
        return [("Ray cluster", "pass", f"{address} answers on Ray's job API")]
