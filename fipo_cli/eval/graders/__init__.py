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

:func:`~fipo_cli.eval.graders.pool.grade_samples` grades many responses with several graders in worker processes, each
(sample, grader) call under a time limit the parent enforces; :func:`compare_graders` says
where graders disagree (:mod:`~fipo_cli.eval.graders.comparison`).
"""

from __future__ import annotations

from fipo_cli.core.errors import UsageError, unknown_key_problem
from fipo_cli.eval.graders.comparison import GraderComparison, compare_graders
from fipo_cli.eval.graders.dapo import DapoGrader, dapo_score, normalize_final_answer
from fipo_cli.eval.graders.mathverify import (
    MathVerifyGrader,
    MathVerifyTimeout,
    join_thousands,
    math_verify_available,
    require_math_verify,
)
from fipo_cli.eval.graders.pool import Failed, grade_samples, vote_classes
from fipo_cli.eval.graders.verdict import (
    DEFAULT_TIME_LIMIT,
    OWN_TIMEOUT_SHARE,
    STARTUP_LIMIT,
    TIMEOUT,
    Grader,
    Verdict,
    check_grading_options,
    grading_option_problems,
)

__all__ = [
    "DEFAULT_TIME_LIMIT", "GRADERS", "OWN_TIMEOUT_SHARE", "STARTUP_LIMIT", "TIMEOUT", "DapoGrader", "Failed", "Grader",
    "GraderComparison", "MathVerifyGrader", "MathVerifyTimeout", "Verdict", "check_grading_options",
    "compare_graders", "dapo_score", "grade_samples", "grading_option_problems", "join_thousands", "make_grader",
    "math_verify_available", "normalize_final_answer", "own_timeout", "require_math_verify", "vote_classes",
]

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
