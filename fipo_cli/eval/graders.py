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
    (``parse`` and ``verify``), with its signal-based timeouts switched off (they silently
    fail in threads and worker processes); :func:`grade_samples` enforces the time limit.

``integer_answers=True`` (AIME) compares integer values when the extracted answer and the
reference are both integers, so ``025`` equals ``25``; integer answers are then reported
without leading zeros, so that they vote together in cons@n.

:func:`grade_samples` grades many responses with several graders in worker processes, each
(sample, grader) call under a time limit the parent enforces; :func:`compare_graders` says
where graders disagree.
"""

from __future__ import annotations

import functools
import multiprocessing
import re
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, ClassVar, Protocol

from fipo_cli.errors import FipoError, UsageError, unknown_key_problem

# Seconds one grader may spend on one sample (math_verify's own default is 5 s per step).
DEFAULT_TIME_LIMIT = 10.0
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


def _math_verify() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``math_verify.parse`` and ``verify``, imported on first use (sympy makes them heavy)."""
    import logging

    try:
        from math_verify import parse, verify
    except ImportError as error:
        raise FipoError(
            f"the math-verify grader needs the math-verify package ({error})",
            hint="pip install 'fipo[eval]' (or pip install math-verify), or grade with --grader dapo",
        ) from error
    # With its timeouts off, math_verify warns once per process that the caller must enforce
    # them; grade_samples does, so the warning would only repeat in every worker's output.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    return parse, verify


@functools.lru_cache(maxsize=4096)
def _parse_reference(answer: str) -> tuple[Any, ...]:
    """The reference parsed once per worker (every sample of a problem shares it).

    A bare reference such as ``\\sqrt{2}`` has no LaTeX delimiters, and math_verify only
    reads delimited LaTeX, so it is wrapped in ``$…$`` unless it already has ``$`` or a box.
    """
    parse, _ = _math_verify()
    delimited = "$" in answer or "\\boxed" in answer
    parsed = parse(answer if delimited else f"${answer}$", parsing_timeout=None)
    if not parsed and not delimited:
        parsed = parse(answer, parsing_timeout=None)
    return tuple(parsed)


@dataclass(frozen=True)
class MathVerifyGrader:
    """math_verify's equivalence (``verify(gold, parse(response))``), timeouts left to the caller.

    ``extracted`` is the parsed answer as sympy prints it (``1/2`` for ``\\frac{1}{2}``),
    so that equal answers written differently vote together in cons@n; the matched text
    when math_verify could not turn it into sympy.
    """

    integer_answers: bool = False
    name: ClassVar[str] = "math-verify"

    def warm_up(self) -> None:
        """Import math_verify and sympy and run one comparison (sympy sets up caches on first use)."""
        self.grade("Answer: $\\frac{1}{2}$", "0.5")

    def grade(self, response: str, answer: str) -> Verdict:
        parse, verify = _math_verify()
        reference = _parse_reference(answer)
        if not reference:
            return Verdict(None, False, f"the reference answer {answer!r} could not be parsed")
        parsed = parse(response, parsing_timeout=None)
        if not parsed:
            return Verdict(None, False)
        extracted = str(parsed[0])
        correct = verify(list(reference), parsed, timeout_seconds=None)
        if self.integer_answers:
            return _integer_verdict(extracted, answer, correct)
        return Verdict(extracted, correct)


GRADERS: dict[str, type[DapoGrader] | type[MathVerifyGrader]] = {
    DapoGrader.name: DapoGrader,
    MathVerifyGrader.name: MathVerifyGrader,
}


def make_grader(name: str, *, integer_answers: bool = False) -> Grader:
    """The grader called ``name`` (``dapo`` or ``math-verify``); UsageError for any other name."""
    if name not in GRADERS:
        raise UsageError(
            f"--grader {unknown_key_problem(name, GRADERS, 'grader')}",
            hint=f"the graders are {', '.join(GRADERS)}",
        )
    return GRADERS[name](integer_answers=integer_answers)


# --- many samples, in worker processes -----------------------------------------------------------


def _worker_main(conn: Connection, graders: tuple[Grader, ...]) -> None:
    """A grading worker: warm up, say ``ready``, then answer ``(task, grader, response, answer)``.

    Messages out: ``("ready",)``, ``("failed", message, hint)`` when warming up fails, and
    ``("verdict", task, Verdict)``. ``None`` in (or a closed pipe) ends the worker.
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
        task, grader_index, response, answer = message
        try:
            verdict = graders[grader_index].grade(response, answer)
        except Exception as error:  # noqa: BLE001 - one bad sample must not end the run
            verdict = Verdict(None, False, f"{type(error).__name__}: {error}")
        conn.send(("verdict", task, verdict))


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
    if workers < 1:
        raise UsageError(f"--workers {workers}: must be ≥ 1")
    if not time_limit > 0:
        raise UsageError(f"--time-limit {time_limit}: must be > 0 seconds")
    names = [grader.name for grader in graders]
    if not names or len(set(names)) != len(names):
        raise UsageError(f"graders {names}: give at least one grader, each at most once")
    graders = tuple(graders)
    total = len(responses)
    tasks: deque[int] = deque(range(total * len(graders)))  # task t: sample t // G, grader t % G
    verdicts: list[Verdict | None] = [None] * len(tasks)
    open_graders = [len(graders)] * total
    done = 0
    if on_progress is not None:
        on_progress(0, total)

    def finish(task: int, verdict: Verdict) -> None:
        nonlocal done
        verdicts[task] = verdict
        sample = task // len(graders)
        open_graders[sample] -= 1
        if open_graders[sample] == 0:
            done += 1
            if on_progress is not None:
                on_progress(done, total)

    pool = _Pool(graders, min(workers, len(tasks))) if tasks else None
    try:
        while pool is not None and done < total:
            for worker in pool.workers:
                if worker.ready and worker.task is None and tasks:
                    task = tasks.popleft()
                    sample = task // len(graders)
                    try:
                        worker.conn.send((task, task % len(graders), responses[sample], answers[sample]))
                    except OSError:  # it died while idle: not this task's fault, so retry it
                        tasks.appendleft(task)
                        pool.replace(worker)
                        continue
                    worker.task, worker.deadline = task, time.monotonic() + time_limit
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
                finish(worker.task, Verdict(None, False, TIMEOUT))
                pool.replace(worker)
    finally:
        if pool is not None:
            pool.close()
    grouped: dict[str, list[Verdict]] = {name: [] for name in names}
    for task, verdict in enumerate(verdicts):
        grouped[names[task % len(graders)]].append(verdict)
    return grouped


def _receive(pool: _Pool, worker: _Worker, finish: Callable[[int, Verdict], None]) -> None:
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
            finish(worker.task, Verdict(None, False, f"worker died (exit code {worker.process.exitcode})"))
        pool.replace(worker)
        return
    if message[0] == "ready":
        worker.ready = True
    elif message[0] == "failed":
        raise FipoError(message[1], hint=message[2])
    else:
        _, task, verdict = message
        worker.task = None
        finish(task, verdict)


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
