"""The SLURM launcher: render a run's batch script, submit it, ask SLURM where jobs stand, cancel them.

One template (``templates/slurm/train.sbatch.j2``) serves a single run and a sweep's job
array: the script holds the list of run directories and each array task takes its own
(``SLURM_ARRAY_TASK_ID``). Inside the job, ``python -m fipo_cli.run_task RUN_DIR`` reads
the run's resolved config and starts the trainer, so a requeued job starts the same run again.

Nothing here imports torch, verl or ray: this runs on login nodes.
"""

from __future__ import annotations

import getpass
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from fipo_cli import __version__
from fipo_cli.core.clock import utc_now
from fipo_cli.core.errors import FipoError, UsageError
from fipo_cli.core.files import atomic_write_text, first_missing
from fipo_cli.core.secrets import SECRET_NAMES
from fipo_cli.core.text import plural
from fipo_cli.experiment.config import ClusterConfig, Experiment
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
from fipo_cli.launch.ray_head import head_cpus, ray_executable
from fipo_cli.launch.watch import Screen
from fipo_cli.runs.layout import (
    ARRAY_TASK_LOG,
    LOG_FILE,
    SCRIPT_FILE,
    SCRIPT_SUFFIX,
    SLURM_LOG,
    SWEEP_LOGS_DIR,
    array_script_path,
    array_task_log,
    slurm_log,
)
from fipo_cli.runs.status import RunState, RunStatus, read_status, write_status

TRAIN_TEMPLATE = "slurm/train.sbatch.j2"
EVAL_TEMPLATE = "slurm/eval.sbatch.j2"
#: CPUs a ``trainer.device: cpu`` job asks per CPU worker unless ``cluster.cpus_per_task`` says: the
#: worker's own compute (training and, in verl's hybrid engine, generation), and one for its share of
#: the Ray, TransferQueue and rollout-server processes beside it.
CPUS_PER_CPU_WORKER = 2
#: What the job's task exits with when a node left the job's Ray cluster under the trainer: above 128,
#: as for a trainer stopped by a signal, so that the run keeps its state for SLURM to settle; above
#: 128 + every signal's number, so that the batch script tells it apart (and waits for SLURM's requeue).
NODE_LOST_EXIT = 200
#: How long the task watches the Ray cluster, after a failed trainer, for a node to be declared dead:
#: Ray declares a node dead after 5 failed health checks 3 s apart (10 s each when it does not answer).
LOST_NODE_SETTLE_S = 60.0

#: SLURM's job states (squeue, sacct and scontrol share them) as fipo's run states.
SLURM_STATES: dict[str, RunState] = {
    **dict.fromkeys(("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"), "pending"),
    **dict.fromkeys(("RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING", "SUSPENDED", "STOPPED"), "running"),
    "COMPLETED": "succeeded",
    **dict.fromkeys(("FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "SPECIAL_EXIT"), "failed"),
    **dict.fromkeys(("CANCELLED", "REVOKED", "PREEMPTED"), "cancelled"),
    **dict.fromkeys(("TIMEOUT", "DEADLINE"), "timeout"),
}


@dataclass(frozen=True)
class BatchJob:
    """What one batch script runs: one run, or one array task per run."""

    job_name: str
    run_dirs: Sequence[Path]
    cluster: ClusterConfig
    device: str
    """``trainer.device``: on ``cpu`` the job asks SLURM for no GPU and Ray offers logical ones."""
    output: Path
    """SLURM's ``--output`` pattern (``%j``, ``%A``, ``%a`` allowed)."""
    description: str
    command: str
    """The fipo command that rendered it, named in the script's header."""
    array: bool = False
    max_parallel: int | None = None


def job_cpus(cluster: ClusterConfig, device: str) -> int | None:
    """``--cpus-per-task`` of a training job: ``cluster.cpus_per_task``, else 2 per worker on CPU, else none."""
    if cluster.cpus_per_task is not None:
        return cluster.cpus_per_task
    return CPUS_PER_CPU_WORKER * cluster.gpus_per_node if device == "cpu" else None


def _sbatch_value(value: object) -> str:
    """A value for an ``#SBATCH`` line: sbatch reads these itself (no shell), honouring double quotes."""
    text = str(value)
    if any(char in text for char in '"\n\r'):
        raise UsageError(
            f"{text!r} cannot go on an #SBATCH line: it contains a double quote or a line break",
            hint="check the cluster keys (partition, account, qos, constraint, extra_sbatch) and the paths",
        )
    return f'"{text}"' if any(char.isspace() or char in "'$`\\#" for char in text) else text


def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.files("fipo_cli") / "templates")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        # Bash's ${#array[@]} would open a Jinja comment.
        comment_start_string="{##",
        comment_end_string="##}",
    )
    env.filters["q"] = lambda value: shlex.quote(str(value))
    env.filters["sbatch"] = _sbatch_value
    return env


