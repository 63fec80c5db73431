"""Training runs: the plan of one run (pure), and carrying it out through its launcher.

A run lives in ``experiments/EXP/runs/RUN/`` (every file is named in :mod:`fipo_cli.runs.layout`).
:func:`plan_run` computes everything about it before anything is written: the trainer command,
verl's overrides and the environment. :func:`launch` claims and records the run and hands it to
the launcher of ``cluster.launcher`` (:mod:`fipo_cli.launch`).

Every launcher runs the trainer through :func:`execute_run`: the local one in this process,
the slurm one inside the job (``fipo_cli.training.run_task``), after the batch script has started
Ray on the job's nodes, and the ray one inside a job of a Ray cluster that already runs.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fipo_cli.assets import builtin as local_assets
from fipo_cli.core.clock import utc_now
from fipo_cli.core.errors import UsageError
from fipo_cli.core.files import atomic_write_json, atomic_write_text
from fipo_cli.core.processes import this_process
from fipo_cli.core.secrets import mask_secrets
from fipo_cli.experiment import config
from fipo_cli.experiment.config import Experiment
from fipo_cli.launch import launchers
from fipo_cli.launch.base import Batch, Hooks, Launcher, Outcome, RunJob, Submission
from fipo_cli.launch.launchers import launcher_for
from fipo_cli.launch.process import INTERRUPTED
from fipo_cli.launch.watch import Screen
from fipo_cli.loss import knobs
from fipo_cli.runs import experiments
from fipo_cli.runs.experiments import ExperimentDir
from fipo_cli.runs.layout import (
    CHECKPOINT_DIR,
    COMMAND_FILE,
    ENV_FILE,
    HYDRA_DIR,
    LOG_FILE,
    METRICS_FILE,
    RUN_CONFIG_FILE,
    SAMPLES_DIR,
)
from fipo_cli.runs.metrics import keep_earlier_metrics
from fipo_cli.runs.registry import RunEntry
from fipo_cli.runs.status import RunState, RunStatus, create_run_dir, new_run_name, read_status, write_status
from fipo_cli.tracking.identity import TRACKING_CONFIG_ENV, wandb_env, wandb_link, wandb_run_name, wandb_sync_command
from fipo_cli.training import horizon
from fipo_cli.training.horizon import Horizon
from fipo_cli.verl_adapter import attention as attention_plan
from fipo_cli.verl_adapter import inert
from fipo_cli.verl_adapter import overrides as verl_overrides
from fipo_cli.verl_adapter.attention import AttentionPlan

#: Inherited variables worth recording next to fipo's own (values of secrets are masked).
RECORDED_PREFIXES = ("WANDB_", "HF_", "HUGGING_FACE_", "NCCL_", "CUDA_VISIBLE_DEVICES", "RAY_", "VLLM_")


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
    def reference(self) -> str:
        """``EXP/RUN``, as the user names the run."""
        return f"{self.experiment_dir.path.name}/{self.run_name}"

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
        samples_dir=run_dir / SAMPLES_DIR,
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
    if not (run_dir / RUN_CONFIG_FILE).is_file():
        runs = sorted(p.name for p in experiment_dir.runs.iterdir()) if experiment_dir.runs.is_dir() else []
        raise UsageError(
            f"--resume {run_name!r}: no such run in {experiment_dir.runs}",
            hint=f"runs of this experiment: {', '.join(runs)}" if runs else "this experiment has no runs yet",
        )
    return config.load(run_dir / RUN_CONFIG_FILE, assignments)


def launcher_of(plan: TrainPlan) -> Launcher:
    """The launcher the run's experiment names (``cluster.launcher``)."""
    return launcher_for(plan.experiment.cluster.launcher)


def require_attention_here(experiment: Experiment, launcher: Launcher) -> None:
    """Stop before anything is written when this machine trains a GPU run (a launcher that is not remote)
    and the run's attention cannot load here."""
    if launcher.remote or experiment.trainer.device != "cuda":
        return
    attention = attention_plan.plan(experiment)
    if attention.here_choice is None or (attention.choice == attention_plan.FLASH and not attention.here.imports):
        raise UsageError(
            f"{attention.describe()}: this machine trains the run, and flash_attn does not import here",
            hint=f"{attention_plan.INSTALL_FLASH}; or set model.attn_implementation: sdpa "
                 "with trainer.sequence_parallel_size: 1",
        )


