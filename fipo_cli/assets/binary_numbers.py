"""The task of the ``tiny-reasoner`` recipe: binary numbers to decimal, where writing the steps pays.

A problem is a binary number of 2 to 8 bits (the first is 1), each bit after a letter that names
its place, and asks for its value in decimal::

    a1b0c1d1              1011 in binary: 11

A response answers at once, ``A11``, or first writes the value of every longer prefix, each after
its letter (Horner's rule: the value so far, doubled, plus the next bit), then the answer:
``b2c5d11A11``. Each step doubles a number written just before it and adds one bit, which a small
transformer learns in a few hundred steps; the direct answer needs every bit weighted by its own
power of two within one forward pass, which the same model gets right up to 5 or 6 bits and then
mostly wrong. So the harder the problem, the more a longer response pays. (Sums of single digits,
tried first, lack that property: a tiny model warm-started in minutes added them in one shot
about as well as step by step.)

The reward (:func:`compute_score`, the recipe's ``algorithm.reward_function``) is 1 when the
response ends in ``A`` and the right number, else 0. No partial credit: credit for correct steps
would pay for length itself, while a reward on the answer alone makes length pay only where it
makes the answer right. The warm-started policy answers long numbers right in some samples of a
group and wrong in others, so GRPO's advantages are not zero there; DAPO's dynamic sampling drops
the groups that are all right (the short numbers) or all wrong.

The data files (:func:`write_data`, built by :mod:`fipo_cli.assets.builtin`) hold 4,096 training
problems and 16 validation problems per number of bits; each bit count is its own validation data
source (``binary_7bit``), so verl's validation reports accuracy per length of number.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BITS = range(2, 9)
TRAIN_SOURCE = "binary"
TRAIN_PROBLEMS = 4096
VALIDATION_PROBLEMS_PER_BITS = 16
#: The letter before each bit, in order: a names the first (most significant) bit.
PLACES = "abcdefghijklmnopqrstuvwxyz"
ANSWER_MARK = "A"
#: Every character of a prompt or a response.
ALPHABET = PLACES[: max(BITS)] + "0123456789" + ANSWER_MARK
_FINAL_ANSWER = re.compile(rf"{ANSWER_MARK}(\d+)\s*\Z")


@dataclass(frozen=True)
class Problem:
    bits: tuple[int, ...]
    """The binary digits, most significant first (always 1)."""

    @property
    def prefix_values(self) -> list[int]:
        """The value of the first 1, 2, …, all bits (Horner's rule)."""
        values, value = [], 0
        for bit in self.bits:
            value = 2 * value + bit
            values.append(value)
        return values

    @property
    def answer(self) -> str:
        return str(self.prefix_values[-1])

    @property
    def prompt(self) -> str:
        return "".join(f"{place}{bit}" for place, bit in zip(PLACES, self.bits, strict=False))

    def response(self, stepwise: bool) -> str:
        """The value of each longer prefix after its letter, then the answer (``b2c5d11A11``), or the answer
        alone (``A11``)."""
        steps = "".join(f"{place}{value}" for place, value in zip(PLACES[1:], self.prefix_values[1:], strict=False))
        return (steps if stepwise else "") + ANSWER_MARK + self.answer


def validation_source(bits: int) -> str:
    """The data source of the validation problems of ``bits`` bits."""
    return f"{TRAIN_SOURCE}_{bits}bit"


def problems(count: int, seed: int | str, bits: Iterable[int] | None = None) -> list[Problem]:
    """``count`` problems, the same for the same seed; ``bits`` cycles through the given lengths, else
    each problem draws its own uniformly from :data:`BITS`."""
    rng = random.Random(f"binary-numbers:{seed}")
    lengths = list(bits) if bits is not None else None
    found = []
    for index in range(count):
        length = lengths[index % len(lengths)] if lengths else rng.choice(BITS)
        found.append(Problem((1, *(rng.randint(0, 1) for _ in range(length - 1)))))
    return found


def sft_examples(count: int, seed: int, stepwise_share: float) -> list[tuple[str, str]]:
    """``count`` (prompt, response) traces for the warm start; a share ``stepwise_share`` writes the steps."""
    rng = random.Random(f"binary-numbers-style:{seed}")
    return [(problem.prompt, problem.response(stepwise=rng.random() < stepwise_share))
            for problem in problems(count, f"sft-{seed}")]


def final_answer(response: str) -> str | None:
    """The number after the last ``A`` when it ends the response (trailing whitespace aside), else None."""
    match = _FINAL_ANSWER.search(response)
    return match.group(1) if match else None


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: Any = None, **_: Any) -> float:
    """verl's custom reward signature: 1.0 when the response's final answer is ``ground_truth``, else 0.0."""
    return 1.0 if final_answer(solution_str) == ground_truth else 0.0


def _records(found: Sequence[Problem], split: str, sources: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {
            "data_source": source,
            "prompt": [{"role": "user", "content": problem.prompt}],
            "ability": "MATH",
            "reward_model": {"style": "rule", "ground_truth": problem.answer},
            "extra_info": {"index": index, "split": split},
        }
        for index, (problem, source) in enumerate(zip(found, sources, strict=True))
    ]


def write_data(directory: Path) -> tuple[Path, Path]:
    """Write ``train.parquet`` and ``validation.parquet`` (verl's columns) into ``directory``."""
    from fipo_cli.data.prepare import write_parquet

    directory.mkdir(parents=True, exist_ok=True)
    train = problems(TRAIN_PROBLEMS, "train")
    validation = problems(VALIDATION_PROBLEMS_PER_BITS * len(BITS), "validation", bits=BITS)
    paths = directory / "train.parquet", directory / "validation.parquet"
    write_parquet(paths[0], _records(train, "train", [TRAIN_SOURCE] * len(train)))
    write_parquet(paths[1], _records(validation, "test", [validation_source(len(p.bits)) for p in validation]))
    return paths
