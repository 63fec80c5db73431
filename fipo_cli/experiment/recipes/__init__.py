"""The recipes shipped with fipo: one commented YAML file per model and algorithm.

``qwen2.5-32b`` (paper Table 2) and ``qwen2.5-math-7b`` (Table 3) reproduce the paper;
``qwen2.5-0.5b`` is a single-GPU smoke run whose values are fipo's own; ``tiny`` trains a tiny
locally built model on a toy task on CPU, with nothing to download; ``tiny-reasoner`` is the length
lab on CPU: a small model warm-started to answer at once or step by step, on a task where the
longer way is the more often right one (:mod:`fipo_cli.assets.binary_numbers`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fipo_cli.core.errors import UsageError

MODELS = ("qwen2.5-32b", "qwen2.5-math-7b", "qwen2.5-0.5b", "tiny", "tiny-reasoner")
ALGORITHMS = ("fipo", "dapo")


def recipe_path(model: str, algorithm: str = "fipo") -> Path:
    """The recipe file for a model and an algorithm (FIPO or the DAPO baseline)."""
    if model not in MODELS:
        raise UsageError(f"--model {model!r} has no recipe", hint=f"choose one of: {', '.join(MODELS)}")
    if algorithm not in ALGORITHMS:
        raise UsageError(f"--algo {algorithm!r} is not known", hint=f"choose one of: {', '.join(ALGORITHMS)}")
    return Path(str(resources.files(__name__) / f"{model}-{algorithm}.yaml"))
