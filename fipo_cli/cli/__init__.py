"""The ``fipo`` command line: typer only, one module per command on the shared app of :mod:`fipo_cli.cli.app`.

A command parses its options into the request of the package that owns the work, hands it over and
prints the result. Importing a command's module registers it; the order below is ``fipo --help``'s.
Heavy libraries (torch, verl, vllm, wandb) are imported inside the commands that need them.
"""

from fipo_cli.cli import knobs, init, train, watch, sweep, status, cancel, logs, doctor, data, eval, report  # noqa: F401, I001
from fipo_cli.cli.app import main

__all__ = ["main"]
