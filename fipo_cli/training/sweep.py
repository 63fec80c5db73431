"""``fipo sweep``: a parameter space over an experiment, planned as runs, launched through the runs' launcher.

The plan is pure: the axes (:mod:`fipo_cli.training.sweep_space`) expand into points, each point is
validated as a full experiment config, and each run gets a deterministic name, so the same
sweep run again finds its runs and submits only what is missing (or, with ``--retry-failed``,
what failed). A sweep lives in ``experiments/EXP/sweeps/SWEEP/``: ``sweep.json`` (its
definition, runs and submissions), the array scripts and the array tasks' job logs. Its runs
are ordinary runs under ``experiments/EXP/runs/``, their W&B group the sweep's name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fipo_cli.core.clock import time_limit_hours, utc_now
from fipo_cli.core.errors import ConfigError, UsageError
from fipo_cli.core.files import atomic_write_json, atomic_write_text, first_missing
from fipo_cli.experiment import config
from fipo_cli.experiment.config import SAFE_NAME
from fipo_cli.launch import launchers
from fipo_cli.launch.base import Batch, Hooks, Outcome, RunJob, Submission, Submitted
from fipo_cli.launch.launchers import launcher_for
from fipo_cli.launch.watch import Screen
from fipo_cli.runs import experiments, registry
from fipo_cli.runs.experiments import ExperimentDir
from fipo_cli.runs.layout import (
    STATUS_FILE,
    SWEEP_MANIFEST,
    sweep_dir,
)
from fipo_cli.runs.status import FINAL_STATES, read_status, write_status
from fipo_cli.training import sweep_space, train

#: More planned runs than this need ``--yes``.
CONFIRM_ABOVE = 100
Action = Literal["submit", "skip"]


@dataclass(frozen=True)
class SweepRun:
    index: int
    params: dict[str, Any]
    plan: train.TrainPlan
    action: Action = "submit"
    reason: str = "new"

    @property
    def name(self) -> str:
        return self.plan.run_name


@dataclass(frozen=True)
class SweepPlan:
    name: str
    experiment_dir: ExperimentDir
    tokens: list[str]
    strategy: str
    samples: int | None
    seed: int
    max_parallel: int | None
    runs: list[SweepRun]

    @property
    def directory(self) -> Path:
        return sweep_dir(self.experiment_dir.path.parent, self.experiment_dir.path.name, self.name)

    @property
    def launcher(self) -> str:
        return self.runs[0].plan.experiment.cluster.launcher

    @property
    def to_submit(self) -> list[SweepRun]:
        return [run for run in self.runs if run.action == "submit"]

    @property
    def warnings(self) -> list[str]:
        """The runs' warnings, each once."""
        return list(dict.fromkeys(warning for run in self.runs for warning in run.plan.warnings))

    def gpu_hours(self) -> float | None:
        """The GPU-hours the runs to submit reserve at most (their time limit); None without one."""
        cluster = self.runs[0].plan.experiment.cluster
        hours = time_limit_hours(cluster.time_limit)
        return None if hours is None else len(self.to_submit) * cluster.total_gpus * hours


def default_name(experiment: str, tokens: Sequence[str], strategy: str, samples: int | None, seed: int) -> str:
    """The same definition always gets the same name, so running a sweep again finds it."""
    definition = json.dumps([experiment, list(tokens), strategy, samples, seed])
    return f"{experiment[:48]}-sw{hashlib.sha1(definition.encode()).hexdigest()[:6]}"


def run_name(sweep: str, index: int, varying: Mapping[str, Any]) -> str:
    """``SWEEP-007-gamma0.95-eps_f_high0.1``, cut to SLURM's and fipo's 64 characters.

    A value drawn from an interval is written to 3 significant digits (``lr2.69e-06``), the
    index keeping two close draws apart; values the user wrote keep their YAML spelling.
    """
    stem = f"{sweep[:48]}-{index:03d}"
    slug = "-".join(f"{key.rsplit('.', 1)[-1]}{_short(value)}" for key, value in varying.items())
    slug = re.sub(r"[^A-Za-z0-9._-]", "_", slug)
    return f"{stem}-{slug}"[:64].rstrip("-._") if slug else stem


