"""`fipo cancel`: stop a run, a sweep or an experiment's runs, and record them as cancelled."""

from __future__ import annotations

import typer

from fipo_cli.cli.app import app


@app.command()
def cancel(
    target: str = typer.Argument(..., metavar="EXP/RUN|SWEEP|EXP", help="A run, a sweep or all runs of an experiment."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Name the jobs; cancel nothing."),
) -> None:
    """Cancel SLURM or Ray runs that are queued or running (scancel, stop_job) and record them as cancelled."""
    from fipo_cli.launch import launchers
    from fipo_cli.runs import registry

    entries = registry.find_runs(target)
    launchers.refresh(entries)
    plan = launchers.plan_cancel(entries)
    for entry, why in plan.refused:
        typer.echo(f"{entry.reference}: {why}", err=True)
    if not plan.runs:
        typer.echo(f"nothing to cancel in {target}: no run is queued or running")
        return
    for entry in plan.runs:
        typer.echo(f"{'would cancel' if dry_run else 'cancelling'} {entry.reference} (job {entry.status.job_id or '-'})")
    if dry_run:
        return
    launchers.cancel(plan)
