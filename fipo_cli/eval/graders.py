"""Grading: is a model's response correct for a reference answer?

Two graders share one interface, ``grade(response, answer) -> Verdict``:

``dapo``
    The training reward's rule, verl 0.9.1's ``verl/utils/reward_score/math_dapo.py``
    (``compute_score``): the last ``Answer:`` line of the response's last 300 characters,
    Minerva-normalised and compared as a string; when there is none, the last ``\\boxed{}``
    of the last 100 of those characters, compared verbatim. Copied here so that an eval box
    without verl grades the same way; a test runs verl's own function on the same cases.
``math-verify``
    LaTeX / ``\\boxed{}`` / plain-number equivalence through Hugging Face's ``math_verify``
    (``parse`` and ``verify``). A reference is parsed the way math_verify parses a gold
    answer (MATH's gold is a ``\\boxed{}`` in the solution): as ``\\boxed{reference}``, so
    that nothing around it changes its meaning (``\\$36``, ``x \\in [-2,7]``). Thousands
    separators written as spaces (``1 000``, ``1\\,000``) are joined first: LaTeX ignores
    them, sympy would read a product. A response's last ``Answer:`` line (the DAPO prompt's
    format) is read the same way when it holds a bare formula, else math_verify reads the
    whole response. Its signal-based timeouts run only in a process's main thread (they
    fail elsewhere); :func:`grade_samples` enforces the time limit on top.

``integer_answers=True`` (AIME) compares integer values when the extracted answer and the
reference are both integers, so ``025`` equals ``25``; integer answers are then reported
without leading zeros, so that they vote together in cons@n.

:func:`grade_samples` grades many responses with several graders in worker processes, each
(sample, grader) call under a time limit the parent enforces; :func:`compare_graders` says
where graders disagree.
"""

from __future__ import annotations

import functools
import logging
import math
import multiprocessing
import os
import re
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, ClassVar, Protocol

from fipo_cli.core.errors import FipoError, UsageError, unknown_key_problem

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


def _as_integer(text: str) -> int | None:
    return int(text) if _INTEGER.fullmatch(text) else None


def _integer_verdict(extracted: str, answer: str, correct: bool) -> Verdict:
    """``integer_answers``: compare by value when both sides are integers, else keep ``correct``."""
    value, reference = _as_integer(extracted), _as_integer(answer)
    if value is None or reference is None:
        return Verdict(extracted, correct)
    return Verdict(str(value), value == reference)


# --- dapo: verl's math_dapo, reimplemented ------------------------------------------------------
# The tables and the order of every step are verl 0.9.1's (itself adapted from EleutherAI's
# lm-evaluation-harness, hendrycks_math/utils.py); change nothing here without changing the
# equivalence test's expectations.

_SUBSTITUTIONS = (
    ("an ", ""),
    ("a ", ""),
    (".$", "$"),
    ("\\$", ""),
    (r"\ ", ""),
    (" ", ""),
    ("mbox", "text"),
    (",\\text{and}", ","),
    ("\\text{and}", ","),
    ("\\text{m}", "\\text{}"),
)
_REMOVED_EXPRESSIONS = (
    "square", "ways", "integers", "dollars", "mph", "inches", "hours", "km", "units", "\\ldots", "sue",
    "points", "feet", "minutes", "digits", "cents", "degrees", "cm", "gm", "pounds", "meters", "meals",
    "edges", "students", "childrentickets", "multiples", "\\text{s}", "\\text{.}", "\\text{\ns}",
    "\\text{}^2", "\\text{}^3", "\\text{\n}", "\\text{}", r"\mathrm{th}", r"^\circ", r"^{\circ}", r"\;",
    r",\!", "{,}", '"', "\\dots",
)  # fmt: skip
_ANSWER_LINE = re.compile(r"(?i)Answer\s*:\s*([^\n]+)")
_INVALID = "[INVALID]"  # verl's "no answer" prediction; it takes part in its comparisons
_RESPONSE_WINDOW = 300  # compute_score keeps only the response's last 300 characters …
_BOX_WINDOW = 100  # … and its \boxed{} fallback only the last 100 of those


