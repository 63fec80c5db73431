"""`fipo knobs`: resolve FIPO's loss knobs and print the verl overrides that set them."""

from __future__ import annotations

import json

import typer

from fipo_cli.cli.app import app
from fipo_cli.core.text import cell


@app.command()
def knobs(
    assignments: list[str] | None = typer.Argument(
        None, metavar="KNOB=VALUE", help="FIPO knobs, in fipo's or the official launcher's names."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Resolve FIPO loss knobs and print the verl overrides that set them.

    \b
    fipo's knobs: decay_rate (alias tau, 32) or gamma (wins if set), future_kl_clip_low
    (alias eps_f_low, 0.0), future_kl_clip_high (alias eps_f_high, 0.2), safety_thresh (10.0).
    The official launcher's: future_kl_clip_ratio, future_kl_clip_high_only, future_kl_start
    (include_current | exclude_current), future_kl_window (-1 or ≥ 1), future_kl_average, chunk_size.
    The official loss ignores future_kl_start, future_kl_window and future_kl_average; fipo's loss
    does not, and warns when one of them is set to anything but its default.
    """
    from fipo_cli.experiment.overrides import parse_assignments
    from fipo_cli.loss import knobs as knob_rules
    from fipo_cli.verl_adapter.overrides import policy_loss_overrides

    values = knob_rules.canonical_assignments(parse_assignments(assignments or []))
    resolved = knob_rules.summary(knob_rules.resolve(values))
    overrides = policy_loss_overrides(values)
    # On stderr also with --json: stdout stays one JSON object, and the user still sees them.
    warnings = knob_rules.extension_warnings(values) + knob_rules.inert_warnings(values)
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
    if as_json:
        typer.echo(json.dumps({"settings": resolved, "overrides": overrides, "warnings": warnings}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="FIPO loss settings", show_header=True)
    table.add_column("setting")
    table.add_column("value", justify="right")
    for name, value in resolved.items():
        table.add_row(name, cell(value))
    console = Console()
    console.print(table)
    console.print("verl overrides:", style="bold")
    for line in overrides:
        console.print(f"  {line}", markup=False, highlight=False)