def _short(value: Any) -> str:
    """A value as the user writes it (``true``, ``null``, ``0.95``); a random draw's 17 digits cut to 3."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, float) and float(f"{value:.12g}") != value:
        return f"{value:.3g}"
    return str(value)


def plan_sweep(
    reference: str,
    tokens: Sequence[str],
    *,
    strategy: str = "grid",
    samples: int | None = None,
    seed: int = 0,
    max_parallel: int | None = None,
    name: str | None = None,
    launcher: str | None = None,
    retry_failed: bool = False,
    inherited: Mapping[str, str] | None = None,
) -> SweepPlan:
    """Expand and validate the sweep, and decide for every run whether to submit it."""
    if strategy not in ("grid", "random"):
        raise UsageError(f"--strategy {strategy!r} is not known", hint="use grid (the cartesian product) or random")
    if strategy == "random" and samples is None:
        raise UsageError("--strategy random needs --samples N", hint="for example --samples 8 --seed 0")
    if strategy == "grid" and samples is not None:
        raise UsageError(f"--samples {samples} goes with --strategy random", hint="drop --samples, or add --strategy random")
    if max_parallel is not None and max_parallel < 1:
        raise UsageError(f"--max-parallel {max_parallel}: must be at least 1")
    if name is not None and not SAFE_NAME.match(name):
        raise UsageError(f"--name {name!r} is not safe as a directory and job name",
                         hint="use 1–64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    axes = sweep_space.parse_axes(tokens)
    where = experiments.find_experiment(reference)
    raw = config.read_experiment(where.config_file)
    base = config.build(raw, source=str(where.config_file))
    name = name or default_name(base.name, tokens, strategy, samples, seed)
    points = sweep_space.grid(axes) if strategy == "grid" else sweep_space.random_points(axes, samples or 0, seed)
    varying = [axis.key for axis in axes if axis.interval is not None or len(axis.values) > 1]
    fixed = {"tracking.group": name, **({"cluster.launcher": launcher} if launcher else {})}
    runs, problems = [], []
    for index, point in enumerate(points):
        try:
            experiment = config.build(raw, {**point, **fixed}, source=str(where.config_file))
        except ConfigError as error:
            problems += [p for p in error.problems if p not in problems]
            continue
        run = run_name(name, index, {key: point[key] for key in varying})
        runs.append(SweepRun(index, point, train.plan_run(experiment, where, run, inherited=inherited)))
    if problems:
        raise ConfigError(problems, hint=f"the sweep's values must be valid for {where.config_file}")
    _check_one_shape(runs)
    _refuse_inert_axes(runs, varying)
    return dataclasses.replace(
        SweepPlan(name, where, list(tokens), strategy, samples, seed, max_parallel, runs),
        runs=_decide(runs, retry_failed),
    )


def check_with_verl(plan: SweepPlan) -> list[str] | None:
    """Compose every run's overrides in the installed verl's config, before any is shown or launched;
    the warnings about their ``verl:`` keys, or None when verl is not installed. The runs verl rejects
    are named with their point."""
    from fipo_cli.verl_adapter import compose as verl_compose
    from fipo_cli.verl_adapter import verl_keys

    labels = {run.index: f"run #{run.index} {run.name} ({', '.join(f'{key}={value}' for key, value in run.params.items())})"
              for run in plan.runs}
    return verl_compose.check_points(
        {labels[run.index]: run.plan.overrides for run in plan.runs},
        {labels[run.index]: verl_keys.section_keys(run.plan.experiment.verl) for run in plan.runs},
    )


def _refuse_inert_axes(runs: Sequence[SweepRun], varying: Sequence[str]) -> None:
    """A swept key that verl ignores under the experiment's settings would give identical runs."""
    from fipo_cli.verl_adapter.inert import inert_keys

    for key in varying:
        dotted = config.canonical_key(key)
        for run in runs:
            found = next((item for item in inert_keys(run.plan.experiment) if item.key == dotted), None)
            if found is not None:
                raise UsageError(f"sweeping {key} gives identical runs: {found.why}",
                                 hint="sweep a key that changes the run, or change the setting that makes it inert")


def _check_one_shape(runs: Sequence[SweepRun]) -> None:
    """A job array's tasks share one allocation shape and one launcher."""
    first = runs[0].plan.experiment
    for run in runs[1:]:
        other = run.plan.experiment
        for section, key in (
            *(("cluster", key) for key in ("launcher", "nodes", "gpus_per_node", "partition", "account", "qos",
                                           "time_limit", "constraint")),
            ("trainer", "device"),
        ):
            mine, theirs = getattr(getattr(first, section), key), getattr(getattr(other, section), key)
            if theirs != mine:
                raise UsageError(
                    f"{section}.{key} differs between runs ({mine!r} and {theirs!r}): "
                    "a sweep's runs share one job array, and so one allocation shape",
                    hint=f"sweep {section}.{key} as separate sweeps",
                )


def _decide(runs: Sequence[SweepRun], retry_failed: bool) -> list[SweepRun]:
    """Submit what never reached SLURM; skip what is queued, running or done; failed ones on request."""
    existing = [registry.run_entry(run.plan.run_dir) for run in runs if (run.plan.run_dir / STATUS_FILE).is_file()]
    launchers.refresh(existing)
    states = {entry.name: entry.state for entry in existing}
    decided = []
    for run in runs:
        state = states.get(run.name)
        if state is None or state == "created":
            decided.append(run)
        elif state in FINAL_STATES - {"succeeded"} and retry_failed:
            decided.append(dataclasses.replace(run, reason=f"retry ({state})"))
        elif state in FINAL_STATES - {"succeeded"}:
            decided.append(dataclasses.replace(run, action="skip", reason=f"{state} (--retry-failed resubmits)"))
        else:
            decided.append(dataclasses.replace(run, action="skip", reason=state))
    return decided