def normalize_final_answer(final_answer: str) -> str:
    """verl's Minerva normalisation of a final answer (units, ``\\text{}``, ``$``, shorthand TeX)."""
    final_answer = final_answer.split("=")[-1]
    for before, after in _SUBSTITUTIONS:
        final_answer = final_answer.replace(before, after)
    for expression in _REMOVED_EXPRESSIONS:
        final_answer = final_answer.replace(expression, "")
    final_answer = re.sub(r"(.*?)(\$)(.*?)(\$)(.*)", "$\\3$", final_answer)
    final_answer = re.sub(r"(\\text\{)(.*?)(\})", "\\2", final_answer)
    final_answer = re.sub(r"(\\textbf\{)(.*?)(\})", "\\2", final_answer)
    final_answer = re.sub(r"(\\overline\{)(.*?)(\})", "\\2", final_answer)
    final_answer = re.sub(r"(\\boxed\{)(.*)(\})", "\\2", final_answer)
    # Shorthand TeX: \fracab -> \frac{a}{b}, \sqrta -> \sqrt{a}.
    final_answer = re.sub(r"(frac)([^{])(.)", "frac{\\2}{\\3}", final_answer)
    final_answer = re.sub(r"(sqrt)([^{])", "sqrt{\\2}", final_answer)
    final_answer = final_answer.replace("$", "")
    if final_answer.replace(",", "").isdigit():
        final_answer = final_answer.replace(",", "")
    return final_answer.strip()


def _last_boxed(text: str) -> str | None:
    """The content of the last complete ``\\boxed{…}`` in ``text`` (braces balanced), else None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[start + len("\\boxed{") : index]
    return None


def dapo_score(response: str, answer: str) -> tuple[bool, str]:
    """verl's ``math_dapo.compute_score`` as ``(correct, prediction)``; ``"[INVALID]"`` when none."""
    window = response[-_RESPONSE_WINDOW:]
    matches = _ANSWER_LINE.findall(window)
    prediction = normalize_final_answer(matches[-1] if matches else _INVALID)
    correct = prediction == normalize_final_answer(answer)
    if prediction != _INVALID:
        return correct, prediction
    boxed = _last_boxed(window[-_BOX_WINDOW:])
    if boxed is not None:
        return boxed == answer, boxed
    return correct, prediction


@dataclass(frozen=True)
class DapoGrader:
    """The training reward's verdict (see :func:`dapo_score`), ``extracted=None`` for no answer."""

    integer_answers: bool = False
    name: ClassVar[str] = "dapo"

    def warm_up(self) -> None:
        """Nothing to import: the rule is regular expressions."""

    def grade(self, response: str, answer: str) -> Verdict:
        correct, prediction = dapo_score(response, answer)
        if prediction == _INVALID:
            return Verdict(None, correct)
        if self.integer_answers:
            return _integer_verdict(prediction, normalize_final_answer(answer), correct)
        return Verdict(prediction, correct)


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
        lines = _ANSWER_LINE.findall(response)
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
            return _integer_verdict(extracted, answer, correct)
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
            if self.integer_answers and _as_integer(text) is not None:
                text = str(_as_integer(text))
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


GRADERS: dict[str, type[DapoGrader | MathVerifyGrader]] = {
    DapoGrader.name: DapoGrader,
    MathVerifyGrader.name: MathVerifyGrader,
}


def own_timeout(time_limit: float | None) -> int | None:
    """math_verify's own timeout for a per-sample ``time_limit`` (see :data:`OWN_TIMEOUT_SHARE`)."""
    if time_limit is None:
        return None
    seconds = int(time_limit * OWN_TIMEOUT_SHARE)
    return seconds if seconds >= 1 else None


