"""The ``fipo`` command line: typer wiring only.

Commands parse their options, hand them to the module that owns the work and print the
result. Heavy libraries (torch, verl, vllm, wandb) are imported inside the commands that
need them, never here, so ``fipo --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Optional

import typer

from fipo_cli import __version__
from fipo_cli.errors import FipoError

app = typer.Typer(
    name="fipo",
    help="Run FIPO (Future-KL Influenced Policy Optimization) on verl.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"fipo {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print fipo's version and exit."
    ),
) -> None:
    """Run FIPO (Future-KL Influenced Policy Optimization) on verl.

    Set FIPO_DEBUG=1 to see tracebacks of errors.
    """


@app.command()
def knobs(
    assignments: Optional[list[str]] = typer.Argument(
        None, metavar="[KNOB=VALUE]...", help="FIPO knobs, in fipo's or the official launcher's names."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Resolve FIPO loss knobs and print the verl overrides that set them.

    \b
    fipo's knobs: decay_rate (alias tau, 32) or gamma (wins if set), future_kl_clip_low
    (alias eps_f_low, 0.0), future_kl_clip_high (alias eps_f_high, 0.2), safety_thresh (10.0).
    The official launcher's: future_kl_clip_ratio, future_kl_clip_high_only, future_kl_start
    (include_current | exclude_current), future_kl_window (-1 or ≥ 1), future_kl_average, chunk_size.
    """
    from fipo_cli.loss import knobs as knob_rules
    from fipo_cli.overrides import parse_assignments
    from fipo_cli.verl_overrides import policy_loss_overrides

    values = knob_rules.canonical_assignments(parse_assignments(assignments or []))
    resolved = knob_rules.summary(knob_rules.resolve(values))
    overrides = policy_loss_overrides(values)
    if as_json:
        typer.echo(json.dumps({"settings": resolved, "overrides": overrides}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="FIPO loss settings", show_header=True)
    table.add_column("setting")
    table.add_column("value", justify="right")
    for name, value in resolved.items():
        table.add_row(name, f"{value:.6g}" if isinstance(value, float) else str(value))
    console = Console()
    console.print(table)
    console.print("verl overrides:", style="bold")
    for line in overrides:
        console.print(f"  {line}", markup=False, highlight=False)


def _report(error: FipoError) -> None:
    from rich.console import Console

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print("error: " + error.message, markup=False)
    if error.hint:
        console.print("hint: " + error.hint, markup=False)


def main() -> None:
    """Console entry point: runs the app and turns a FipoError into one message and an exit code."""
    try:
        app()
    except FipoError as error:
        if os.environ.get("FIPO_DEBUG") == "1":
            traceback.print_exc()
        _report(error)
        sys.exit(error.exit_code)
