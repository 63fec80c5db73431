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

A line is a line for every JSON reader: U+0085, U+2028 and U+2029 (line breaks to
``str.splitlines`` and to JavaScript) and lone surrogates (not encodable in UTF-8) are
written as ``\\u`` escapes, everything else as UTF-8; lines are split at ``\\n`` only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fipo_cli.core.errors import UsageError
from fipo_cli.core.files import atomic_write_text, decode_utf8

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


def _problem(path: Path, number: int, what: str) -> UsageError:
    return UsageError(
        f"{path} line {number}: {what}",
        hint="a samples file holds one JSON object per line with prompt_id, sample_index (an integer ≥ 0) and "
        "response (a string); see `fipo eval score --help`",
    )


def _parse(line: str, path: Path, number: int) -> Sample:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise _problem(path, number, f"not valid JSON ({error})") from error
    if not isinstance(record, dict):
        raise _problem(path, number, f"a JSON {type(record).__name__}, not an object")
    missing = [key for key in REQUIRED if key not in record]
    if missing:
        raise _problem(path, number, f"lacks {', '.join(missing)}")
    index = record["sample_index"]
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise _problem(path, number, f"sample_index {index!r}: must be an integer ≥ 0")
    if not isinstance(record["response"], str):
        raise _problem(path, number, f"response: a JSON {type(record['response']).__name__}, not a string")
    known = {name: record[name] for name in Sample.__dataclass_fields__ if name in record}
    known["prompt_id"] = str(known["prompt_id"])
    return Sample(**known)


def read_samples(path: Path, *, repair: bool = False) -> list[Sample]:
    """Every sample in ``path`` (none if it does not exist).

    A last line without its newline is what a killed writer leaves: with ``repair`` it is
    cut from the file (so appending can go on), otherwise it is an error like any bad line.
    UsageError (exit 2) for a line that is not UTF-8 or not a sample, naming file and line,
    and for a (prompt_id, sample_index) given twice.
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
    text = decode_utf8(complete, path,
                       hint="samples files are UTF-8 JSON lines; convert it, e.g. iconv -f latin1 -t utf-8")
    samples: list[Sample] = []
    seen: dict[tuple[str, int], int] = {}
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        sample = _parse(line, path, number)
        if sample.key in seen:
            raise UsageError(
                f"{path} line {number} repeats sample {sample.sample_index} of problem {sample.prompt_id!r} "
                f"(first on line {seen[sample.key]})",
                hint="each (prompt_id, sample_index) may appear once; remove the duplicates "
                "(two evaluations writing into one directory leave them)",
            )
        seen[sample.key] = number
        samples.append(sample)
    return samples


class SampleWriter:
    """Appends samples to a file as they are generated, each one handed to the OS before the next."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def append(self, sample: Sample) -> None:
        self._file.write(_line(sample))
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


# Characters that end a line for some reader (splitlines, JavaScript) or cannot be UTF-8: in
# JSON output they only occur inside strings, where a \u escape means the same character.
_ESCAPED = re.compile("[\u0085\u2028\u2029\ud800-\udfff]")


def _line(sample: Sample) -> str:
    text = json.dumps(_record(sample), ensure_ascii=False)
    return _ESCAPED.sub(lambda match: f"\\u{ord(match.group()):04x}", text) + "\n"


def write_samples(path: Path, samples: Iterable[Sample]) -> None:
    """Replace ``path`` with ``samples`` in one atomic step."""
    atomic_write_text(path, "".join(_line(s) for s in samples))