def make_grader(name: str, *, integer_answers: bool = False, time_limit: float | None = None) -> Grader:
    """The grader called ``name`` (``dapo`` or ``math-verify``); UsageError for any other name.

    ``time_limit``: the per-sample limit :func:`grade_samples` enforces; math-verify then also
    runs its own timeouts at a share of it (see :func:`own_timeout`).
    """
    if name not in GRADERS:
        raise UsageError(
            f"--grader {unknown_key_problem(name, GRADERS, 'grader')}",
            hint=f"the graders are {', '.join(GRADERS)}",
        )
    if name == MathVerifyGrader.name:
        return MathVerifyGrader(integer_answers=integer_answers, timeout_s=own_timeout(time_limit))
    return GRADERS[name](integer_answers=integer_answers)


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


# --- many samples, in worker processes -----------------------------------------------------------


@dataclass(frozen=True)
class Failed:
    """A call that gave no result: ``"timeout"``, the exception as ``"Type: message"``, or a dead worker."""

    reason: str


def _worker_main(conn: Connection, graders: tuple[Grader, ...]) -> None:
    """A grading worker: warm up, say ``ready``, then answer ``(task, grader, method, args)``.

    Messages out: ``("ready",)``, ``("failed", message, hint)`` when warming up fails, and
    ``("result", task, value)`` (value: what ``grader.method(*args)`` returned, or
    :class:`Failed`). ``None`` in (or a closed pipe) ends the worker.
    """
    # Ctrl-C reaches the whole process group; the parent decides what happens to workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for grader in graders:
            grader.warm_up()
    except FipoError as error:
        conn.send(("failed", error.message, error.hint))
        return
    except Exception as error:  # noqa: BLE001 - any failure to start is reported, not raised
        conn.send(("failed", f"{type(error).__name__}: {error}", None))
        return
    conn.send(("ready",))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        task, grader_index, method, args = message
        try:
            value = getattr(graders[grader_index], method)(*args)
        except Exception as error:  # noqa: BLE001 - one bad sample must not end the run
            value = Failed(f"{type(error).__name__}: {error}")
        conn.send(("result", task, value))


@dataclass
class _Worker:
    """One worker process and the parent's view of it."""

    process: multiprocessing.process.BaseProcess
    conn: Connection
    deadline: float  # monotonic: when the current task (or, before ready, the start-up) runs out
    ready: bool = False
    task: int | None = None


class _Pool:
    """Worker processes that the parent can kill and replace one at a time.

    concurrent.futures cannot kill one hung worker (only break the whole pool), hence this
    small pool: one pipe per worker, one task in flight per worker, deadlines kept here.
    ``spawn`` gives every worker a fresh interpreter: nothing of the parent's threads or
    locks is inherited, and it behaves the same on every platform.
    """

    def __init__(self, graders: tuple[Grader, ...], size: int) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._graders = graders
        self.workers = [self._start() for _ in range(size)]

    def _start(self) -> _Worker:
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main, args=(child_end, self._graders), name="fipo-grader", daemon=True
        )
        process.start()
        # Only the child holds its end now, so the parent sees EOF as soon as the child dies.
        child_end.close()
        return _Worker(process, parent_end, deadline=time.monotonic() + STARTUP_LIMIT)

    def replace(self, worker: _Worker) -> None:
        """Kill ``worker`` (hung, dead or not starting) and put a fresh one in its place."""
        self._kill(worker)
        self.workers[self.workers.index(worker)] = self._start()

    @staticmethod
    def _kill(worker: _Worker) -> None:
        worker.process.kill()
        worker.process.join()
        worker.process.close()  # its sentinel fd: a long run may replace many workers
        worker.conn.close()

    def close(self) -> None:
        """Ask idle workers to exit, then kill whatever is left (busy, starting or slow to exit)."""
        asked = []
        for worker in self.workers:
            if worker.ready and worker.task is None:
                try:
                    worker.conn.send(None)
                    asked.append(worker)
                except OSError:
                    pass  # already gone
        for worker in asked:
            worker.process.join(timeout=1.0)
        for worker in self.workers:
            self._kill(worker)