def job(plan: TrainPlan) -> RunJob:
    """The run as its launcher sees it."""
    return RunJob(run_dir=plan.run_dir, reference=plan.reference, experiment=plan.experiment,
                  command=plan.command, env=plan.env)


def batch(plan: TrainPlan) -> Batch:
    """``fipo train``'s batch: this one run, as a job named ``fipo-EXP-RUN``."""
    return Batch(
        jobs=[job(plan)],
        name=f"fipo-{plan.experiment.name}-{plan.run_name}",
        description=f"run {plan.run_name} of experiment {plan.experiment.name}",
        command="train",
    )


def submission(plan: TrainPlan, inherited: Mapping[str, str]) -> Submission:
    """What the run's launcher would do with it (``--dry-run``): pure, nothing written or sent."""
    return launcher_of(plan).plan(batch(plan), inherited)


def launch(plan: TrainPlan, inherited: Mapping[str, str] | None = None,
           say: Callable[[str], None] = print, screen: Screen | None = None) -> tuple[TrainPlan, Outcome]:
    """Carry out ``fipo train``: claim the run's directory, record it and hand it to its launcher.

    Before anything is written, the launcher checks it can take the run (local GPUs, a Ray cluster
    that answers), its submission is planned (a bad address, inputs too large) and a resume of a
    run still queued or running is refused. A new run takes the next free name when another fipo
    claimed the planned one first: the plan returned is the run's. A new run whose submission is
    refused is removed again; one that ran here (the local launcher) keeps its record, failed or not.
    """
    inherited = dict(os.environ if inherited is None else inherited)
    launcher = launcher_of(plan)
    launcher.check(batch(plan), inherited)
    require_attention_here(plan.experiment, launcher)
    previous = refuse_active(plan)
    launcher.plan(batch(plan), inherited)
    plan = claim(plan, inherited)

    def create(jobs: Sequence[RunJob]) -> list[Path]:
        record_run(plan, inherited)
        write_status(plan.run_dir, created_status(plan, launcher.name, previous))
        return [] if plan.resume else [plan.run_dir]

    def execute(_: RunJob) -> int:
        return execute_run(plan, read_status(plan.run_dir), inherited, screen)

    outcome = launcher.submit(launcher.plan(batch(plan), inherited), Hooks(create, execute, say=say))
    return plan, outcome


def claim(plan: TrainPlan, inherited: Mapping[str, str]) -> TrainPlan:
    """Claim a new run's directory (a resumed run has one); the plan of the directory claimed.

    ``mkdir`` is atomic: if another fipo took the planned name first, this run takes the next one.
    """
    if plan.resume:
        return plan
    claimed = create_run_dir(plan.experiment_dir.runs)
    if claimed.name == plan.run_name:
        return plan
    return plan_run(plan.experiment, plan.experiment_dir, claimed.name, inherited=inherited)


def prepare_run(plan: TrainPlan, inherited: Mapping[str, str]) -> TrainPlan:
    """Claim the run's directory (a new run) and record its config, command and environment."""
    plan = claim(plan, inherited)
    record_run(plan, inherited)
    return plan


def execute_run(plan: TrainPlan, status: RunStatus, inherited: Mapping[str, str], screen: Screen | None = None) -> int:
    """Run the trainer of a created run on this machine, recording its state before and after.

    Used by the local launcher and, inside a SLURM or Ray job, by ``fipo_cli.training.run_task``.
    Built-in assets the run names (``builtin:``) are built first. A run whose scheduler records why a
    job stopped (SLURM: cancel, time limit, preemption, requeue) keeps its state when the trainer is
    stopped by a signal: ``fipo status`` asks the scheduler.
    """
    launcher = launcher_for(status.launcher)
    status.state = "running"
    status.started_at = utc_now()
    status.finished_at = status.exit_code = None
    status.wandb_run_id = plan.env.get("WANDB_RUN_ID")
    status.wandb_url = wandb_link(plan.experiment.tracking, plan.env)
    status.runner, status.stop_signal = this_process(), None
    if status.restarts == 0:  # a requeued job's run keeps why it stopped last
        status.reason = None
    write_status(plan.run_dir, status)
    keep_earlier_metrics(plan.run_dir)
    try:
        local_assets.ensure(plan.experiment.asset_paths(), env=inherited,
                            announce=lambda line: print(f"fipo: {line}", file=sys.stderr, flush=True))
        exit_code = launcher.run_trainer(job(plan), inherited, screen)
    except BaseException as error:
        _record_end(plan.run_dir, "cancelled" if isinstance(error, KeyboardInterrupt) else "failed", None)
        raise
    if launcher.scheduler_records_stops and exit_code > 128:  # stopped by a signal: the scheduler records why
        return exit_code
    _record_end(plan.run_dir, "succeeded" if exit_code == 0 else "cancelled" if exit_code in INTERRUPTED else "failed",
                exit_code)
    return exit_code


