"""``fipo sweep``: a parameter space over an experiment, planned as runs, launched as one job array.

The plan is pure: the axes (:mod:`fipo_cli.sweep_space`) expand into points, each point is
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fipo_cli import config, experiments, registry, sweep_space, train
from fipo_cli.config import SAFE_NAME, TIME_LIMIT
from fipo_cli.errors import ConfigError, UsageError
from fipo_cli.experiments import ExperimentDir
from fipo_cli.files import first_missing
from fipo_cli.launch import ray_job, slurm
from fipo_cli.runs import FINAL_STATES, STATUS_FILE, atomic_write_json, atomic_write_text, read_status, utc_now, write_status

MANIFEST = "sweep.json"
LOGS_DIR = "logs"
#: More planned runs than this need ``--yes``.
CONFIRM_ABOVE = 100
#: How often a ray sweep held by ``--max-parallel`` asks the cluster whether a job ended.
RAY_POLL_S = 5.0
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
        return registry.sweep_dir(self.experiment_dir.path.parent, self.experiment_dir.path.name, self.name)

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


def time_limit_hours(limit: str | None) -> float | None:
    """SLURM's ``[D-]HH:MM:SS`` or plain minutes, in hours."""
    if not limit or not TIME_LIMIT.match(limit):
        return None
    if ":" not in limit:
        return int(limit) / 60
    days, _, clock = limit.rpartition("-")
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return int(days or 0) * 24 + hours + minutes / 60 + seconds / 3600


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
    from fipo_cli import verl_compose
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
    registry.refresh(existing)
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


def array_job(plan: SweepPlan) -> slurm.BatchJob:
    runs = plan.to_submit
    return slurm.BatchJob(
        job_name=f"fipo-{plan.name}",
        run_dirs=[run.plan.run_dir for run in runs],
        cluster=runs[0].plan.experiment.cluster,
        device=runs[0].plan.experiment.trainer.device,
        output=plan.directory / LOGS_DIR / "%A_%a.out",
        description=f"sweep {plan.name} of experiment {plan.experiment_dir.path.name}: {len(runs)} runs",
        command="sweep",
        array=True,
        max_parallel=plan.max_parallel,
    )


def array_script(plan: SweepPlan) -> str | None:
    """The job array's batch script (None when nothing is to be submitted or the launcher is local)."""
    if plan.launcher != "slurm" or not plan.to_submit:
        return None
    script = slurm.render(array_job(plan))
    slurm.check_syntax(script)
    return script


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
        "sbatch": array_script(plan),
        "ray_jobs": [train.ray_submission(run.plan, inherited).to_json() for run in plan.to_submit]
        if plan.launcher == "ray" else None,
    }


def _write_manifest(plan: SweepPlan, submission: dict[str, Any] | None) -> None:
    path = plan.directory / MANIFEST
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
        "submissions": previous.get("submissions", []) + ([submission] if submission else []),
    })


def _create_runs(plan: SweepPlan, runs: Sequence[SweepRun], launcher: str, inherited: Mapping[str, str]) -> None:
    for run in runs:
        run.plan.run_dir.mkdir(parents=True, exist_ok=True)
        train.record_run(run.plan, inherited)
        previous = read_status(run.plan.run_dir) if (run.plan.run_dir / STATUS_FILE).is_file() else None
        write_status(run.plan.run_dir, train.created_status(run.plan, launcher, previous, sweep=plan.name))


