"""What every grader returns and takes: a :class:`Verdict`, the :class:`Grader` interface, and the limits a
grading call runs under (the per-sample time limit, math_verify's share of it, a worker's start-up)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from fipo_cli.core.errors import UsageError

# Seconds one grader may spend on one sample (math_verify's own default is 5 s per step).
DEFAULT_TIME_LIMIT = 10.0
# math_verify's own timeouts (whole seconds, per parse and per comparison) are this share of the
# time limit: a sample then ends as "timeout" inside its worker, which lives on; the parent's
# kill at the full limit stays for code that no signal interrupts (a C loop in sympy).
OWN_TIMEOUT_SHARE = 1 / 3
# Seconds a fresh worker may take to import and warm up its graders (sympy is slow to import
# on a loaded login node); the per-sample limit only starts once a worker is ready.
STARTUP_LIMIT = 120.0
TIMEOUT = "timeout"

_INTEGER = re.compile(r"\s*[+-]?\d+\s*")


@dataclass(frozen=True)
class Verdict:
    """One grader's judgement of one response.

    ``extracted``: the normalised answer the grader read from the response, ``None`` when it
    found none (or never finished). ``error``: why grading failed (``"timeout"``, or the
    exception as ``"Type: message"``); a failed grading is never correct.
    """

    extracted: str | None
    correct: bool
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The verdict as it is stored in samples.jsonl."""
        return {"extracted": self.extracted, "correct": self.correct, "error": self.error}

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Verdict:
        return cls(record.get("extracted"), bool(record.get("correct")), record.get("error"))


class Grader(Protocol):
    """What :func:`grade_samples` needs of a grader: it must pickle (it is sent to workers)."""

    name: ClassVar[str]

    def warm_up(self) -> None:
        """Import and prime whatever ``grade`` needs, so that the first sample is not charged for it."""

    def grade(self, response: str, answer: str) -> Verdict:
        """The verdict on ``response`` for the reference ``answer``."""


def as_integer(text: str) -> int | None:
    return int(text) if _INTEGER.fullmatch(text) else None


def integer_verdict(extracted: str, answer: str, correct: bool) -> Verdict:
    """``integer_answers``: compare by value when both sides are integers, else keep ``correct``."""
    value, reference = as_integer(extracted), as_integer(answer)
    if value is None or reference is None:
        return Verdict(extracted, correct)
    return Verdict(str(value), value == reference)


def grading_option_problems(workers: int, time_limit: float) -> list[str]:
    """What is wrong with ``--workers`` and ``--time-limit``, one line each (none: both are fine)."""
    problems = []
    if workers < 1:
        problems.append(f"--workers {workers}: must be ≥ 1 (grading worker processes)")
    if not (time_limit > 0 and math.isfinite(time_limit)):  # NaN fails this too
        problems.append(f"--time-limit {time_limit}: must be a finite number of seconds > 0")
    return problems


def check_grading_options(workers: int, time_limit: float) -> None:
    """UsageError naming every bad grading option."""
    problems = grading_option_problems(workers, time_limit)
    if problems:
        raise UsageError("; ".join(problems), hint="e.g. --workers 4 --time-limit 30")
