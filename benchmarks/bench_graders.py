"""Grading throughput of each grader on AIME-length responses, on one core.

Run by hand:  python benchmarks/bench_graders.py [--samples 2000] [--tokens 3000]

The responses are synthetic chains of thought (prose, inline LaTeX, numbers; ≈ 4 characters
per token) of about ``--tokens`` tokens, ending like a model's: 70 % an ``Answer:`` line, 20 %
a ``\\boxed{}``, 10 % cut off without an answer; the answers are the AIME 2024 answers, half
of the responses right. The process is pinned to one CPU (workers inherit it).

Two ways per grader, each in responses per wall-clock second and per CPU second (the
latter is steadier on a shared machine):
* ``in-process``: ``grader.grade`` in a loop, after a warm-up: the grader's own cost.
* ``grade_samples``: the same responses through one worker process, start-up (spawn,
  imports, warm-up) and pipe traffic included: what ``fipo eval`` gets from one worker.
  Its CPU time is the parent's plus the (joined) worker's.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import time

from fipo_cli.data.bundled import load_bundled
from fipo_cli.eval.graders import GRADERS, grade_samples, make_grader

PIECES = [
    "Let me think about this carefully.",
    "We have $x + y = {a}$ and $xy = {b}$.",
    "Then $\\frac{{{a}}}{{{b}}} = {c}$, so",
    "Squaring both sides gives $x^2 + 2xy + y^2 = {a}^2$.",
    "Wait, that is not right; let me recompute.",
    "By the Pythagorean theorem, $a^2 + b^2 = c^2$ with $c = {c}$.",
    "The number of ways is $\\binom{{{a}}}{{{b}}}$.",
    "So the remainder when divided by 1000 is {c}.",
    "Hmm, checking with $n = {a}$: the sum is {b}.",
    "Therefore $\\sqrt{{{a}}} \\cdot \\sqrt{{{b}}} = {c}$.",
]


def make_response(rng: random.Random, tokens: int, answer: str) -> str:
    """About ``tokens`` tokens of reasoning ending in ``answer`` (or cut off)."""
    parts, length = [], 0
    while length < tokens * 4:
        piece = rng.choice(PIECES).format(a=rng.randint(2, 999), b=rng.randint(2, 999), c=rng.randint(0, 999))
        parts.append(piece)
        length += len(piece) + 1
    body = " ".join(parts)
    ending = rng.random()
    if ending < 0.7:
        return f"{body}\n\nAnswer: {answer}"
    if ending < 0.9:
        return f"{body}\n\nThe answer is $\\boxed{{{answer}}}$."
    return body


def workload(samples: int, tokens: int) -> tuple[list[str], list[str]]:
    rng = random.Random(0)
    aime24 = [problem["answer"] for problem in load_bundled("aime24")]
    answers = [aime24[i % len(aime24)] for i in range(samples)]
    responses = [make_response(rng, tokens, a if rng.random() < 0.5 else str(rng.randint(0, 999))) for a in answers]
    return responses, answers


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have been joined."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def in_process_rates(name: str, responses: list[str], answers: list[str]) -> tuple[float, float]:
    grader = make_grader(name, integer_answers=True)
    grader.warm_up()
    for response, answer in zip(responses[:20], answers[:20], strict=True):
        grader.grade(response, answer)
    wall, cpu = time.perf_counter(), cpu_seconds()
    for response, answer in zip(responses, answers, strict=True):
        grader.grade(response, answer)
    return len(responses) / (time.perf_counter() - wall), len(responses) / (cpu_seconds() - cpu)


def worker_rates(name: str, responses: list[str], answers: list[str]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), cpu_seconds()
    grade_samples(responses, answers, [make_grader(name, integer_answers=True)], workers=1)
    return len(responses) / (time.perf_counter() - wall), len(responses) / (cpu_seconds() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--tokens", type=int, default=3000)
    parser.add_argument("--graders", nargs="+", default=list(GRADERS), choices=list(GRADERS))
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    responses, answers = workload(args.samples, args.tokens)
    mean_chars = sum(map(len, responses)) / len(responses)
    print(f"python {platform.python_version()}  {platform.processor() or platform.machine()}  one core")
    print(f"{len(responses)} responses of ≈{args.tokens} tokens ({mean_chars:.0f} characters on average)")
    print("| grader | in-process /wall s | in-process /CPU s | grade_samples, 1 worker /wall s | … /CPU s |")
    print("|---|---|---|---|---|")
    for name in args.graders:
        rates = (*in_process_rates(name, responses, answers), *worker_rates(name, responses, answers))
        print(f"| {name} | " + " | ".join(f"{rate:,.0f}" for rate in rates) + " |")


if __name__ == "__main__":
    main()