def submit(plan: SweepPlan, inherited: Mapping[str, str]) -> str | None:
    """Create the runs to submit and sbatch them as one job array; the array's job id.

    If sbatch is missing or refuses, everything this call wrote is removed again (new run
    directories, the array script, the manifest's changes), as ``fipo train --launcher slurm``
    removes its run: nothing is left for ``fipo status`` to show as ``created``.
    """
    if not plan.to_submit:
        _write_manifest(plan, None)
        return None
    manifest = plan.directory / MANIFEST
    before = manifest.read_text() if manifest.is_file() else None
    new_dirs = {first_missing(path) for path in (plan.directory / LOGS_DIR, *(r.plan.run_dir for r in plan.to_submit))}
    script = None
    try:
        (plan.directory / LOGS_DIR).mkdir(parents=True, exist_ok=True)
        _write_manifest(plan, None)
        _create_runs(plan, plan.to_submit, "slurm", inherited)
        previous = json.loads(manifest.read_text())["submissions"]
        script = plan.directory / f"array-{len(previous) + 1}.sbatch"
        atomic_write_text(script, array_script(plan) or "")
        job_id = slurm.submit(script)
    except BaseException:
        if script is not None:
            script.unlink(missing_ok=True)
        if before is not None:
            atomic_write_text(manifest, before)
        for path in new_dirs - {None}:
            shutil.rmtree(path, ignore_errors=True)
        raise
    for index, run in enumerate(plan.to_submit):
        task = f"{job_id}_{index}"
        train.record_submission(run.plan.run_dir, task, plan.directory / LOGS_DIR / f"{task}.out", index)
    _write_manifest(plan, {"job_id": job_id, "script": script.name, "runs": [r.name for r in plan.to_submit],
                           "submitted_at": utc_now()})
    return job_id


def run_locally(plan: SweepPlan, inherited: Mapping[str, str], say) -> int:
    """The runs one after another on this machine; stops at the first Ctrl-C. The worst exit code."""
    train.require_local_resources(plan.runs[0].plan.experiment)
    _write_manifest(plan, None)
    _create_runs(plan, plan.to_submit, "local", inherited)
    worst = 0
    for position, run in enumerate(plan.to_submit, 1):
        say(f"[{position}/{len(plan.to_submit)}] {run.name}")
        exit_code = train.execute_run(run.plan, read_status(run.plan.run_dir), inherited)
        worst = max(worst, exit_code)
        if exit_code in train.INTERRUPTED:
            say("interrupted: the remaining runs stay created; run the sweep again to continue")
            break
    return worst


def submit_ray(plan: SweepPlan, inherited: Mapping[str, str], say, poll_s: float = RAY_POLL_S) -> list[str]:
    """One Ray job per run; with ``--max-parallel K`` fipo stays and submits the next run when fewer
    than K of the sweep's jobs are queued or running. The submitted jobs' ids.

    The cluster is asked first: an unreachable one leaves nothing behind. Each run is created just
    before its job is submitted, and removed again if the cluster refuses it or Ctrl-C comes first:
    the runs not submitted do not exist, and running the sweep again submits them.
    """
    client = ray_job.connect(train.ray_submission(plan.to_submit[0].plan, inherited).address)
    submitted: list[tuple[str, str]] = []
    try:
        for position, run in enumerate(plan.to_submit, 1):
            if plan.max_parallel is not None:
                _wait_for_slot(plan, plan.max_parallel, poll_s)
            new_dir = first_missing(run.plan.run_dir)
            try:
                _create_runs(plan, [run], "ray", inherited)
                status = train.submit_ray_job(run.plan, client, inherited)
            except BaseException:
                if new_dir is not None:
                    shutil.rmtree(new_dir, ignore_errors=True)
                raise
            submitted.append((run.name, status.job_id))
            say(f"[{position}/{len(plan.to_submit)}] {run.name}: Ray job {status.job_id}")
    except KeyboardInterrupt:
        say(f"interrupted: {len(submitted)} of {len(plan.to_submit)} runs submitted; "
            "run the sweep again to submit the rest")
        raise
    finally:
        if submitted:
            _write_manifest(plan, {"job_ids": [job for _, job in submitted], "runs": [name for name, _ in submitted],
                                   "submitted_at": utc_now()})
    return [job for _, job in submitted]


def _wait_for_slot(plan: SweepPlan, max_parallel: int, poll_s: float) -> None:
    """Until fewer than ``max_parallel`` of the sweep's runs are queued or running on the cluster."""
    import time

    while True:
        entries = [registry.run_entry(run.plan.run_dir) for run in plan.runs if (run.plan.run_dir / STATUS_FILE).is_file()]
        registry.refresh(entries)
        if sum(entry.state in ("pending", "running") for entry in entries) < max_parallel:
            return
        time.sleep(poll_s)
