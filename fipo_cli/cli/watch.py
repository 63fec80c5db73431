"""`fipo watch`: a run's progress view, from any machine that reads its directory, until the run ends."""

from __future__ import annotations

import typer

from fipo_cli.cli.app import app


@app.command()
def watch(
    run: str = typer.Argument(..., metavar="EXP/RUN", help="The run (its name alone if only one experiment has it)."),
    plain: bool = typer.Option(False, "--plain", help="A line per step, as without a terminal."),
) -> None:
    """Follow a run as it trains (local, SLURM or Ray), then print how it ended.

    The view of `fipo train`: step of total, elapsed, ETA, the last step's numbers, the trainer's
    real warnings and errors; read from the run's metrics file and train.log (a Ray job that writes
    its run elsewhere, `cluster.ray_run_root`: from the job's log). Exit code 0 when the run
    succeeded, 1 when it did not, 130 when you stop watching (the run goes on).
    """
    import sys

    from fipo_cli.cli import run_view
    from fipo_cli.launch import launchers
    from fipo_cli.launch.watch import PlainScreen
    from fipo_cli.runs import registry
    from fipo_cli.training.train import closing_summary

    entry = registry.find_run(run)
    screen = PlainScreen() if plain else run_view.screen_for()
    try:
        entry = launchers.watch(entry, screen)
    except KeyboardInterrupt:
        typer.echo(f"\nfipo: stopped watching; the run goes on (fipo watch {entry.reference})", err=True)
        raise typer.Exit(130) from None
    status = entry.status
    if status is None:
        raise typer.Exit(1)
    sys.stdout.flush()
    typer.echo("\n".join(closing_summary(entry.run_dir, entry.reference, status.state, status.exit_code,
                                         status.wandb_url)), err=True)
    raise typer.Exit(0 if status.state == "succeeded" else 1)