@dataclass(frozen=True)
class _Call:
    """One call to run in a worker: ``graders[grader].method(*args)`` within ``limit`` seconds."""

    grader: int
    method: str
    args: tuple[Any, ...]
    limit: float


def _run_calls(
    graders: tuple[Grader, ...], calls: Sequence[_Call], workers: int, on_result: Callable[[int, Any], None]
) -> None:
    """Run ``calls`` in up to ``workers`` processes; ``on_result(index, value or Failed)`` per call.

    Past its limit a call's worker is killed and replaced (``Failed("timeout")``); a worker
    that dies fails its call (``Failed("worker died …")``). Neither ends the run.
    """
    tasks: deque[int] = deque(range(len(calls)))
    left = len(calls)

    def finish(task: int, value: Any) -> None:
        nonlocal left
        left -= 1
        on_result(task, value)

    pool = _Pool(graders, min(workers, len(calls))) if calls else None
    try:
        while pool is not None and left:
            for worker in pool.workers:
                if worker.ready and worker.task is None and tasks:
                    task = tasks.popleft()
                    call = calls[task]
                    try:
                        worker.conn.send((task, call.grader, call.method, call.args))
                    except OSError:  # it died while idle: not this task's fault, so retry it
                        tasks.appendleft(task)
                        pool.replace(worker)
                        continue
                    worker.task, worker.deadline = task, time.monotonic() + call.limit
            waits = [w for w in pool.workers if not w.ready or w.task is not None]
            timeout = max(0.0, min(w.deadline for w in waits) - time.monotonic())
            readable = set(wait([w.conn for w in waits], timeout))
            for worker in list(pool.workers):
                if worker.conn in readable:
                    _receive(pool, worker, finish)
            now = time.monotonic()
            for worker in list(pool.workers):
                if worker.deadline > now or (worker.ready and worker.task is None):
                    continue
                if not worker.ready:
                    raise FipoError(f"a grading worker did not start within {STARTUP_LIMIT:.0f} s")
                finish(worker.task, Failed(TIMEOUT))
                pool.replace(worker)
    finally:
        if pool is not None:
            pool.close()


def grade_samples(
    responses: Sequence[str],
    answers: Sequence[str],
    graders: Sequence[Grader],
    *,
    workers: int = 1,
    time_limit: float = DEFAULT_TIME_LIMIT,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, list[Verdict]]:
    """Grade ``responses[i]`` against ``answers[i]`` with every grader, in worker processes.

    Each (sample, grader) call runs in a worker and may take ``time_limit`` seconds: past
    that the parent kills the worker, records ``Verdict(None, False, "timeout")`` and starts
    a replacement. A grader that raises gives ``error="Type: message"``; a worker that dies
    gives ``error="worker died …"``. Neither ends the run. ``on_progress(done, total)`` is
    called with 0 first and then whenever a sample has been graded by every grader.

    Returns ``{grader name: verdicts in input order}``. Raises UsageError for mismatched
    lengths or bad settings, FipoError when workers cannot start (e.g. math-verify missing).
    """
    if len(responses) != len(answers):
        raise UsageError(
            f"grade_samples: {len(responses)} responses but {len(answers)} answers; they pair up one to one"
        )
    check_grading_options(workers, time_limit)
    names = [grader.name for grader in graders]
    if not names or len(set(names)) != len(names):
        raise UsageError(f"graders {names}: give at least one grader, each at most once")
    graders = tuple(graders)
    total = len(responses)
    # Call t: sample t // G, grader t % G.
    calls = [
        _Call(grader, "grade", (responses[sample], answers[sample]), time_limit)
        for sample in range(total)
        for grader in range(len(graders))
    ]
    verdicts: list[Verdict | None] = [None] * len(calls)
    open_graders = [len(graders)] * total
    done = 0
    if on_progress is not None:
        on_progress(0, total)

    def finish(task: int, value: Any) -> None:
        nonlocal done
        verdicts[task] = Verdict(None, False, value.reason) if isinstance(value, Failed) else value
        sample = task // len(graders)
        open_graders[sample] -= 1
        if open_graders[sample] == 0:
            done += 1
            if on_progress is not None:
                on_progress(done, total)

    _run_calls(graders, calls, workers, finish)
    grouped: dict[str, list[Verdict]] = {name: [] for name in names}
    for task, verdict in enumerate(verdicts):
        grouped[names[task % len(graders)]].append(verdict)
    return grouped


