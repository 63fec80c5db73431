"""`fipo doctor`: preflight checks as a table or JSON."""

from __future__ import annotations

import json

import typer

from fipo_cli.cli.app import app


@app.command()
def doctor(
    experiment: str | None = typer.Argument(None, metavar="EXP", help="Also check this experiment's needs."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON list of checks."),
) -> None:
    """Preflight checks: verl, the future_kl loss, GPUs, batch arithmetic, data, W&B, SLURM tools."""
    from dataclasses import asdict

    from fipo_cli.experiment import config
    from fipo_cli.runs import experiments
    from fipo_cli.training.doctor import run_checks

    loaded = config.load(experiments.find_experiment(experiment).config_file) if experiment else None
    checks = run_checks(loaded)
    if as_json:
        typer.echo(json.dumps([asdict(check) for check in checks]))
    else:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=f"fipo doctor{' ' + experiment if experiment else ''}")
        for column in ("check", "result", "detail"):
            table.add_column(column, overflow="fold")  # a long key or path goes on the next line, not cut with "…"
        styles = {"pass": "green", "warn": "yellow", "fail": "bold red"}
        for check in checks:
            # The detail is text, not markup: `pip install 'fipo[train]'` keeps its brackets.
            table.add_row(check.name, f"[{styles[check.outcome]}]{check.outcome}[/]", escape(check.detail))
        Console().print(table)
    if any(check.outcome == "fail" for check in checks):
        raise typer.Exit(1)
