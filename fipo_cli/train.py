"""Training runs: the plan of one run (pure), and carrying it out with the local launcher.

A run lives in ``experiments/EXP/runs/RUN/``:

    config.yaml     the resolved experiment config the run trains with
    command.json    the exact trainer command and its working directory
    env.json        the variables fipo sets and the relevant inherited ones, secrets masked
    train.log       everything the trainer printed
    metrics.jsonl   verl's file logger (VERL_FILE_LOGGER_PATH): one {"step", "data"} per line
    checkpoints/    verl's checkpoints (trainer.default_local_dir); --resume continues from here
    status.json     the run's state, written atomically
"""

from __future__ import annotations

import netrc
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fipo_cli import config, experiments, verl_overrides
from fipo_cli.config import Experiment
from fipo_cli.errors import UsageError
from fipo_cli.experiments import ExperimentDir
from fipo_cli.runs import (
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

CONFIG_FILE = "config.yaml"
COMMAND_FILE = "command.json"
ENV_FILE = "env.json"
LOG_FILE = "train.log"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
#: Inherited variables worth recording next to fipo's own (values of secrets are masked).
RECORDED_PREFIXES = ("WANDB_", "HF_", "HUGGING_FACE_", "NCCL_", "CUDA_VISIBLE_DEVICES", "RAY_", "VLLM_")
#: Exit codes of a trainer stopped by Ctrl-C (SIGINT) or SIGTERM.
INTERRUPTED = (130, 143)


def wandb_mode(setting: str, env: Mapping[str, str]) -> str:
    """``auto`` is online when W&B credentials are present (WANDB_API_KEY or ~/.netrc), offline otherwise."""
    if setting != "auto":
        return setting
    return "online" if wandb_credentials(env) else "offline"


def wandb_credentials(env: Mapping[str, str]) -> str | None:
    """Where W&B credentials were found (never their value), or None."""
    if env.get("WANDB_API_KEY"):
        return "WANDB_API_KEY"
    netrc_path = Path(env.get("NETRC", Path.home() / ".netrc"))
    try:
        if netrc_path.is_file() and netrc.netrc(netrc_path).authenticators("api.wandb.ai"):
            return str(netrc_path)
    except (netrc.NetrcParseError, OSError):
        return None
    return None


def wandb_run_id(experiment_name: str, run_name: str) -> str:
    """The run's W&B id: stable across resumes and requeues, unique per run."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{experiment_name}-{run_name}")[:128]


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

    @property
    def run_dir(self) -> Path:
        return self.experiment_dir.runs / self.run_name

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
    mode = wandb_mode(experiment.tracking.mode, inherited)
    overrides = verl_overrides.experiment_overrides(
        experiment,
        experiment_name=experiment.tracking.run_name or f"{experiment.name}-{run_name}",
        checkpoint_dir=run_dir / CHECKPOINT_DIR,
        wandb=mode != "disabled",
    )
    env = {
        "VERL_FILE_LOGGER_PATH": str(run_dir / METRICS_FILE),
        "PYTHONUNBUFFERED": "1",  # the trainer's output reaches the log as it is printed
        "HYDRA_FULL_ERROR": "1",
    }
    if mode != "disabled":
        env |= {
            "WANDB_MODE": mode,
            "WANDB_RUN_ID": wandb_run_id(experiment.name, run_name),
            "WANDB_RESUME": "allow",
            "WANDB_DIR": str(run_dir),
        }
        if experiment.tracking.entity:
            env["WANDB_ENTITY"] = experiment.tracking.entity
    return TrainPlan(
        experiment=experiment,
        experiment_dir=experiment_dir,
        run_name=run_name,
        resume=resume,
        command=verl_overrides.trainer_command(experiment.trainer.entrypoint, overrides),
        overrides=overrides,
        env=env,
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


def run_locally(plan: TrainPlan, inherited: Mapping[str, str] | None = None) -> int:
    """Create (or reuse, on resume) the run directory, run the trainer, record how it ended.

    Returns the trainer's exit code.
    """
    from fipo_cli.launch.local import require_gpus, run_local

    inherited = dict(os.environ if inherited is None else inherited)
    cluster = plan.experiment.cluster
    if cluster.nodes > 1:
        raise UsageError(
            f"cluster.nodes={cluster.nodes}: the local launcher runs on this machine only",
            hint="use `--launcher slurm`, or set nodes=1",
        )
    require_gpus(cluster.total_gpus, layout=f"{cluster.nodes} node × {cluster.gpus_per_node} GPUs per node")
    previous = read_status(plan.run_dir) if plan.resume else None
    if not plan.resume:
        # Claimed atomically: if another fipo took the planned name first, this run takes the next.
        claimed = create_run_dir(plan.experiment_dir.runs)
        if claimed.name != plan.run_name:
            plan = plan_run(plan.experiment, plan.experiment_dir, claimed.name, inherited=inherited)
    run_dir = plan.run_dir
    _record(plan, inherited)
    status = RunStatus(
        state="running",
        launcher="local",
        created_at=previous.created_at if previous else utc_now(),
        started_at=utc_now(),
        wandb_run_id=plan.env.get("WANDB_RUN_ID"),
        resumed_from=plan.run_name if plan.resume else None,
    )
    write_status(run_dir, status)
    exit_code = run_local(plan.command, env={**inherited, **plan.env}, log_path=run_dir / LOG_FILE)
    status.state = "succeeded" if exit_code == 0 else "cancelled" if exit_code in INTERRUPTED else "failed"
    status.exit_code = exit_code
    status.finished_at = utc_now()
    write_status(run_dir, status)
    return exit_code


def _record(plan: TrainPlan, inherited: Mapping[str, str]) -> None:
    run_dir = plan.run_dir
    (run_dir / CHECKPOINT_DIR).mkdir(exist_ok=True)
    atomic_write_text(run_dir / CONFIG_FILE, plan.experiment.to_yaml())
    atomic_write_json(run_dir / COMMAND_FILE, {"command": plan.command, "cwd": str(Path.cwd())})
    atomic_write_json(run_dir / ENV_FILE, plan.recorded_env(inherited))


def describe(plan: TrainPlan, inherited: Mapping[str, str]) -> str:
    """The plan for people: the command as a shell script would write it, and the environment."""
    import shlex

    head = [shlex.quote(part) for part in plan.command[: len(plan.command) - len(plan.overrides)]]
    lines = [f"run directory: {plan.run_dir}{' (resumed)' if plan.resume else ''}", "environment (secrets masked):"]
    lines += [f"  {key}={value}" for key, value in sorted(plan.recorded_env(inherited).items())]
    lines.append("command:")
    lines.append("  " + " ".join(head) + " \\")
    lines += [f"    {shlex.quote(override)} \\" for override in plan.overrides[:-1]]
    lines += [f"    {shlex.quote(override)}" for override in plan.overrides[-1:]]
    return "\n".join(lines)


def check_with_verl(plan: TrainPlan) -> bool:
    """Compose the plan's overrides in the installed verl; False when verl is not installed."""
    import importlib.util

    if importlib.util.find_spec("verl") is None:
        return False
    verl_overrides.check_compose(plan.overrides)
    return True

