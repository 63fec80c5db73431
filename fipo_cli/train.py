"""Training runs: the plan of one run (pure), and carrying it out locally or as a SLURM job.

A run lives in ``experiments/EXP/runs/RUN/``:

    config.yaml     the resolved experiment config the run trains with
    command.json    the exact trainer command and its working directory
    env.json        the variables fipo sets and the relevant inherited ones, secrets masked
    train.log       everything the trainer printed
    metrics.jsonl   verl's file logger (VERL_FILE_LOGGER_PATH): one {"step", "data"} per line
    metrics.earlier.jsonl   the steps of earlier attempts (before a resume or requeue)
    tracking_config.json   the resolved config and the verl overrides, for W&B's run config
    checkpoints/    verl's checkpoints (trainer.default_local_dir); --resume continues from here
    hydra/          verl's Hydra files (its resolved config, main_ppo.log)
    ray.log         with the local launcher: the output of the run's private Ray head
    job.sbatch      with the slurm launcher: the batch script, and slurm-JOB.out its log
    status.json     the run's state, written atomically

Every launcher runs the trainer through :func:`execute_run`: the local one in this process,
the slurm one inside the job (``fipo_cli.run_task``), after the batch script has started
Ray on the job's nodes, and the ray one inside a job of a Ray cluster that already runs.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fipo_cli import __version__, config, experiments, local_assets, verl_overrides
from fipo_cli.config import Experiment
from fipo_cli.errors import UsageError
from fipo_cli.experiments import ExperimentDir
from fipo_cli.launch import ray_job, slurm
from fipo_cli.loss import knobs
from fipo_cli.runs import (
    FINAL_STATES,
    STATUS_FILE,
    RunStatus,
    atomic_write_json,
    atomic_write_text,
    create_run_dir,
    mask_secrets,
    new_run_name,
    read_status,
    utc_now,
    write_status,
)
from fipo_cli.text import plural
from fipo_cli.training import horizon
from fipo_cli.training.horizon import Horizon
from fipo_cli.verl_adapter import attention as attention_plan
from fipo_cli.verl_adapter import inert
from fipo_cli.verl_adapter.attention import AttentionPlan
from fipo_cli.wandb_identity import (
    TRACKING_CONFIG_ENV,
    TRACKING_CONFIG_FILE,
    wandb_env,
    wandb_link,
    wandb_run_name,
    wandb_sync_command,
)

CONFIG_FILE = "config.yaml"
COMMAND_FILE = "command.json"
ENV_FILE = "env.json"
LOG_FILE = "train.log"
METRICS_FILE = "metrics.jsonl"
#: verl's file logger truncates its file when it starts, so a resumed or requeued run first
#: moves the steps logged so far here (appended; readers let a step's later value win).
EARLIER_METRICS_FILE = "metrics.earlier.jsonl"
CHECKPOINT_DIR = "checkpoints"
HYDRA_DIR = "hydra"
RAY_LOG_FILE = "ray.log"
SCRIPT_FILE = "job.sbatch"
SLURM_OUTPUT = "slurm-%j.out"
#: Inherited variables worth recording next to fipo's own (values of secrets are masked).
RECORDED_PREFIXES = ("WANDB_", "HF_", "HUGGING_FACE_", "NCCL_", "CUDA_VISIBLE_DEVICES", "RAY_", "VLLM_")
#: Exit codes of a trainer stopped by Ctrl-C (SIGINT) or SIGTERM.
INTERRUPTED = (130, 143)


@dataclass(frozen=True)
class TrainPlan:
    """Everything about one run, computed before anything is written or started."""

    experiment: Experiment
    experiment_dir: ExperimentDir
    run_name: str
    resume: bool
    command: list[str]
    overrides: list[str]
    env: dict[str, str] = field(default_factory=dict)
    """The variables fipo sets for the trainer, on top of its own environment."""
    horizon: Horizon | None = None
    """How long it trains (:mod:`fipo_cli.training.horizon`)."""
    attention: AttentionPlan | None = None
    """Which attention it builds the model with, as far as this machine can tell."""

    @property
    def run_dir(self) -> Path:
        return self.experiment_dir.runs / self.run_name

    @property
    def warnings(self) -> list[str]:
        """What the user should know before training: keys verl ignores here, FIPO knobs the official
        loss would ignore, a horizon the data cuts short, an attention this machine cannot check."""
        algorithm = self.experiment.algorithm
        found = [item.warning() for item in inert.inert_keys(self.experiment)]
        found += knobs.extension_warnings(algorithm.fipo_knobs()) if algorithm.name == "fipo" else []
        found += self.horizon.warnings() if self.horizon else []
        if self.attention is not None and self.attention.here_choice is None:
            found.append(f"{self.attention.describe()}: the training nodes must have flash_attn "
                         f"({attention_plan.INSTALL_FLASH})")
        return found

    def recorded_env(self, inherited: Mapping[str, str]) -> dict[str, str]:
        """fipo's variables plus the relevant inherited ones, with secrets masked."""
        relevant = {k: v for k, v in inherited.items() if k.startswith(RECORDED_PREFIXES)}
        return mask_secrets({**relevant, **self.env})

    def to_json(self, inherited: Mapping[str, str]) -> dict[str, Any]:
        return {
            "command": self.command,
            "overrides": self.overrides,
            "env": self.recorded_env(inherited),
            "run_dir": str(self.run_dir.absolute()),
            "warnings": self.warnings,
            "horizon": self.horizon.to_json() if self.horizon else None,
            "attention": self.attention.to_json() if self.attention else None,
            "verl_keys": dict(self.experiment.verl),
        }