def _render(template: str, *, job_name: str, cluster: ClusterConfig, output: Path, workdir: Path | None,
            **context: object) -> str:
    """A job template with what every job has (``slurm/_job_options.j2``); paths made absolute,
    since the job's working directory may differ."""
    return _environment().get_template(template).render(
        fipo_version=__version__,
        forwarded_secrets=sorted(SECRET_NAMES),
        job_name=job_name,
        cluster=cluster,
        output=Path(output).absolute(),
        workdir=(workdir or Path.cwd()).absolute(),
        **context,
    )


def render(job: BatchJob, *, workdir: Path | None = None, python: str | None = None) -> str:
    """The batch script of ``job``."""
    python = python or sys.executable
    return _render(
        TRAIN_TEMPLATE, job_name=job.job_name, cluster=job.cluster, output=job.output, workdir=workdir,
        description=job.description,
        command=job.command,
        array=job.array,
        max_parallel=job.max_parallel,
        run_dirs=[Path(run_dir).absolute() for run_dir in job.run_dirs],
        device=job.device,
        cpus_per_task=job_cpus(job.cluster, job.device),
        ray_cpus=head_cpus(job.device),
        node_lost_exit=NODE_LOST_EXIT,
        python=python,
        ray=ray_executable(python),
    )


def render_eval(*, job_name: str, cluster: ClusterConfig, gpus: int, output: Path, argv: Sequence[str],
                workdir: Path | None = None) -> str:
    """The batch script of ``fipo eval`` on one node: ``argv`` is the command to run there."""
    return _render(EVAL_TEMPLATE, job_name=job_name, cluster=cluster, output=output, workdir=workdir,
                   gpus=gpus, argv=list(argv))


def check_syntax(script: str) -> None:
    """``bash -n``: a rendered script that does not parse is fipo's bug, caught before sbatch sees it."""
    result = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    if result.returncode != 0:
        raise FipoError(f"the rendered batch script does not parse: {result.stderr.strip()}")


def _tool(name: str) -> str:
    where = shutil.which(name)
    if where is None:
        raise FipoError(
            f"{name} is not on PATH: the slurm launcher needs SLURM's client tools",
            hint="run fipo on the cluster's login node, or use --launcher local",
        )
    return where


#: Known sbatch refusals and what to do about them (matched case-insensitively).
_SBATCH_HINTS = (
    ("invalid partition", "list partitions with `sinfo -s`; set cluster.partition (experiment or ~/.config/fipo/cluster.yaml)"),
    ("invalid account", "list your accounts with `sacctmgr show assoc user=$USER format=account`; set cluster.account"),
    ("invalid qos", "list QoS names with `sacctmgr show qos format=name`; set cluster.qos"),
    ("time limit", "lower cluster.time_limit to the partition's limit (`sinfo -o '%P %l'`)"),
    ("requested node configuration is not available", "fewer nodes or GPUs per node, or another partition"),
    ("invalid generic resource", "check cluster.gpus_per_node against the nodes' GPUs (`sinfo -o '%P %G'`)"),
)


