"""`fipo train`: one run, planned, then handed to its launcher (or shown with --dry-run)."""

from __future__ import annotations

import json
import os

import typer

from fipo_cli.cli.app import app, warn


@app.command()
def train(
    experiment: str | None = typer.Argument(None, metavar="EXP", help="Experiment name or path."),
    assignments: list[str] | None = typer.Argument(
        None, metavar="KEY=VALUE", help="Overrides: dotted keys or aliases (gamma, tau, lr, nodes, n, ...)."
    ),
    model: str | None = typer.Option(None, "--model", "-m", help="Train straight from this model's recipe."),
    algo: str = typer.Option("fipo", "--algo", "-a", help="With --model: fipo (default) or dapo."),
    launcher: str | None = typer.Option(None, "--launcher", help="local (default from the config), slurm or ray."),
    resume: str | None = typer.Option(None, "--resume", metavar="RUN", help="Continue RUN from its last checkpoint."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the command and environment; write nothing."),
    as_json: bool = typer.Option(False, "--json", help="With --dry-run: one JSON object."),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Print everything verl prints, instead of the run's progress view."
    ),
) -> None:
    """Train an experiment with verl (FIPO's future_kl loss, DAPO's sampling and reward).

    On a terminal a run trained here shows one live view: step of total, elapsed time, ETA, the last
    step's reward, length, loss (FIPO: Future-KL, clipped weights), and the trainer's real warnings and
    errors; without one, a line per step. Everything verl prints is in the run's train.log.
    """

    from fipo_cli.cli import run_view
    from fipo_cli.core.errors import UsageError
    from fipo_cli.experiment.overrides import parse_assignments
    from fipo_cli.training import train as training

    if as_json and not dry_run:
        raise UsageError("--json goes with --dry-run", hint="fipo train EXP --dry-run --json")
    words = list(assignments or [])
    if experiment is not None and "=" in experiment:  # `fipo train --model M gamma=0.9`
        words.insert(0, experiment)
        experiment = None
    values = parse_assignments(words)
    if launcher is not None:
        values["cluster.launcher"] = launcher
    plan = training.plan_training(experiment, model, algo, values, resume)
    warn(plan.warnings)
    # Composed before any launch, not only for --dry-run: a verl key verl lacks stops here, not in a queued job.
    composed = training.check_with_verl(plan)
    warn(composed or [])
    if dry_run:
        submission = training.submission(plan, os.environ)
        if as_json:
            planned = plan.to_json(os.environ)
            typer.echo(json.dumps({**planned, "warnings": planned["warnings"] + (composed or []),
                                   **submission.to_json()}))
        else:
            typer.echo(training.describe(plan, os.environ))
            if submission.describe():
                typer.echo(submission.describe())
        if composed is None:
            typer.echo("note: verl is not installed here, so the overrides were not composed", err=True)
        return
    screen = None if verbose else run_view.screen_for()
    plan, outcome = training.launch(plan, screen=screen)
    if outcome.exit_code is not None:  # the run trained here
        typer.echo("\n".join(training.outcome_report(plan, outcome.exit_code)), err=True)
        raise typer.Exit(outcome.exit_code)
    for line in outcome.lines:
        typer.echo(line)
    typer.echo(f"  follow it:   fipo watch {plan.reference}   (everything it prints: fipo logs {plan.reference} -f)")
    typer.echo(f"  status:      fipo status {plan.experiment_dir.path.name}")
