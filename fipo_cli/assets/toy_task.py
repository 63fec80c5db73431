"""The toy task of the ``tiny`` recipe: two-digit additions, scored digit by digit.

A problem asks for a + b with a and b in [50, 99], so every answer has three digits and starts
with 1. The score is the fraction of the answer's digits that a response gets right, position by
position, over the longer of the two (missing and surplus digits both cost). That partial credit
is what a tiny random model needs: an all-or-nothing reward would give every group of its
samples the same score and GRPO zero advantages. A two-layer model first learns what every answer
shares (a leading 1, three digits), so its mean training reward rises within a few dozen steps;
the sums themselves take far longer.

verl's reward manager calls :func:`compute_score` for every response (the recipe sets
``algorithm.reward_function: fipo_cli.toy_task:compute_score``); the data files are built by
:mod:`fipo_cli.assets.builtin`.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

DATA_SOURCE = "fipo_toy_addition"
TRAIN_PROBLEMS = 4096
VALIDATION_PROBLEMS = 32
_OPERANDS = (50, 99)


def problems(count: int, seed: int) -> list[tuple[str, str]]:
    """``count`` (question, answer) pairs, the same for the same seed."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        a, b = rng.randint(*_OPERANDS), rng.randint(*_OPERANDS)
        pairs.append((f"What is {a} + {b}?", str(a + b)))
    return pairs


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: Any = None, **_: Any) -> float:
    """verl's custom reward signature: the share of ``ground_truth``'s digits that ``solution_str``
    has in the same position, over max(len(answer), digits written); 0 for no digits at all."""
    digits = [char for char in solution_str if char.isdigit()]
    right = sum(written == expected for written, expected in zip(digits, ground_truth, strict=False))
    return right / max(len(ground_truth), len(digits), 1)


def write_data(directory: Path) -> tuple[Path, Path]:
    """Write ``train.parquet`` and ``validation.parquet`` (verl's columns) into ``directory``."""
    from fipo_cli.data.prepare import write_parquet

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, split, count, seed in (("train", "train", TRAIN_PROBLEMS, 0), ("validation", "test", VALIDATION_PROBLEMS, 1)):
        records = [
            {
                "data_source": DATA_SOURCE,
                "prompt": [{"role": "user", "content": question}],
                "ability": "MATH",
                "reward_model": {"style": "rule", "ground_truth": answer},
                "extra_info": {"index": index, "split": split},
            }
            for index, (question, answer) in enumerate(problems(count, seed))
        ]
        path = directory / f"{name}.parquet"
        write_parquet(path, records)  # into the asset's scratch directory, renamed into place when whole
        paths.append(path)
    return paths[0], paths[1]
