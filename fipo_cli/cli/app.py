"""The ``fipo`` app every command registers on: its root options, and ``main``, which prints a FipoError once.

Each command lives in a module of its own (:mod:`fipo_cli.cli`); it parses its options, hands them
to the package that owns the work and prints the result. Heavy libraries (torch, verl, vllm, wandb)
are imported inside the commands that need them, never here, so ``fipo --help`` stays fast.
"""

from __future__ import annotations

import os
import sys
import traceback

import typer

from fipo_cli import __version__
from fipo_cli.core.errors import FipoError


def _help_without_python_types() -> None:
    """typer 0.29 writes a Python type beside every parameter in --help: ``<bool>`` beside a flag,
    ``<list[str]>`` beside the KEY=VALUE words. A flag takes no value and an argument's name says
    what it takes, so they show none; options that take a value keep theirs (``<int>``, ``<path>``)."""
    from typer import core

    if not hasattr(core.TyperOption, "display_type_rich"):
        return  # an older typer: it writes click's own metavars
    option_type = core.TyperOption.display_type_rich
    core.TyperOption.display_type_rich = lambda self, ctx: None if self.is_flag else option_type(self, ctx)
    core.TyperArgument.display_type_rich = lambda self, ctx: None


_help_without_python_types()

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


def warn(lines: list[str]) -> None:
    """Each line on stderr as ``warning: …`` (stdout stays the command's output, JSON included)."""
    for line in lines:
        typer.echo(f"warning: {line}", err=True)


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
