"""Evaluation metrics from graded samples: avg@n, cons@n, pass@k, response lengths.

Inputs are the verdicts of one grader grouped by problem (every problem with the same
number n of samples) and, for lengths, per-sample token counts and finish reasons.
Outputs are frozen dataclasses with ``to_json()`` for results.json. Every rate carries its
exact value and the whole percent the paper's Table 1 reports.

Definitions (problem i has n samples, c_i of them correct; P problems):

* avg@n = mean_i c_i / n: the paper's "Pass@1".
* its standard error = s / sqrt(P), with s the sample standard deviation (divisor P − 1) of
  the per-problem accuracies c_i / n: how far avg@n would move over another draw of
  problems of the same kind (the spread of the n samples within a problem is inside it).
* pass@k = mean_i [1 − C(n − c_i, k) / C(n, k)], the unbiased estimator of Chen et al.
  (2021), computed as 1 − prod_{j = n − c_i + 1}^{n} (1 − k / j): no huge binomials.
* cons@n: per problem, a majority vote over answer classes; samples without an answer do
  not vote. By default a class is one extracted answer text (dapo: verl's normalised
  string); a grader may give classes of equivalent answers instead (math-verify: answers
  that verify as equal, so ``3/4`` and ``0.75`` vote together), reported by the first
  answer given in the class. Tie rule: when several classes share the most votes, the
  problem counts as correct only if every tied class is correct; no votes at all count as
  incorrect. A class is correct when every sample in it was graded correct.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fipo_cli.core.errors import ConfigError, UsageError
from fipo_cli.eval.graders import Verdict

TRUNCATED = "length"  # the finish reason of a response cut at the length limit


def whole_percent(value: float) -> int:
    """``value`` (a fraction) in whole percent, halves rounded up as in the paper's tables.

    The tiny epsilon keeps exact halves (0.565 is 56.4999… in binary) rounding up.
    """
    return math.floor(value * 100 + 0.5 + 1e-9)


@dataclass(frozen=True)
class Rate:
    """A fraction in [0, 1] and the whole percent it is reported as."""

    value: float

    @property
    def percent(self) -> int:
        return whole_percent(self.value)

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "percent": self.percent}


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k of one problem with ``n`` samples, ``c`` correct (Chen et al., 2021).

    1 − C(n−c, k)/C(n, k) as the product 1 − prod_{j=n−c+1}^{n} (1 − k/j), stable for any n.
    """
    if n < 1:
        raise UsageError(f"pass@k: n={n}: a problem needs at least one sample")
    if not 0 <= c <= n:
        raise UsageError(f"pass@k: c={c}: the number correct must lie in 0…n={n}")
    if not 1 <= k <= n:
        raise UsageError(f"pass@k: k={k}: must lie in 1…n={n} (the number of samples per problem)")
    if n - c < k:  # every draw of k samples holds a correct one
        return 1.0
    return 1.0 - math.prod(1.0 - k / j for j in range(n - c + 1, n + 1))


def default_ks(n: int) -> tuple[int, ...]:
    """The k reported for n samples: 1, 2, 4, … below n, and n itself."""
    if n < 1:
        raise UsageError(f"n={n}: a problem needs at least one sample")
    ks = []
    k = 1
    while k < n:
        ks.append(k)
        k *= 2
    return (*ks, n)


@dataclass(frozen=True)
class Vote:
    """The majority vote of one problem's samples.

    ``answer``: the winning answer, None when no sample gave one; ``tied``: every answer
    that shares the top vote count (``answer`` is the first of them given); ``correct``
    follows the tie rule in the module docstring.
    """

    answer: str | None
    votes: int
    tied: tuple[str, ...]
    correct: bool


def majority_vote(verdicts: Sequence[Verdict], classes: Sequence[int | None] | None = None) -> Vote:
    """cons@n's vote over ``verdicts`` (one problem): answers without ``extracted`` do not vote.

    ``classes``: per sample, its answer class (None: no vote); default: one class per
    extracted text. A class is named by the first extracted answer given in it.
    """
    if classes is None:
        classes = [v.extracted for v in verdicts]
    elif len(classes) != len(verdicts):
        raise UsageError(f"majority_vote: {len(classes)} classes for {len(verdicts)} verdicts; give one per sample")
    members: dict[Any, list[Verdict]] = {}  # first-given order
    for verdict, group in zip(verdicts, classes, strict=True):
        if verdict.extracted is not None and group is not None:
            members.setdefault(group, []).append(verdict)
    if not members:
        return Vote(None, 0, (), False)
    top = max(len(group) for group in members.values())
    tied = [group for group in members.values() if len(group) == top]
    names = tuple(group[0].extracted for group in tied)
    return Vote(names[0], top, names, correct=all(v.correct for group in tied for v in group))


@dataclass(frozen=True)
class ProblemAccuracy:
    """One problem: ``n`` samples, ``correct`` of them correct, and the majority vote."""

    problem_id: str
    n: int
    correct: int
    vote: Vote

    @property
    def accuracy(self) -> float:
        return self.correct / self.n

    def to_json(self) -> dict[str, Any]:
        return {
            "problem_id": self.problem_id,
            "n": self.n,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "majority_answer": self.vote.answer,
            "majority_votes": self.vote.votes,
            "majority_tied": list(self.vote.tied),
            "majority_correct": self.vote.correct,
        }