def plan_run(
    experiment: Experiment,
    experiment_dir: ExperimentDir,
    run_name: str,
    *,
    resume: bool = False,
    inherited: Mapping[str, str] | None = None,
) -> TrainPlan:
    """The plan of one run: the trainer command, verl's overrides and the environment."""
    inherited = os.environ if inherited is None else inherited
    run_dir = (experiment_dir.runs / run_name).absolute()
    tracking = wandb_env(experiment, run_name, run_dir, inherited)
    env = {
        "VERL_FILE_LOGGER_PATH": str(run_dir / METRICS_FILE),
        "PYTHONUNBUFFERED": "1",  # the trainer's output reaches the log as it is printed
        "HYDRA_FULL_ERROR": "1",
        **verl_overrides.device_env(experiment.trainer.device, inherited, fsdp2=verl_overrides.uses_fsdp2(experiment)),
        **tracking,
    }
    overrides = verl_overrides.experiment_overrides(
        experiment,
        experiment_name=wandb_run_name(experiment, run_name),
        checkpoint_dir=run_dir / CHECKPOINT_DIR,
        hydra_dir=run_dir / HYDRA_DIR,
        wandb=bool(tracking),
        worker_env=env,
    )
    return TrainPlan(
        experiment=experiment,
        experiment_dir=experiment_dir,
        run_name=run_name,
        resume=resume,
        command=verl_overrides.trainer_command(experiment.trainer.entrypoint, overrides),
        overrides=overrides,
        env=env,
        horizon=horizon.plan(experiment),
        attention=attention_plan.plan(experiment),
    )


def plan_training(
    reference: str | None,
    model: str | None,
    algorithm: str,
    assignments: Mapping[str, Any],
    resume: str | None = None,
) -> TrainPlan:
    """The plan of ``fipo train``: an experiment (by name or path) or a recipe, a new run or a resumed one."""
    if (reference is None) == (model is None):
        raise UsageError(
            "give an experiment or --model, not both and not neither",
            hint="fipo train NAME, or fipo train --model qwen2.5-0.5b",
        )
    if reference is not None:
        where = experiments.find_experiment(reference)
    else:
        where = experiments.recipe_experiment_dir(model, algorithm)
    if resume:
        return plan_run(resumed_experiment(where, resume, assignments), where, resume, resume=True)
    return plan_run(config.load(where.config_file, assignments), where, new_run_name(where.runs))


def resumed_experiment(experiment_dir: ExperimentDir, run_name: str, assignments: Mapping[str, Any]) -> Experiment:
    """The config a run was started with (from its directory), with new overrides applied."""
    run_dir = experiment_dir.runs / run_name
    if not (run_dir / CONFIG_FILE).is_file():
        runs = sorted(p.name for p in experiment_dir.runs.iterdir()) if experiment_dir.runs.is_dir() else []
        raise UsageError(
            f"--resume {run_name!r}: no such run in {experiment_dir.runs}",
            hint=f"runs of this experiment: {', '.join(runs)}" if runs else "this experiment has no runs yet",
        )
    return config.load(run_dir / CONFIG_FILE, assignments)


