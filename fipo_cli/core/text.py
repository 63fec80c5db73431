"""How fipo writes counts and values for people: "1 run", "2 runs"; "3.2 MiB"; a table cell as YAML would write it."""

from __future__ import annotations

from typing import Any


def plural(count: float, word: str, words: str | None = None) -> str:
    """``1 run``, ``2 runs``, ``1 GPU``; ``words`` for an irregular plural."""
    return f"{count:g} {word if count == 1 else words or word + 's'}"


def byte_size(size: float) -> str:
    """``1000 bytes``, ``3.2 MiB``, ``14.0 GiB``."""
    for unit in ("bytes", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def cell(value: Any) -> str:
    """A value in a table, spelled as in fipo.yaml and on the command line: ``-`` for none,
    ``true``/``false``, floats to six significant digits, lists comma-separated."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return ", ".join(map(cell, value))
    return str(value)


def format_elapsed(seconds: float | None) -> str:
    """``01:02:03``, ``2-00:00:00`` (SLURM's way of writing a duration), ``-`` for none."""
    if seconds is None:
        return "-"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return (f"{days}-" if days else "") + f"{hours:02d}:{minutes:02d}:{seconds:02d}"