def submit(script: Path) -> str:
    """``sbatch --parsable SCRIPT``: the job id. sbatch's refusal reaches the user verbatim, with a hint."""
    result = subprocess.run([_tool("sbatch"), "--parsable", str(script)], capture_output=True, text=True)
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip()
        hint = next((fix for needle, fix in _SBATCH_HINTS if needle in said.lower()), None)
        raise FipoError(f"sbatch refused {script}:\n{said}",
                        hint=hint or "the script is kept there: fix the cluster keys and run again")
    # --parsable prints "JOBID" or "JOBID;CLUSTER".
    return result.stdout.strip().split(";")[0]


def job_nodes(env: Mapping[str, str]) -> list[str]:
    """The nodes of the job this runs in (``SLURM_JOB_NODELIST``, expanded by ``scontrol show hostnames``)."""
    out = _run_query(["scontrol", "show", "hostnames", env.get("SLURM_JOB_NODELIST", "")])
    return out.split() if out else []


def unresponsive_nodes(nodes: Sequence[str]) -> list[str]:
    """Those of ``nodes`` slurmctld marks as not responding (``*``) or down: dead, or about to be declared so."""
    out = _run_query(["sinfo", "--noheader", "--Node", f"--nodes={','.join(nodes)}", "--format=%N %T"]) or ""
    states = dict(line.split(maxsplit=1) for line in out.splitlines() if len(line.split()) == 2)
    return [node for node in nodes if states.get(node, "").endswith("*") or states.get(node, "").startswith("down")]


