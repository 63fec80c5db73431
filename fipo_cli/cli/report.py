"""`fipo report`: the paper's charts for your runs."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from fipo_cli.cli.app import app


@app.command("report")
def report_charts(
    references: list[str] = typer.Argument(
        ..., metavar="EXP_OR_RUN", help="Experiments (all their runs) or runs as EXP/RUN."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output directory (default experiments/EXP/report)."),
    steps: str | None = typer.Option(
        None, "--steps", metavar="A:B", help="Only training steps A to B (either end may be left out)."
    ),
    wandb: bool = typer.Option(False, "--wandb", help="Also log the charts to W&B as native charts (job type report)."),
    from_wandb: bool = typer.Option(
        False, "--from-wandb", help="Read the training metrics from the runs' online W&B history, not metrics.jsonl."
    ),
    paper_lines: bool | None = typer.Option(
        None, "--paper-lines/--no-paper-lines",
        help="Draw the paper's AIME 2024 reference points (32B models). Default: when a run trains a 32B model.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object describing the report."),
) -> None:
    """Draw the paper's charts for your runs: PNGs and one self-contained report.html.

    \b
    (a) response-length percentiles per step    (b) avg@n against mean response length, fit per run
    (c) avg@n and cons@n per checkpoint          (d) dual-clip fraction, policy KL, gradient norm, length
    (e) length-weighted mean advantage and mean reward
    Training metrics come from each run's metrics.jsonl, accuracies from `fipo eval --run`.
    """
    from fipo_cli.report import runner
    from fipo_cli.report.data import parse_steps

    report = runner.make_report(references, out=out, steps=parse_steps(steps), from_wandb=from_wandb, to_wandb=wandb,
                                paper_lines=paper_lines)
    if as_json:
        typer.echo(json.dumps(report.to_json()))
        return
    for line in report.figures.skipped + report.figures.notes:
        typer.echo(line)
    for fit in report.figures.fits:
        r2 = "–" if fit.r2 is None else f"{fit.r2:.3f}"
        typer.echo(f"fit {fit.run} {fit.benchmark}: {fit.slope:+.3f} pp per 1k tokens, R² {r2} ({fit.points} points)")
    typer.echo(f"wrote {len(report.files)} charts and {report.html}")
    if wandb:
        typer.echo(f"W&B: run {report.wandb_run}" if report.wandb_run else "W&B: tracking disabled", err=True)
    if report.wandb_sync:
        typer.echo(f"W&B ran offline; to upload the report: {report.wandb_sync}", err=True)
