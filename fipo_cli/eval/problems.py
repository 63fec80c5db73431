"""The problems an evaluation asks: a bundled benchmark or any problem set with answers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fipo_cli.core.errors import ConfigError, UsageError
from fipo_cli.data.sources import ANSWER_COLUMNS, PROBLEM_COLUMNS, read_records, resolve_source
from fipo_cli.eval.graders.verdict import as_integer

ID_KEYS = ("id", "unique_id", "problem_id")


@dataclass(frozen=True)
class Problem:
    id: str
    problem: str
    answer: str


@dataclass(frozen=True)
class Benchmark:
    """A named problem set. ``integer_answers``: every reference answer is an integer (AIME)."""

    name: str
    problems: tuple[Problem, ...]

    @property
    def integer_answers(self) -> bool:
        return integer_answers(problem.answer for problem in self.problems)


def integer_answers(answers: Iterable[str | None]) -> bool:
    """Whether every reference answer is an integer (AIME): then ``025`` and ``25`` are equal."""
    return all(as_integer(answer or "") is not None for answer in answers)


def _column(columns: Sequence[str], explicit: str | None, candidates: Sequence[str], option: str,
            problems: list[str]) -> str:
    """The column to read (``explicit`` or the first candidate present); a problem line if none."""
    if explicit is not None:
        if explicit in columns:
            return explicit
        problems.append(f"{option} {explicit!r}: no such column; the columns are {', '.join(columns)}")
        return explicit
    for name in candidates:
        if name in columns:
            return name
    problems.append(f"no column looks like the {option[2:-4]} (tried {', '.join(candidates)}); name it with {option}; "
                    f"the columns are {', '.join(columns)}")
    return candidates[0]


def load_benchmark(
    spec: str, *, problem_key: str | None = None, answer_key: str | None = None, limit: int | None = None
) -> Benchmark:
    """Load a bundled benchmark (aime24, aime25, math500), a local file or a hub dataset; its first ``limit``
    problems when given (a checked ``--limit``, see :class:`fipo_cli.eval.request.EvalRequest`)."""
    source = resolve_source(spec)
    records = list(read_records(source, "--dataset"))
    if not records:
        raise UsageError(f"{spec!r} holds no problems")
    columns = list(records[0])
    problems_found: list[str] = []
    problem_column = _column(columns, problem_key, PROBLEM_COLUMNS, "--problem-key", problems_found)
    answer_column = _column(columns, answer_key, ANSWER_COLUMNS, "--answer-key", problems_found)
    if problems_found:
        raise ConfigError(problems_found)
    id_column = next((name for name in ID_KEYS if name in columns), None)
    problems = tuple(
        Problem(
            id=str(record[id_column]) if id_column else str(index),
            problem=str(record[problem_column]),
            answer=_answer_text(record[answer_column]),
        )
        for index, record in enumerate(records)
    )
    duplicated = len({p.id for p in problems}) != len(problems)
    if duplicated:  # ids name samples in samples.jsonl, so they must be unique
        problems = tuple(Problem(str(i), p.problem, p.answer) for i, p in enumerate(problems))
    return Benchmark(name=source.name, problems=problems[:limit] if limit else problems)


def _answer_text(value: Any) -> str:
    if isinstance(value, Mapping) and "ground_truth" in value:  # verl's reward_model column
        return str(value["ground_truth"])
    return str(value)