def _run_query(argv: list[str]) -> str | None:
    """A query's output, or None when the tool is missing or refuses (accounting off, job purged)."""
    if shutil.which(argv[0]) is None:
        return None
    result = subprocess.run(argv, capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


def _job_state(slurm_state: str, exit_code: str | None = None) -> JobState | None:
    word = slurm_state.split()[0].rstrip("+") if slurm_state.strip() else ""  # "CANCELLED by 0", "CANCELLED+"
    if word not in SLURM_STATES:
        return None
    code = None
    if exit_code and ":" in exit_code:
        status, signal = exit_code.split(":", 1)
        code = int(status) if status.isdigit() and signal in ("0", "") else (128 + int(signal) if signal.isdigit() else None)
    return JobState(SLURM_STATES[word], word, code)


def squeue_states() -> dict[str, JobState]:
    """Every job of this user that slurmctld still remembers, array tasks one per line."""
    out = _run_query(["squeue", "--noheader", "--array", "--states=all", f"--user={getpass.getuser()}", "--format=%i|%T"])
    states = {}
    for line in (out or "").splitlines():
        job_id, _, slurm_state = line.strip().partition("|")
        parsed = _job_state(slurm_state)
        if parsed:
            states[job_id] = parsed
    return states


def sacct_states(job_ids: Collection[str]) -> dict[str, JobState]:
    """Jobs from SLURM's accounting database; empty when accounting is off."""
    out = _run_query(["sacct", "--noheader", "--parsable2", "--allocations", "--format=JobID,State,ExitCode",
                      f"--jobs={','.join(job_ids)}"])
    states = {}
    for line in (out or "").splitlines():
        parts = line.split("|")
        if len(parts) == 3 and (parsed := _job_state(parts[1], parts[2])):
            states[parts[0]] = parsed
    return states


def scontrol_states(job_ids: Collection[str]) -> dict[str, JobState]:
    """Jobs slurmctld still holds (``MinJobAge``), one ``scontrol show job`` each."""
    states = {}
    for job_id in job_ids:
        out = _run_query(["scontrol", "--oneliner", "show", "job", job_id])
        fields = dict(item.split("=", 1) for item in (out or "").split() if "=" in item)
        if "JobState" in fields and (parsed := _job_state(fields["JobState"], fields.get("ExitCode"))):
            states[job_id] = parsed
    return states


def job_states(job_ids: Collection[str]) -> dict[str, JobState]:
    """Where each job stands: squeue first, then accounting (sacct), then ``scontrol show job``."""
    wanted = set(job_ids)
    if not wanted:
        return {}
    states = {job_id: state for job_id, state in squeue_states().items() if job_id in wanted}
    for query in (sacct_states, scontrol_states):
        missing = wanted - states.keys()
        if not missing:
            break
        states |= {job_id: state for job_id, state in query(sorted(missing)).items() if job_id in missing}
    return states


def cancel(job_ids: Collection[str]) -> None:
    """``scancel`` the jobs; its refusal reaches the user verbatim."""
    if not job_ids:
        return
    result = subprocess.run([_tool("scancel"), *job_ids], capture_output=True, text=True)
    if result.returncode != 0:
        raise FipoError(f"scancel {' '.join(job_ids)} failed:\n{(result.stderr or result.stdout).strip()}")


class SlurmSubmission(Submission):
    """One batch script: one run's job, or a sweep's job array (one task per run)."""

    def __init__(self, batch: Batch, job: BatchJob | None, script: str | None) -> None:
        super().__init__(batch)
        self.job, self._script = job, script
        self.saved: Path | None = None
        """Where :meth:`SlurmLauncher.submit` saved the script."""

    @property
    def script(self) -> str | None:
        return self._script

    def script_path(self) -> Path:
        """Where the script is saved: the run's ``job.sbatch``, or the sweep's next ``array-N.sbatch``."""
        if not self.batch.is_sweep:
            return self.batch.jobs[0].run_dir / SCRIPT_FILE
        number = 1
        while array_script_path(self.batch.sweep_dir, number).exists():
            number += 1
        return array_script_path(self.batch.sweep_dir, number)

    def describe(self) -> str:
        if self._script is None:
            return ""
        if self.batch.is_sweep:
            return f"array script ({self.batch.sweep_dir}/array-N{SCRIPT_SUFFIX}):\n{self._script}"
        return f"batch script ({self.script_path()}):\n{self._script}"

    def manifest_record(self, submitted: Sequence[tuple[RunJob, Submitted]]) -> dict | None:
        array_job = submitted[0][1].job_id.split("_")[0]
        return {"job_id": array_job, "script": self.saved.name if self.saved else None,
                "runs": [job.run_dir.name for job, _ in submitted], "submitted_at": utc_now()}


class SlurmLauncher(Launcher):
    name = "slurm"
    allocates_gpus = True
    scheduler_records_stops = True

    def plan(self, batch: Batch, inherited: Mapping[str, str]) -> SlurmSubmission:
        """The batch script, rendered and checked with ``bash -n`` (None when the batch has no run)."""
        if not batch.jobs:
            return SlurmSubmission(batch, None, None)
        first = batch.jobs[0]
        output = (batch.sweep_dir / SWEEP_LOGS_DIR / ARRAY_TASK_LOG) if batch.is_sweep else first.run_dir / SLURM_LOG
        job = BatchJob(
            job_name=batch.name,
            run_dirs=[job.run_dir for job in batch.jobs],
            cluster=first.cluster,
            device=first.experiment.trainer.device,
            output=output,
            description=batch.description,
            command=batch.command,
            array=batch.is_sweep,
            max_parallel=batch.max_parallel,
        )
        script = render(job)
        check_syntax(script)
        return SlurmSubmission(batch, job, script)

    def submit(self, submission: Submission, hooks: Hooks) -> Outcome:
        """Create the runs, save the script and ``sbatch`` it: one job, or one job array for a sweep.

        If sbatch is missing or refuses, the runs this created, the sweep's logs folder and its
        array script are removed again: nothing is left for ``fipo status`` to show as ``created``.
        """
        assert isinstance(submission, SlurmSubmission) and submission.script is not None
        batch = submission.batch
        path = submission.script_path()
        logs = batch.sweep_dir / SWEEP_LOGS_DIR if batch.is_sweep else None
        with removed_on_failure(lambda: [*filter(None, [logs and first_missing(logs)]), *hooks.create(batch.jobs)]):
            if logs is not None:
                logs.mkdir(parents=True, exist_ok=True)
            try:
                atomic_write_text(path, submission.script)
                job_id = submit(path)
            except BaseException:
                if batch.is_sweep:
                    path.unlink(missing_ok=True)
                raise
        submission.saved = path
        outcome = Outcome()
        for index, job in enumerate(batch.jobs):
            if batch.is_sweep:
                task = f"{job_id}_{index}"
                handed = Submitted(task, array_task_log(batch.sweep_dir, task), index)
            else:
                handed = Submitted(job_id, slurm_log(job.run_dir, job_id))
            record_submission(job, handed)
            hooks.submitted(job, handed)
            outcome.submitted.append((job, handed))
        if batch.is_sweep:
            outcome.lines.append(f"submitted {plural(len(batch.jobs), 'run')} as SLURM job array {job_id} "
                                 f"(logs in {logs})")
        else:
            job, handed = outcome.submitted[0]
            outcome.lines += [f"submitted run {job.reference} as SLURM job {job_id}",
                              f"  job log:     {handed.scheduler_log}",
                              f"  trainer log: {job.run_dir / LOG_FILE}"]
        return outcome

    def run_trainer(self, job: RunJob, inherited: Mapping[str, str], screen: Screen | None = None) -> int:
        """The trainer on the job's head node; when it fails in a job of several nodes, whether a node left.

        A node that dies (power, network, every process killed) fails the trainer within seconds, and
        slurmctld notices only after ``SlurmdTimeout``: a job that ended first would end failed, and SLURM
        would never requeue it. So a failed trainer is followed by a look at the job's Ray cluster; if a
        node left it, the run records that and the task exits with :data:`NODE_LOST_EXIT`, on which the
        batch script waits for SLURM to requeue the job (``--requeue``): the run resumes from its last
        checkpoint once the node, or another, is back.
        """
        exit_code = super().run_trainer(job, inherited, screen)
        if exit_code == 0 or exit_code > 128 or job.cluster.nodes < 2 or not inherited.get("RAY_ADDRESS"):
            return exit_code
        nodes = job_nodes(inherited)
        print(f"fipo: the trainer exited with code {exit_code}; checking for up to {LOST_NODE_SETTLE_S:g} s that "
              f"every node of the job ({', '.join(nodes)}) is still there", file=sys.stderr, flush=True)
        # In a process of its own: ray.init would make this one exit on SLURM's SIGTERM (the requeue's),
        # and the run, stopped by the scheduler, must keep its state.
        asked_at = time.monotonic()
        asked = subprocess.run([sys.executable, "-m", "fipo_cli.launch.ray_wait", "--address", inherited["RAY_ADDRESS"],
                                "--lost-within", str(LOST_NODE_SETTLE_S), *nodes],
                               env=dict(inherited), stdout=subprocess.PIPE, check=False) if nodes else None
        lost = asked.stdout.decode().split()[1:] if asked is not None and asked.stdout.startswith(b"lost:") else []
        # Ray's client exits its process when the head is gone for good (SLURM ends every step of a job
        # that lost a node, the head's among them): then slurmctld's word alone, until the settle time.
        while not lost and time.monotonic() - asked_at < LOST_NODE_SETTLE_S:
            lost = unresponsive_nodes(nodes)
            if not lost:
                time.sleep(1.0)
        if not lost:
            return exit_code
        reason = (f"{plural(len(lost), 'node')} left the job's Ray cluster under the trainer ({', '.join(lost)}; "
                  f"the trainer exited with code {exit_code})")
        print(f"fipo: {reason}: the job waits for SLURM to requeue it; the run then resumes from its last "
              "checkpoint", file=sys.stderr, flush=True)
        status = read_status(job.run_dir)
        status.reason = reason
        write_status(job.run_dir, status)
        return NODE_LOST_EXIT

    def refresh(self, statuses: Sequence[RunStatus]) -> list[JobState | None]:
        found = job_states({status.job_id for status in statuses if status.job_id})
        return [found.get(status.job_id) if status.job_id else None for status in statuses]

    def cancel(self, statuses: Sequence[RunStatus]) -> None:
        cancel(sorted({status.job_id for status in statuses if status.job_id}))

    def preflight(self, experiment: Experiment, env: Mapping[str, str]) -> list[tuple[str, str, str]]:
        """SLURM's client tools, where fipo submits."""
        checks = []
        for tool in ("sbatch", "squeue"):
            where = shutil.which(tool, path=env.get("PATH"))
            checks.append((tool, "pass" if where else "fail", where or "not found on PATH: run fipo on the cluster's login node"))
        return checks
