"""The ``math-verify`` grader: LaTeX, ``\\boxed{}`` and plain-number equivalence through Hugging Face's
``math_verify`` (imported on first use), and cons@n's equivalence classes."""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from fipo_cli.core.errors import FipoError
from fipo_cli.eval.graders.dapo import ANSWER_LINE
from fipo_cli.eval.graders.verdict import TIMEOUT, Verdict, as_integer, integer_verdict

# --- math-verify ---------------------------------------------------------------------------------

_PIP_HINT = (
    "pip install 'math-verify>=0.9,<0.10' (it needs no torch: installing the whole 'fipo[eval]' extra "
    "would pull vLLM and CUDA wheels over a CPU torch)"
)
# A number whose digit groups are set apart by a space, LaTeX spacing or `{,}`: one number to LaTeX.
_SPACED_THOUSANDS = re.compile(r"(?<![\d.])\d{1,3}(?:(?: |\\,|\\ |~|\\;|\{,\}|,\\!)\d{3})+(?![\d])")
_THOUSANDS_GAP = re.compile(r"(?: |\\,|\\ |~|\\;|\{,\}|,\\!)")
# LaTeX delimiters math_verify reads; `\$` is an escaped dollar (money), not a delimiter.
_DELIMITED = re.compile(r"(?<!\\)\$|\\\(|\\\[|\\boxed")
# \text{…}-like commands with their text, environment names and command names: removed, what is
# left of an answer line is prose if it still holds a word.
_TEXT_COMMANDS = re.compile(
    r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname|begin|end)\s*\{[^{}]*\}|\\[A-Za-z]+"
)
_WORD = re.compile(r"[A-Za-z]{2,}")
# What math_verify reads before an "answer:" match (its priorities 0 and 50).
_OUTRANKS_ANSWER_LINE = re.compile(r"\\boxed|(?i:final answer)")


class MathVerifyTimeout(Exception):
    """math_verify ran out of its own time on a parse or a comparison."""


def _math_verify() -> Any:
    """The ``math_verify`` module, imported on first use (sympy makes it heavy)."""
    try:
        import math_verify
    except ImportError as error:
        raise FipoError(
            f"the math-verify grader needs the math-verify package ({error}); fipo grades with both graders",
            hint=_PIP_HINT,
        ) from error
    # math_verify reports its own timeouts only as log warnings (and otherwise returns "no
    # answer" / "not equal"): they are caught here and turned into a "timeout" verdict.
    logger = logging.getLogger("math_verify")
    if not any(isinstance(handler, _TimeoutLog) for handler in logger.handlers):
        logger.addHandler(_TimeoutLog())
        logger.propagate = False  # its warning that the caller enforces timeouts would repeat per worker
        logger.setLevel(logging.WARNING)
    return math_verify


class _TimeoutLog(logging.Handler):
    """Notes math_verify's "Timeout during …" warnings for the call in progress."""

    fired = False

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("Timeout during"):
            _TimeoutLog.fired = True


def math_verify_available() -> bool:
    """Whether the math-verify grader can run here (checked before any generation)."""
    import importlib.util

    return importlib.util.find_spec("math_verify") is not None


def require_math_verify() -> None:
    """FipoError with the install hint when math_verify is missing."""
    if not math_verify_available():
        raise FipoError("the math-verify grader needs the math-verify package, which is not installed; "
                        "fipo grades every sample with both graders", hint=_PIP_HINT)


def join_thousands(text: str) -> str:
    """``1 000``, ``1\\,000``, ``1{,}000``, ``1,\\!000`` → ``1000``: LaTeX spacing inside a number."""
    return _SPACED_THOUSANDS.sub(lambda match: _THOUSANDS_GAP.sub("", match.group()), text)


def _own_timeout(seconds: int | None) -> int | None:
    """math_verify's timeouts use SIGALRM: only in the main thread of a process (None elsewhere)."""
    import threading

    if seconds is None or os.name != "posix" or threading.current_thread() is not threading.main_thread():
        return None
    return seconds


@functools.lru_cache(maxsize=4096)
def _parse_bare(text: str, timeout_s: int | None) -> tuple[Any, ...]:
    """A bare answer (no delimiters) parsed as math_verify parses a gold: ``\\boxed{text}`` first."""
    math_verify = _math_verify()
    text = join_thousands(text.strip())
    if _DELIMITED.search(text):
        return _parse(text, timeout_s)
    configs = [math_verify.LatexExtractionConfig(boxed_match_priority=0), math_verify.ExprExtractionConfig()]
    return _parse("\\boxed{" + text + "}", timeout_s, configs)