def batch(plan: SweepPlan) -> Batch:
    """The runs to submit as one batch: one job array on SLURM, one job per run on Ray, one after another here."""
    runs = plan.to_submit
    return Batch(
        jobs=[train.job(run.plan) for run in runs],
        name=f"fipo-{plan.name}",
        description=f"sweep {plan.name} of experiment {plan.experiment_dir.path.name}: {len(runs)} runs",
        command="sweep",
        sweep_dir=plan.directory,
        max_parallel=plan.max_parallel,
        sweep_runs=[run.plan.run_dir for run in plan.runs],
    )


def submission(plan: SweepPlan, inherited: Mapping[str, str]) -> Submission:
    """What the launcher would do with the runs to submit (``--dry-run``): pure, nothing written or sent."""
    return launcher_for(plan.launcher).plan(batch(plan), inherited)


def to_json(plan: SweepPlan, inherited: Mapping[str, str]) -> dict[str, Any]:
    return {
        "sweep": plan.name,
        "warnings": plan.warnings,
        "experiment": plan.experiment_dir.path.name,
        "launcher": plan.launcher,
        "gpu_hours": plan.gpu_hours(),
        "runs": [
            {"name": run.name, "params": run.params, "overrides": run.plan.overrides,
             "horizon": run.plan.horizon.to_json() if run.plan.horizon else None, "action": run.action,
             "reason": run.reason}
            for run in plan.runs
        ],
        **submission(plan, inherited).to_json(),
    }


def _write_manifest(plan: SweepPlan, record: dict[str, Any] | None) -> None:
    path = plan.directory / SWEEP_MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(path.read_text()) if path.is_file() else {}
    atomic_write_json(path, {
        "name": plan.name,
        "experiment": plan.experiment_dir.path.name,
        "tokens": plan.tokens,
        "strategy": plan.strategy,
        "samples": plan.samples,
        "seed": plan.seed,
        "runs": [run.name for run in plan.runs],
        "created_at": previous.get("created_at", utc_now()),
        "submissions": previous.get("submissions", []) + ([record] if record else []),
    })


def launch(plan: SweepPlan, inherited: Mapping[str, str], say: Callable[[str], None] = print,
           screen: Screen | None = None) -> Outcome:
    """Create the runs to submit and hand them to their launcher, recording the sweep in ``sweep.json``.

    The launcher checks first (local GPUs, a Ray cluster that answers): a refusal leaves nothing
    behind. A submission that fails removes the runs it created, and when none of its runs is left
    the manifest is restored as it was, as ``fipo train`` removes its run: nothing is left for
    ``fipo status`` to show as ``created``. Runs handed over before a failure or Ctrl-C stay recorded.
    """
    launcher = launcher_for(plan.launcher)
    runs = batch(plan)
    launcher.check(runs, inherited)
    train.require_attention_here(plan.runs[0].plan.experiment, launcher)
    planned = submission(plan, inherited)
    plans = {run.plan.run_dir: run.plan for run in plan.to_submit}
    manifest = plan.directory / SWEEP_MANIFEST
    before = manifest.read_text() if manifest.is_file() else None
    new_sweep = first_missing(plan.directory)
    new_runs = [path for path in plans if not path.exists()]
    _write_manifest(plan, None)
    submitted: list[tuple[RunJob, Submitted]] = []

    def create(jobs: Sequence[RunJob]) -> list[Path]:
        made = []
        for job in jobs:
            run_plan = plans[job.run_dir]
            made += filter(None, [first_missing(job.run_dir)])
            job.run_dir.mkdir(parents=True, exist_ok=True)
            train.record_run(run_plan, inherited)
            previous = read_status(job.run_dir) if (job.run_dir / STATUS_FILE).is_file() else None
            write_status(job.run_dir, train.created_status(run_plan, launcher.name, previous, sweep=plan.name))
        return made

    def execute(job: RunJob) -> int:
        return train.execute_run(plans[job.run_dir], read_status(job.run_dir), inherited, screen)

    hooks = Hooks(create, execute, submitted=lambda job, handed: submitted.append((job, handed)), say=say)
    try:
        return launcher.submit(planned, hooks)
    except BaseException:
        if not submitted and not any(path.exists() for path in new_runs):
            if before is not None:
                atomic_write_text(manifest, before)
            elif new_sweep is not None:
                shutil.rmtree(new_sweep, ignore_errors=True)
            else:
                manifest.unlink(missing_ok=True)
        raise
    finally:
        record = planned.manifest_record(submitted) if submitted else None
        if record is not None:
            _write_manifest(plan, record)