def vote_classes(
    grader: MathVerifyGrader,
    problems: Sequence[Sequence[str]],
    *,
    workers: int = 1,
    time_limit: float = DEFAULT_TIME_LIMIT,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[list[int | None] | None]:
    """cons@n's equivalence classes of each problem's responses (see :meth:`MathVerifyGrader.vote_classes`).

    One call per problem, in worker processes, limited to ``time_limit`` seconds per
    response; a problem whose call fails or runs out of time gets None (its votes then go by
    the extracted text, as for dapo). ``on_progress(done, problems)`` as in :func:`grade_samples`.
    """
    check_grading_options(workers, time_limit)
    calls = [
        _Call(0, "vote_classes", (tuple(responses),), time_limit * max(1, len(responses))) for responses in problems
    ]
    classes: list[list[int | None] | None] = [None] * len(calls)
    done = 0
    if on_progress is not None:
        on_progress(0, len(calls))

    def finish(task: int, value: Any) -> None:
        nonlocal done
        classes[task] = None if isinstance(value, Failed) else value
        done += 1
        if on_progress is not None:
            on_progress(done, len(calls))

    _run_calls((grader,), calls, workers, finish)
    return classes


def _receive(pool: _Pool, worker: _Worker, finish: Callable[[int, Any], None]) -> None:
    """Handle one message (or the death) of ``worker``."""
    try:
        message = worker.conn.recv()
    except (EOFError, OSError):
        worker.process.join()
        if not worker.ready:
            raise FipoError(
                f"a grading worker exited with code {worker.process.exitcode} while starting"
            ) from None
        if worker.task is not None:
            finish(worker.task, Failed(f"worker died (exit code {worker.process.exitcode})"))
        pool.replace(worker)
        return
    if message[0] == "ready":
        worker.ready = True
    elif message[0] == "failed":
        raise FipoError(message[1], hint=message[2])
    else:
        _, task, value = message
        worker.task = None
        finish(task, value)


# --- comparing graders ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GraderComparison:
    """How graders judged the same samples.

    ``disagreements``: indices of the samples whose correctness differs between graders.
    Per grader: how many samples it judged correct, found no answer in, and failed on.
    """

    graders: tuple[str, ...]
    samples: int
    disagreements: tuple[int, ...]
    correct: Mapping[str, int] = field(default_factory=dict)
    no_answer: Mapping[str, int] = field(default_factory=dict)
    errors: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "graders": list(self.graders),
            "samples": self.samples,
            "disagreements": list(self.disagreements),
            "correct": dict(self.correct),
            "no_answer": dict(self.no_answer),
            "errors": dict(self.errors),
        }


def compare_graders(verdicts: Mapping[str, Sequence[Verdict]]) -> GraderComparison:
    """Compare the verdicts of several graders on the same samples (as :func:`grade_samples` returns)."""
    names = tuple(verdicts)
    lengths = {name: len(verdicts[name]) for name in names}
    if len(set(lengths.values())) > 1:
        raise UsageError(f"compare_graders: the graders judged different numbers of samples: {lengths}")
    samples = next(iter(lengths.values()), 0)
    disagreements = tuple(
        index for index in range(samples) if len({verdicts[name][index].correct for name in names}) > 1
    )
    return GraderComparison(
        graders=names,
        samples=samples,
        disagreements=disagreements,
        correct={name: sum(v.correct for v in verdicts[name]) for name in names},
        no_answer={name: sum(v.extracted is None for v in verdicts[name]) for name in names},
        errors={name: sum(v.error is not None for v in verdicts[name]) for name in names},
    )