@dataclass(frozen=True)
class AccuracyReport:
    """avg@n with its standard error, cons@n and pass@k over ``problems`` problems of n samples.

    ``stderr`` is None for a single problem (no spread to measure).
    """

    n: int
    problems: int
    avg: Rate
    stderr: float | None
    cons: Rate
    pass_at: Mapping[int, Rate]
    per_problem: tuple[ProblemAccuracy, ...]

    def to_json(self) -> dict[str, Any]:
        n = self.n
        return {
            "n": n,
            "problems": self.problems,
            f"avg@{n}": self.avg.to_json(),
            f"avg@{n}_stderr": self.stderr,
            f"cons@{n}": self.cons.to_json(),
            "pass@k": {str(k): rate.to_json() for k, rate in self.pass_at.items()},
            "per_problem": [problem.to_json() for problem in self.per_problem],
        }


def accuracy_report(
    problems: Mapping[str, Sequence[Verdict]],
    ks: Sequence[int] | None = None,
    classes: Mapping[str, Sequence[int | None] | None] | None = None,
) -> AccuracyReport:
    """avg@n, its standard error, cons@n and pass@k (``ks``, default :func:`default_ks`).

    ``problems``: problem id → that problem's verdicts from one grader; ``classes``: problem
    id → cons@n's answer classes (see :func:`majority_vote`; missing or None: by extracted
    text). ConfigError when a problem has no samples or the problems have different n;
    UsageError for no problems or a k outside 1…n.
    """
    if not problems:
        raise UsageError("no problems to score: give at least one problem with graded samples")
    sizes = {problem_id: len(verdicts) for problem_id, verdicts in problems.items()}
    # The n most problems have: the odd ones out are named against it.
    n = Counter(size for size in sizes.values() if size).most_common(1)[0][0] if any(sizes.values()) else 0
    bad = [f"problem {pid!r}: no samples" for pid, size in sizes.items() if size == 0]
    bad += [
        f"problem {pid!r}: {size} samples, but most problems have n={n}; avg@n needs the same n for every problem"
        for pid, size in sizes.items()
        if size not in (0, n)
    ]
    if bad:
        raise ConfigError(bad, hint="grade every sample of every problem")
    ks = default_ks(n) if ks is None else tuple(ks)
    outside = [k for k in ks if not 1 <= k <= n]
    if outside:
        raise UsageError(f"pass@k: k={outside[0]}: must lie in 1…n={n} (the number of samples per problem)")
    per_problem = tuple(
        ProblemAccuracy(pid, n, sum(v.correct for v in verdicts), majority_vote(verdicts, (classes or {}).get(pid)))
        for pid, verdicts in problems.items()
    )
    accuracies = [problem.accuracy for problem in per_problem]
    count = len(per_problem)
    return AccuracyReport(
        n=n,
        problems=count,
        avg=Rate(statistics.fmean(accuracies)),
        stderr=statistics.stdev(accuracies) / math.sqrt(count) if count > 1 else None,
        cons=Rate(sum(problem.vote.correct for problem in per_problem) / count),
        pass_at={k: Rate(statistics.fmean(pass_at_k(n, p.correct, k) for p in per_problem)) for k in ks},
        per_problem=per_problem,
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) by linear interpolation between closest ranks.

    Rank h = (N − 1)·q/100 over the sorted values, interpolated between floor(h) and the
    next: numpy's default method, and ``statistics.quantiles(method="inclusive")``.
    """
    if not values:
        raise UsageError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (rank - low) * (ordered[high] - ordered[low])


@dataclass(frozen=True)
class LengthReport:
    """Response lengths in tokens over all samples.

    ``truncated``: the share cut at the length limit (finish reason ``"length"``);
    ``mean_correct`` / ``mean_incorrect``: None when no sample is correct / incorrect.
    """

    samples: int
    mean: float
    median: float
    p90: float
    max: int
    truncated: Rate
    mean_correct: float | None
    mean_incorrect: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "mean": self.mean,
            "median": self.median,
            "p90": self.p90,
            "max": self.max,
            "truncated": self.truncated.to_json(),
            "mean_correct": self.mean_correct,
            "mean_incorrect": self.mean_incorrect,
        }


def length_report(
    token_counts: Sequence[int], finish_reasons: Sequence[str | None], correct: Sequence[bool]
) -> LengthReport:
    """Length statistics of samples given as three parallel sequences (one entry per sample).

    UsageError when the sequences differ in length, are empty, or hold a negative count.
    """
    sizes = (len(token_counts), len(finish_reasons), len(correct))
    if len(set(sizes)) != 1:
        raise UsageError(
            f"length_report: {sizes[0]} token counts, {sizes[1]} finish reasons and {sizes[2]} verdicts; "
            "give one of each per sample"
        )
    if not token_counts:
        raise UsageError("length_report: no samples")
    if min(token_counts) < 0:
        raise UsageError(f"length_report: token count {min(token_counts)}: must be ≥ 0")
    right = [length for length, ok in zip(token_counts, correct, strict=True) if ok]
    wrong = [length for length, ok in zip(token_counts, correct, strict=True) if not ok]
    return LengthReport(
        samples=len(token_counts),
        mean=statistics.fmean(token_counts),
        median=float(statistics.median(token_counts)),
        p90=percentile(token_counts, 90),
        max=max(token_counts),
        truncated=Rate(sum(reason == TRUNCATED for reason in finish_reasons) / len(token_counts)),
        mean_correct=statistics.fmean(right) if right else None,
        mean_incorrect=statistics.fmean(wrong) if wrong else None,
    )