def _parse(text: str, timeout_s: int | None, configs: Sequence[Any] | None = None) -> tuple[Any, ...]:
    math_verify = _math_verify()
    _TimeoutLog.fired = False
    kwargs = {} if configs is None else {"extraction_config": configs}
    parsed = math_verify.parse(text, parsing_timeout=_own_timeout(timeout_s), **kwargs)
    if _TimeoutLog.fired:
        raise MathVerifyTimeout
    return tuple(parsed)


def _verify(gold: Sequence[Any], target: Sequence[Any], timeout_s: int | None) -> bool:
    math_verify = _math_verify()
    _TimeoutLog.fired = False
    same = math_verify.verify(list(gold), list(target), timeout_seconds=_own_timeout(timeout_s))
    if _TimeoutLog.fired:
        raise MathVerifyTimeout
    return same


def _is_bare_formula(text: str) -> bool:
    """An answer line that is one formula, not prose: no delimiters, no word outside ``\\text{}``."""
    return bool(text.strip()) and not _DELIMITED.search(text) and not _WORD.search(_TEXT_COMMANDS.sub(" ", text))


@dataclass(frozen=True)
class MathVerifyGrader:
    """math_verify's equivalence (``verify(gold, parse(response))``).

    ``extracted`` is the parsed answer as sympy prints it (``1/2`` for ``\\frac{1}{2}``);
    the matched text when math_verify could not turn it into sympy. ``timeout_s``:
    math_verify's own timeout per parse and per comparison (whole seconds, None: off); it
    applies only in a process's main thread.
    """

    integer_answers: bool = False
    timeout_s: int | None = None
    name: ClassVar[str] = "math-verify"

    def warm_up(self) -> None:
        """Import math_verify and sympy and run one comparison (sympy sets up caches on first use)."""
        self.grade("Answer: $\\frac{1}{2}$", "0.5")

    def answer(self, response: str) -> tuple[Any, ...]:
        """The parsed answer of ``response``.

        math_verify's own order comes first: a ``\\boxed{}`` or a "final answer is" wins over
        an answer line. Otherwise the last ``Answer:`` line, when it is a bare formula (less a
        closing full stop), is read as a reference is; math_verify would read only a number
        at its start (``3`` of ``3\\sqrt{13}``). Anything else: math_verify on the whole response.
        """
        lines = ANSWER_LINE.findall(response)
        if lines and not _OUTRANKS_ANSWER_LINE.search(response):
            line = lines[-1].strip().removesuffix(".")
            if _is_bare_formula(line):
                parsed = _parse_bare(line, self.timeout_s)
                if parsed:
                    return parsed
        return _parse(join_thousands(response), self.timeout_s)

    def grade(self, response: str, answer: str) -> Verdict:
        try:
            reference = _parse_bare(answer, self.timeout_s)
            if not reference:
                return Verdict(None, False, f"the reference answer {answer!r} could not be parsed")
            parsed = self.answer(response)
            if not parsed:
                return Verdict(None, False)
            extracted = str(parsed[0])
            correct = _verify(reference, parsed, self.timeout_s)
        except MathVerifyTimeout:
            return Verdict(None, False, TIMEOUT)
        if self.integer_answers:
            return integer_verdict(extracted, answer, correct)
        return Verdict(extracted, correct)

    def vote_classes(self, responses: Sequence[str]) -> list[int | None]:
        """cons@n's classes: answers that verify as equal vote together.

        Each response with an answer joins the first class (in response order) whose first
        answer ``verify(first, answer)`` accepts, else starts a new one; the result is the
        class index per response (None: no answer). Equal extracted texts share a class
        without a comparison.
        """
        firsts: list[tuple[str, tuple[Any, ...]]] = []  # per class: its first answer's text and parse
        known: dict[str, int] = {}
        classes: list[int | None] = []
        for response in responses:
            try:
                parsed = self.answer(response)
            except MathVerifyTimeout:
                parsed = ()
            if not parsed:
                classes.append(None)
                continue
            text = str(parsed[0])
            if self.integer_answers and as_integer(text) is not None:
                text = str(as_integer(text))
            if text not in known:
                known[text] = next(
                    (index for index, (_, first) in enumerate(firsts) if self._same(first, parsed)), len(firsts)
                )
                if known[text] == len(firsts):
                    firsts.append((text, parsed))
            classes.append(known[text])
        return classes

    def _same(self, first: tuple[Any, ...], other: tuple[Any, ...]) -> bool:
        try:
            return _verify(first, other, self.timeout_s)
        except MathVerifyTimeout:
            return False
