"""The one error type of fipo.

Every expected failure is a :class:`FipoError`: a message that names what went wrong and
a hint that says how to fix it. ``fipo_cli.cli.app.main`` prints it once, without a
traceback (``FIPO_DEBUG=1`` shows one), and exits with the error's exit code.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Sequence

EXIT_RUNTIME = 1
EXIT_USAGE = 2
#: The largest integer fipo accepts anywhere: what verl, torch and numpy hold in 64 bits.
MAX_INTEGER = 2**63 - 1


class FipoError(Exception):
    """A failure fipo expected: runtime problems exit with code 1."""

    exit_code = EXIT_RUNTIME

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}\nhint: {self.hint}"


class UsageError(FipoError):
    """Bad command-line usage: exit code 2."""

    exit_code = EXIT_USAGE


class ConfigError(FipoError, ValueError):
    """One or more bad config values, all reported at once: exit code 2.

    It is also a ``ValueError`` so that code which validates configs the way verl does
    (``except ValueError``) treats it as one.
    """

    exit_code = EXIT_USAGE

    def __init__(self, problems: Sequence[str], hint: str | None = None) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} problems:\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message, hint)


def unknown_key_problem(key: str, known: Iterable[str], what: str, suggestion: str | None = None) -> str:
    """One problem line for an unknown key, naming ``suggestion`` or else the closest known key if there is one."""
    close = [suggestion] if suggestion else difflib.get_close_matches(key, list(known), n=1)
    return f"{key!r} is not a {what}" + (f"; did you mean {close[0]!r}?" if close else "")


def number_problem(key: str, value: object) -> str | None:
    """The one rule for every number a user gives fipo (config, overrides, sweep axes, knobs, eval options):
    NaN and ±infinity are refused, and integers must fit in 64 bits. A problem line naming ``key``, or None.

    Schema bounds (> 0, a fraction, ...) are checked after this, by whoever owns the key.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return f"{key}={value!r}: must be a finite number, not NaN or ±infinity"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
        return f"{key}={value}: out of range; integers must lie within ±{MAX_INTEGER} (64 bits)"
    return None