def require_local_resources(experiment: Experiment) -> None:
    """Stop before anything is written when this machine cannot run the experiment locally."""
    from fipo_cli.launch.local import require_gpus

    cluster = experiment.cluster
    if cluster.nodes > 1:
        raise UsageError(
            f"cluster.nodes={cluster.nodes}: the local launcher runs on this machine only",
            hint="use `--launcher slurm`, or set nodes=1",
        )
    if experiment.trainer.device == "cuda":
        layout = f"{plural(cluster.nodes, 'node')} × {plural(cluster.gpus_per_node, 'GPU')} per node"
        require_gpus(cluster.total_gpus, layout=layout)
        attention = attention_plan.plan(experiment)
        if attention.here_choice is None or (attention.choice == attention_plan.FLASH and not attention.here.imports):
            raise UsageError(
                f"{attention.describe()}: this machine trains the run, and flash_attn does not import here",
                hint=f"{attention_plan.INSTALL_FLASH}; or set model.attn_implementation: sdpa "
                     "with trainer.sequence_parallel_size: 1",
            )


def run_locally(plan: TrainPlan, inherited: Mapping[str, str] | None = None) -> tuple[int, TrainPlan]:
    """Create (or reuse, on resume) the run directory, run the trainer here, record how it ended.

    Returns the trainer's exit code and the plan of the run directory claimed (a new run takes
    the next free name when another fipo claimed the planned one first).
    """
    inherited = dict(os.environ if inherited is None else inherited)
    require_local_resources(plan.experiment)
    previous = read_status(plan.run_dir) if plan.resume else None
    plan = prepare_run(plan, inherited)
    status = RunStatus(
        state="running",
        launcher="local",
        created_at=previous.created_at if previous else utc_now(),
        resumed_from=plan.run_name if plan.resume else None,
    )
    return execute_run(plan, status, inherited), plan


def prepare_run(plan: TrainPlan, inherited: Mapping[str, str]) -> TrainPlan:
    """Claim the run's directory (a new run) and record its config, command and environment.

    Returns the plan of the directory claimed: if another fipo took the planned name first,
    this run takes the next one.
    """
    if not plan.resume:
        claimed = create_run_dir(plan.experiment_dir.runs)
        if claimed.name != plan.run_name:
            plan = plan_run(plan.experiment, plan.experiment_dir, claimed.name, inherited=inherited)
    record_run(plan, inherited)
    return plan


def execute_run(plan: TrainPlan, status: RunStatus, inherited: Mapping[str, str]) -> int:
    """Run the trainer of a prepared run on this machine, recording its state before and after.

    Used by the local launcher and, inside a SLURM job, by ``fipo_cli.run_task``. Built-in
    assets the run names (``builtin:``) are built first. A SLURM run stopped by a signal keeps its
    state: SLURM knows why (cancel, time limit, preemption and requeue) and ``fipo status`` asks it.
    """
    status.state = "running"
    status.started_at = utc_now()
    status.finished_at = status.exit_code = None
    status.wandb_run_id = plan.env.get("WANDB_RUN_ID")
    status.wandb_url = wandb_link(plan.experiment.tracking, plan.env)
    write_status(plan.run_dir, status)
    keep_earlier_metrics(plan.run_dir)
    try:
        local_assets.ensure(plan.experiment.asset_paths(), env=inherited)
        exit_code = _run_trainer(plan, status.launcher, inherited)
    except BaseException as error:
        status.state = "cancelled" if isinstance(error, KeyboardInterrupt) else "failed"
        status.finished_at = utc_now()
        write_status(plan.run_dir, status)
        raise
    if status.launcher == "slurm" and exit_code > 128:  # stopped by a signal: SLURM records why
        return exit_code
    status.state = "succeeded" if exit_code == 0 else "cancelled" if exit_code in INTERRUPTED else "failed"
    status.exit_code = exit_code
    status.finished_at = utc_now()
    write_status(plan.run_dir, status)
    return exit_code


