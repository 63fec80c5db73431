"""``samples.jsonl``: every generation of an evaluation, one JSON object per line.

Schema (``fipo eval score`` reads files from other tools in this form)::

    prompt_id      str   required: the problem's id
    sample_index   int   required: 0 … n−1 within the problem
    response       str   required: the model's completion
    answer         str   the reference answer (required unless ``--bench`` supplies it)
    prompt         str   the exact text the model saw
    token_count    int   completion tokens
    finish_reason  str   "stop" or "length" (truncated)
    verdicts       {grader: {"extracted": str | null, "correct": bool, "error": str | null}}

Generations are appended as they finish and flushed, so a killed evaluation loses at most
the line being written; :func:`read_samples` drops such a cut line and the next
run regenerates only what is missing. Grading rewrites the file atomically with verdicts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fipo_cli.errors import FipoError
from fipo_cli.runs import atomic_write_text

REQUIRED = ("prompt_id", "sample_index", "response")


@dataclass
class Sample:
    prompt_id: str
    sample_index: int
    response: str
    answer: str | None = None
    prompt: str | None = None
    token_count: int | None = None
    finish_reason: str | None = None
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int]:
        return self.prompt_id, self.sample_index


def _parse(line: str, path: Path, number: int) -> Sample:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise FipoError(f"{path} line {number} is not valid JSON: {error}") from error
    missing = [key for key in REQUIRED if key not in record]
    if missing:
        raise FipoError(
            f"{path} line {number} lacks {', '.join(missing)}",
            hint="samples.jsonl needs prompt_id, sample_index and response per line (see `fipo eval score --help`)",
        )
    known = {name: record[name] for name in Sample.__dataclass_fields__ if name in record}
    known["prompt_id"] = str(known["prompt_id"])
    return Sample(**known)


def read_samples(path: Path, *, repair: bool = False) -> list[Sample]:
    """Every sample in ``path`` (none if it does not exist).

    A last line without its newline is what a killed writer leaves: with ``repair`` it is
    cut from the file (so appending can go on), otherwise it is an error like any bad line.
    """
    if not path.exists():
        return []
    data = path.read_bytes()
    complete, _, cut = data.rpartition(b"\n")
    if cut:
        if not repair:
            complete = data
        else:
            with path.open("r+b") as handle:
                handle.truncate(len(complete) + 1 if complete else 0)
    text = complete.decode("utf-8")
    return [_parse(line, path, number) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


class SampleWriter:
    """Appends samples to a file as they are generated, each one handed to the OS before the next."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def append(self, sample: Sample) -> None:
        self._file.write(json.dumps(_record(sample), ensure_ascii=False) + "\n")
        # Flushed to the OS, which keeps it through a killed or crashed fipo; no fsync per
        # sample (thousands of them): after a machine crash the lost tail is regenerated.
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SampleWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _record(sample: Sample) -> dict[str, Any]:
    return {key: value for key, value in asdict(sample).items() if value is not None and value != {}}


def write_samples(path: Path, samples: Iterable[Sample]) -> None:
    """Replace ``path`` with ``samples`` in one atomic step."""
    atomic_write_text(path, "".join(json.dumps(_record(s), ensure_ascii=False) + "\n" for s in samples))
