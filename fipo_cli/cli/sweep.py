"""`fipo sweep`: a sweep's plan as a table, then its runs handed to their launcher."""

from __future__ import annotations

import json
import os

import typer

from fipo_cli.cli.app import app, warn
from fipo_cli.core.text import cell, plural


@app.command()
def sweep(
    experiment: str = typer.Argument(..., metavar="EXP", help="Experiment name or path."),
    axes: list[str] = typer.Argument(
        ..., metavar="KEY=VALUES",
        help="gamma=0.95,0.99  tau=range(16,65,16)  eps_f_high=choice(0.1,0.2)  lr=interval(1e-6,3e-6) (random)",
    ),
    strategy: str = typer.Option("grid", "--strategy", help="grid (cartesian product) or random."),
    samples: int | None = typer.Option(None, "--samples", help="With --strategy random: how many runs."),
    seed: int = typer.Option(0, "--seed", help="With --strategy random: the sampling seed."),
    max_parallel: int | None = typer.Option(
        None, "--max-parallel", help="At most K runs at once: SLURM's array throttle (%K); with ray, fipo waits to submit."),
    name: str | None = typer.Option(None, "--name", help="The sweep's name (default: derived from its definition)."),
    launcher: str | None = typer.Option(
        None, "--launcher", help="local (runs one after another), slurm (a job array) or ray (a job per run)."),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Resubmit the runs that failed, timed out or were cancelled."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Launch a sweep of more than 100 runs."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan (and the array script); write nothing."),
    as_json: bool = typer.Option(False, "--json", help="With --dry-run: one JSON object."),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Runs trained here: everything verl prints, not each run's progress view."
    ),
) -> None:
    """Sweep FIPO's knobs (γ, the influence-weight bounds, …) as one run per point: a SLURM job array.

    \b
    fipo sweep fipo-32b gamma=0.95,0.99 eps_f_high=0.1,0.2 --max-parallel 2
    fipo sweep fipo-32b lr=interval(1e-6,3e-6) tau=16,32 --strategy random --samples 8
    Running the same sweep again submits only what is missing; --retry-failed adds the failed runs.
    """
    from fipo_cli.cli import run_view
    from fipo_cli.core.errors import UsageError
    from fipo_cli.training import sweep as sweeps

    plan = sweeps.plan_sweep(
        experiment, axes, strategy=strategy, samples=samples, seed=seed, max_parallel=max_parallel, name=name,
        launcher=launcher, retry_failed=retry_failed,
    )
    warn(plan.warnings)
    # A sweep too large to launch without --yes is refused below without composing its points in verl
    # (0.3 s each): the refusal comes at once, and the run with --yes composes them.
    needs_yes = len(plan.runs) > sweeps.CONFIRM_ABOVE and not yes and not dry_run
    composed = None if needs_yes else sweeps.check_with_verl(plan)
    warn(composed or [])
    if not needs_yes and composed is None and dry_run:
        typer.echo("note: verl is not installed here, so the overrides were not composed", err=True)
    if as_json:
        if not dry_run:
            raise UsageError("--json goes with --dry-run", hint="fipo sweep EXP KEY=VALUES --dry-run --json")
        planned = sweeps.to_json(plan, os.environ)
        typer.echo(json.dumps({**planned, "warnings": planned["warnings"] + (composed or [])}))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    keys = list(plan.runs[0].params)
    runs = plural(len(plan.runs), "run")
    table = Table(title=f"sweep {plan.name} ({plan.strategy}, {runs}, launcher {plan.launcher})")
    for column in ("#", "run", *keys, "action"):
        table.add_column(column, justify="right" if column == "#" else "left")
    for run in plan.runs:
        action = "submit" if run.action == "submit" else f"skip: {run.reason}"
        table.add_row(str(run.index), run.name, *(cell(run.params[key]) for key in keys), action)
    console.print(table)
    hours = plan.gpu_hours()
    cluster = plan.runs[0].plan.experiment.cluster
    console.print(
        f"{len(plan.to_submit)} to launch × {plural(cluster.total_gpus, 'GPU')}; reserves "
        + (f"{hours:,.0f} GPU-hours at most (cluster.time_limit {cluster.time_limit})" if hours is not None
           else "an unknown number of GPU-hours (set cluster.time_limit to know)"),
        highlight=False,
    )
    if dry_run:
        described = sweeps.submission(plan, os.environ).describe()
        if described:
            typer.echo(described)
        return
    if needs_yes:
        raise UsageError(f"this sweep plans {len(plan.runs)} runs, more than {sweeps.CONFIRM_ABOVE}",
                         hint="check the plan above, then run again with --yes")
    if not plan.to_submit:
        console.print("nothing to launch: every run is queued, running or finished")
        return
    outcome = sweeps.launch(plan, os.environ, lambda line: console.print(line, highlight=False),
                            screen=None if verbose else run_view.screen_for())
    if outcome.exit_code is not None:  # the runs trained here, one after another
        raise typer.Exit(outcome.exit_code)
    for line in outcome.lines:
        console.print(line, highlight=False)
    console.print(f"  status: fipo status {plan.name}    cancel: fipo cancel {plan.name}", highlight=False)
