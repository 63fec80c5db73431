"""`fipo logs`: a run's trainer log or job log, followed until the run ends."""

from __future__ import annotations

import typer

from fipo_cli.cli.app import app


@app.command()
def logs(
    run: str = typer.Argument(..., metavar="EXP/RUN", help="The run (its name alone if only one experiment has it)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing as the run writes, until it ends."),
    job: bool = typer.Option(False, "--job", help="The SLURM job's log (Ray, set-up) instead of the trainer's."),
) -> None:
    """Print a run's trainer log (train.log), or its SLURM job log with --job; a Ray job's log from its cluster."""
    from fipo_cli.launch.launchers import print_log
    from fipo_cli.runs import registry

    raise typer.Exit(print_log(registry.find_run(run), job_log=job, follow=follow))
