"""The ``fipo`` command line: typer only, one module per command; ``main`` is the console entry point."""

from fipo_cli.cli.app import main

__all__ = ["main"]
