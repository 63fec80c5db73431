"""Graders that misbehave, for the grading pool's tests. They live in a module of their own because the
pool pickles its graders into spawned worker processes, which import them by this module's name."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import ClassVar

from fipo_cli.core.errors import FipoError
from fipo_cli.eval.graders import DapoGrader, Verdict


@dataclass(frozen=True)
class TroubleGrader:
    """Test-only: hangs on "HANG", raises on "RAISE", kills its process on "CRASH", else dapo."""

    name: ClassVar[str] = "trouble"

    def warm_up(self) -> None:
        """Nothing to load."""

    def grade(self, response: str, answer: str) -> Verdict:
        if response == "HANG":
            while True:
                time.sleep(60)
        if response == "RAISE":
            raise RuntimeError("grader bug")
        if response == "CRASH":
            os._exit(3)
        return DapoGrader().grade(response, answer)


@dataclass(frozen=True)
class BrokenGrader:
    """Test-only: cannot start (a missing library)."""

    name: ClassVar[str] = "broken"

    def warm_up(self) -> None:
        raise FipoError("the broken grader needs libbroken", hint="pip install libbroken")

    def grade(self, response: str, answer: str) -> Verdict:
        raise AssertionError("never called")
