"""The benchmark sets that ship inside the package: AIME 2024, AIME 2025 and MATH-500.

They are here because the Hugging Face Hub is often out of reach from a cluster's login
node, and validation and evaluation must work there. Each set is a JSON-lines file, one
problem per line, with at least ``id``, ``problem`` and ``answer`` (a string); some sets
carry more fields (``source``; ``subject`` and ``level`` for MATH-500).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from fipo_cli.core.errors import UsageError

BENCHMARKS = ("aime24", "aime25", "math500")


def bundled_file(name: str) -> Path:
    """The path of the bundled JSON-lines file of benchmark ``name`` (one of :data:`BENCHMARKS`)."""
    if name not in BENCHMARKS:
        raise UsageError(
            f"{name!r} is not a bundled benchmark; the bundled ones are {', '.join(BENCHMARKS)}",
            hint="pass one of those names, or a path to a .jsonl, .json or .parquet file",
        )
    # setuptools installs packages as plain directories, so the resource is a real file.
    return Path(str(resources.files(__name__).joinpath(f"{name}.jsonl")))


def load_bundled(name: str) -> list[dict[str, Any]]:
    """The problems of benchmark ``name`` in file order, each as the dict on its line."""
    with bundled_file(name).open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]