def _run_trainer(plan: TrainPlan, launcher: str, inherited: Mapping[str, str]) -> int:
    """The trainer's exit code. A local run gets a Ray head of its own; in a SLURM job the batch
    script has started the job's Ray cluster, which ``RAY_ADDRESS`` names."""
    from fipo_cli.launch.local import run_local

    env = {**inherited, **plan.env}
    log_path = plan.run_dir / LOG_FILE
    if launcher != "local":
        return run_local(plan.command, env=env, log_path=log_path)
    from fipo_cli.launch.ray_head import head_cpus, private_ray_head

    device = plan.experiment.trainer.device
    with private_ray_head(gpus=plan.experiment.cluster.gpus_per_node, cpus=head_cpus(device), env=env,
                          log_path=plan.run_dir / RAY_LOG_FILE) as ray_env:
        return run_local(plan.command, env={**env, **ray_env}, log_path=log_path)


#: A line that names an exception: where a trainer's error ends.
_ERROR_LINE = re.compile(r"\b[\w.]*(Error|Exception|Interrupt)\b")
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LOG_TAIL_BYTES = 256 * 1024


def error_excerpt(log_path: Path, count: int = 12) -> list[str]:
    """The last lines of the trainer's log up to the last line that names an exception (the
    error verl or Ray ended with), or simply its last lines; [] without a log."""
    try:
        with open(log_path, "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - _LOG_TAIL_BYTES))
            tail = log.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    lines = [line.rstrip() for line in _ANSI_ESCAPE.sub("", tail).replace("\r", "\n").splitlines() if line.strip()]
    errors = [number for number, line in enumerate(lines) if _ERROR_LINE.search(line)]
    end = errors[-1] + 1 if errors else len(lines)
    return lines[max(0, end - count):end]


def outcome_report(plan: TrainPlan, exit_code: int) -> list[str]:
    """What fipo says after a local run, after the trainer's own output: how it ended and where
    everything is; for a failure, the end of the error from the trainer's log."""
    from fipo_cli.eval.checkpoints import checkpoint_steps
    from fipo_cli.registry import last_step

    run_dir, reference = plan.run_dir.absolute(), f"{plan.experiment_dir.path.name}/{plan.run_name}"
    log = run_dir / LOG_FILE
    if exit_code == 0:
        steps = checkpoint_steps(run_dir)
        last = last_step(run_dir)
        planned = plan.horizon.steps if plan.horizon else None
        early = ended_early(plan, last)
        lines = [
            f"fipo: run {reference} succeeded (last step {last}" + (f" of {planned} planned)" if planned else ")"),
            *([f"  {early}"] if early else []),
            f"  directory:   {run_dir}",
            f"  log:         {log}",
            f"  metrics:     {run_dir / METRICS_FILE}",
            f"  checkpoints: {run_dir / CHECKPOINT_DIR}"
            + (f" (steps {', '.join(map(str, steps))})" if steps else " (none saved)"),
        ]
        sync = wandb_sync_command(run_dir)
        if sync:
            lines.append(f"  W&B:         offline; to upload the run: {sync}")
        elif plan.env.get("WANDB_RUN_ID"):
            lines.append(f"  W&B:         {wandb_link(plan.experiment.tracking, plan.env)}")
        lines.append(f"  next:        fipo eval aime24 --run {reference}   ·   fipo report {plan.experiment_dir.path.name}")
        return lines
    if exit_code in INTERRUPTED:
        return [
            f"fipo: run {reference} was stopped (exit code {exit_code}) and is recorded as cancelled",
            f"  continue it: fipo train {plan.experiment_dir.path.name} --resume {plan.run_name}",
        ]
    return [
        f"fipo: training failed: run {reference} exited with code {exit_code} and is recorded as failed",
        f"  directory: {run_dir}",
        f"  log:       {log}",
        "  the error, as the log ends:",
        *(f"    {line}" for line in error_excerpt(log)),
    ]


def ended_early(plan: TrainPlan, last_step: int | None) -> str | None:
    """Why a run that succeeded after ``last_step`` stopped short of its planned steps; None if it did not.
    The horizon is planned again here, so that the rows counted are those the run trained on."""
    if plan.horizon is None or plan.horizon.steps_setting is None:
        return None
    return horizon.plan(plan.experiment).ended_early(last_step)


def keep_earlier_metrics(run_dir: Path) -> None:
    """Append the metrics a previous attempt logged to :data:`EARLIER_METRICS_FILE`, before verl truncates them.

    A crash between the append and the removal leaves those steps in both files, which
    readers tolerate (a step's later value wins); it never loses one.
    """
    current = run_dir / METRICS_FILE
    if not current.is_file() or current.stat().st_size == 0:
        return
    data = current.read_bytes()
    with open(run_dir / EARLIER_METRICS_FILE, "ab") as earlier:
        earlier.write(data if data.endswith(b"\n") else data + b"\n")
        earlier.flush()
        os.fsync(earlier.fileno())
    current.unlink()


def batch_job(plan: TrainPlan) -> slurm.BatchJob:
    """The SLURM job of one run."""
    return slurm.BatchJob(
        job_name=f"fipo-{plan.experiment.name}-{plan.run_name}",
        run_dirs=[plan.run_dir],
        cluster=plan.experiment.cluster,
        device=plan.experiment.trainer.device,
        output=plan.run_dir / SLURM_OUTPUT,
        description=f"run {plan.run_name} of experiment {plan.experiment.name}",
        command="train",
    )


def slurm_script(plan: TrainPlan) -> str:
    """The run's batch script, checked with ``bash -n``."""
    script = slurm.render(batch_job(plan))
    slurm.check_syntax(script)
    return script


def created_status(plan: TrainPlan, launcher: str, previous: RunStatus | None, sweep: str | None = None) -> RunStatus:
    """The record of a run about to be launched (a run created before keeps its creation time)."""
    return RunStatus(
        state="created",
        launcher=launcher,
        created_at=previous.created_at if previous else utc_now(),
        sweep=sweep,
        wandb_run_id=plan.env.get("WANDB_RUN_ID"),
        wandb_url=wandb_link(plan.experiment.tracking, plan.env),
        resumed_from=plan.run_name if plan.resume else None,
    )


def _refuse_active(plan: TrainPlan) -> RunStatus | None:
    """The status of the run a resume continues; a run still queued or running is refused."""
    previous = read_status(plan.run_dir) if plan.resume else None
    if previous is not None and previous.state in ("pending", "running"):
        raise UsageError(
            f"run {plan.run_name} is {previous.state}" + (f" as job {previous.job_id}" if previous.job_id else ""),
            hint=f"wait for it, or stop it first: fipo cancel {plan.experiment_dir.path.name}/{plan.run_name}",
        )
    return previous


def submit_slurm(plan: TrainPlan, inherited: Mapping[str, str] | None = None) -> tuple[TrainPlan, RunStatus]:
    """Create (or reuse, on resume) the run directory, save its batch script there and sbatch it.

    A new run whose submission sbatch refuses is removed again: nothing half-made stays behind.
    """
    inherited = dict(os.environ if inherited is None else inherited)
    previous = _refuse_active(plan)
    plan = prepare_run(plan, inherited)
    script = plan.run_dir / SCRIPT_FILE
    try:
        atomic_write_text(script, slurm_script(plan))
        write_status(plan.run_dir, created_status(plan, "slurm", previous))
        job_id = slurm.submit(script)
    except BaseException:
        if not plan.resume:
            shutil.rmtree(plan.run_dir, ignore_errors=True)
        raise
    return plan, record_submission(plan.run_dir, job_id, plan.run_dir / SLURM_OUTPUT.replace("%j", job_id))


def record_submission(run_dir: Path, job_id: str, scheduler_log: Path | None, array_index: int | None = None,
                      ray_address: str | None = None) -> RunStatus:
    """Mark a run pending as ``job_id``, unless its job already started and said so itself."""
    status = read_status(run_dir)
    if status.state in ("created", *FINAL_STATES):
        status.state = "pending"
        status.exit_code = status.started_at = status.finished_at = None
    status.job_id, status.array_index, status.ray_address = job_id, array_index, ray_address
    status.scheduler_log = str(scheduler_log.absolute()) if scheduler_log else None
    write_status(run_dir, status)
    return status


def ray_submission(plan: TrainPlan, inherited: Mapping[str, str]) -> ray_job.JobSubmission:
    """The Ray job of one run (``--launcher ray``)."""
    experiment = plan.experiment
    reward = experiment.algorithm.reward_function
    return ray_job.plan_submission(
        address=ray_job.resolve_address(experiment.cluster.ray_address, inherited),
        run_dir=plan.run_dir,
        record=[CONFIG_FILE, COMMAND_FILE, ENV_FILE, TRACKING_CONFIG_FILE, STATUS_FILE],
        reference=f"{plan.experiment_dir.path.name}/{plan.run_name}",
        run_root=experiment.cluster.ray_run_root,
        # What the job reads by a path relative to the project: the data, a reward function's
        # file, a custom entrypoint's script.
        inputs=[*experiment.asset_paths(), *([reward.partition(":")[0]] if reward else []),
                *experiment.trainer.entrypoint[1:]],
        inherited=inherited,
        fipo_version=__version__,
        forward_secrets=experiment.cluster.ray_forward_secrets,
    )


def submit_ray(plan: TrainPlan, inherited: Mapping[str, str] | None = None) -> tuple[TrainPlan, RunStatus]:
    """Create (or reuse, on resume) the run directory and submit it as a job of a running Ray cluster.

    The cluster is asked first, so an unreachable one leaves nothing behind; a new run whose job the
    cluster refuses is removed again.
    """
    inherited = dict(os.environ if inherited is None else inherited)
    previous = _refuse_active(plan)
    # The submission is planned before anything is written: a bad address or inputs too large are refused first.
    client = ray_job.connect(ray_submission(plan, inherited).address)
    plan = prepare_run(plan, inherited)
    try:
        write_status(plan.run_dir, created_status(plan, "ray", previous))
        status = submit_ray_job(plan, client, inherited)
    except BaseException:
        if not plan.resume:
            shutil.rmtree(plan.run_dir, ignore_errors=True)
        raise
    return plan, status


def submit_ray_job(plan: TrainPlan, client, inherited: Mapping[str, str]) -> RunStatus:
    """Submit a created run as a job through ``client``; its status, pending.

    The job id goes into the record before the record travels, so the job's own task keeps it.
    """
    submission = ray_submission(plan, inherited)
    status = read_status(plan.run_dir)
    status.job_id, status.ray_address = submission.submission_id, submission.address
    write_status(plan.run_dir, status)
    job_id = ray_job.submit(client, submission)
    return record_submission(plan.run_dir, job_id, None, ray_address=submission.address)


def record_run(plan: TrainPlan, inherited: Mapping[str, str]) -> None:
    """Write the run directory's config, command and (masked) environment."""
    run_dir = plan.run_dir
    (run_dir / CHECKPOINT_DIR).mkdir(exist_ok=True)
    atomic_write_text(run_dir / CONFIG_FILE, plan.experiment.to_yaml())
    atomic_write_json(run_dir / COMMAND_FILE, {"command": plan.command, "cwd": str(Path.cwd())})
    atomic_write_json(run_dir / ENV_FILE, plan.recorded_env(inherited))
    if TRACKING_CONFIG_ENV in plan.env:
        atomic_write_json(
            Path(plan.env[TRACKING_CONFIG_ENV]),
            {"fipo": plan.experiment.to_dict(), "fipo_verl_overrides": plan.overrides},
        )


def describe(plan: TrainPlan, inherited: Mapping[str, str]) -> str:
    """The plan for people: the command as a shell script would write it, and the environment."""
    import shlex

    head = [shlex.quote(part) for part in plan.command[: len(plan.command) - len(plan.overrides)]]
    lines = [f"run directory: {plan.run_dir}{' (resumed)' if plan.resume else ''}"]
    lines += [plan.horizon.describe()] if plan.horizon else []
    lines += [f"attention: {plan.attention.describe()}"] if plan.attention else []
    if plan.experiment.verl:
        lines.append("verl keys (applied after fipo's mapping, the last overrides below):")
        lines += [f"  {config.VERL_PREFIX}{key}={value!r}" for key, value in plan.experiment.verl.items()]
    lines.append("environment (secrets masked):")
    lines += [f"  {key}={value}" for key, value in sorted(plan.recorded_env(inherited).items())]
    lines.append("command:")
    lines.append("  " + " ".join(head) + " \\")
    lines += [f"    {shlex.quote(override)} \\" for override in plan.overrides[:-1]]
    lines += [f"    {shlex.quote(override)}" for override in plan.overrides[-1:]]
    return "\n".join(lines)


def check_with_verl(plan: TrainPlan) -> list[str] | None:
    """Compose the plan's overrides in the installed verl's config, its ``verl:`` keys checked first;
    the warnings about those keys, or None when verl is not installed here."""
    from fipo_cli import verl_compose
    from fipo_cli.verl_adapter import verl_keys

    return verl_compose.check_points({"": plan.overrides}, {"": verl_keys.section_keys(plan.experiment.verl)})