def _record_end(run_dir: Path, state: RunState, exit_code: int | None) -> None:
    """Record how the run ended, on the record as it is now (the launcher may have added why it stopped)."""
    status = read_status(run_dir)
    status.state, status.finished_at = state, utc_now()
    status.exit_code = exit_code if exit_code is not None else status.exit_code
    write_status(run_dir, status)


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
    """What fipo says after a local run, after the trainer's own output (or its view): how it ended
    and where everything is; for a failure, the end of the error from the trainer's log."""
    state = "succeeded" if exit_code == 0 else "cancelled" if exit_code in INTERRUPTED else "failed"
    return closing_summary(plan.run_dir, plan.reference, state, exit_code, wandb_link(plan.experiment.tracking, plan.env),
                           plan)


def closing_summary(run_dir: Path, reference: str, state: str, exit_code: int | None,
                    wandb: str | None, plan: TrainPlan | None = None) -> list[str]:
    """How a run ended and where everything is (``fipo train``'s last words, ``fipo watch``'s too);
    for a failure, the end of the error from the trainer's log. ``wandb``: the run's W&B link; ``plan``
    (``fipo train``): the planned steps, and why the run stopped short of them."""
    from fipo_cli.runs.metrics import last_step
    from fipo_cli.verl_adapter.checkpoints import checkpoint_steps

    run_dir = Path(run_dir).absolute()
    experiment, run = reference.rpartition("/")[0], run_dir.name
    log = run_dir / LOG_FILE
    if state == "succeeded":
        steps = checkpoint_steps(run_dir)
        last = last_step(run_dir)
        planned = plan.horizon.steps if plan and plan.horizon else None
        early = ended_early(plan, last) if plan else None
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
        elif wandb:
            lines.append(f"  W&B:         {wandb}")
        lines.append(f"  next:        fipo eval aime24 --run {reference}   ·   fipo report {experiment}")
        return lines
    code = "" if exit_code is None else f" (exit code {exit_code})"
    if state in ("cancelled", "timeout"):
        return [
            f"fipo: run {reference} was stopped{code} and is recorded as {state}",
            f"  continue it: fipo train {experiment} --resume {run}",
        ]
    return [
        f"fipo: training failed: run {reference} exited with code {exit_code} and is recorded as {state}"
        if exit_code is not None else f"fipo: training failed: run {reference} is recorded as {state}",
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


def refuse_active(plan: TrainPlan) -> RunStatus | None:
    """The status of the run a resume continues, refreshed as ``fipo status`` does (a local run whose
    launcher died is then failed); a run still queued or running is refused."""
    if not plan.resume:
        return None
    entry = RunEntry(plan.experiment_dir.path.name, plan.run_dir, read_status(plan.run_dir))
    launchers.refresh([entry])
    previous = entry.status
    if previous.state in ("pending", "running"):
        where = f" as job {previous.job_id}" if previous.job_id else ""
        where += f" ({entry.unknown})" if entry.unknown else ""
        raise UsageError(
            f"run {plan.run_name} is {previous.state}{where}",
            hint=f"wait for it, or stop it first: fipo cancel {plan.experiment_dir.path.name}/{plan.run_name}",
        )
    return previous


def record_run(plan: TrainPlan, inherited: Mapping[str, str]) -> None:
    """Write the run directory's config, command and (masked) environment."""
    run_dir = plan.run_dir
    (run_dir / CHECKPOINT_DIR).mkdir(exist_ok=True)
    atomic_write_text(run_dir / RUN_CONFIG_FILE, plan.experiment.to_yaml())
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
    from fipo_cli.verl_adapter import compose as verl_compose
    from fipo_cli.verl_adapter import verl_keys

    return verl_compose.check_points({"": plan.overrides}, {"": verl_keys.section_keys(plan.experiment.verl)})

