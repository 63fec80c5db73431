"""The training and validation sets as parquet files in the shape verl 0.9.1 reads.

This is the library behind ``fipo data prepare``. Each output file holds one row per
distinct problem, with the columns verl's ``RLHFDataset`` and its ``dapo`` reward manager
read (``verl/utils/dataset/rl_dataset.py``, ``verl/workers/reward_manager/dapo.py``)::

    data_source   str                          routes the reward: every value used here
                                               reaches verl's rule "Answer:" verifier
                                               (``verl.utils.reward_score.math_dapo``)
    prompt        list of {role, content}      the chat messages (``data.prompt_key``)
    ability       str                          "MATH", as in DAPO-Math-17k
    reward_model  {style: "rule", ground_truth: str}
    extra_info    {index: int, split: "train" | "test"}

Sources are a bundled benchmark name (:data:`fipo_cli.data.bundled.BENCHMARKS`), a local
``.jsonl`` / ``.json`` / ``.parquet`` file, or a Hugging Face Hub dataset id. A problem
column is wrapped in DAPO's prompt (:func:`fipo_cli.data.prompts.dapo_prompt`); a column that
already holds chat messages (DAPO-Math-17k's ``prompt``) is kept as it is.

Every output is checked before anything is read, every source is read before anything is
written, and each file is written to a temporary name and then renamed into place, so a
failure leaves no half-prepared data behind.
"""

from __future__ import annotations

import enum
import functools
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fipo_cli.core.errors import ConfigError, UsageError
from fipo_cli.core.files import write_all
from fipo_cli.data.prompts import dapo_prompt
from fipo_cli.data.sources import (
    ANSWER_COLUMNS,
    PROBLEM_COLUMNS,
    Source,
    SourceKind,
    check_file,
    read_records,
    resolve_source,
)

DEFAULT_TRAIN = "BytedTsinghua-SIA/DAPO-Math-17k"
DEFAULT_VALIDATION = ("aime24", "aime25")
DEFAULT_OUT_DIR = Path("data")

# verl's default_compute_score sends "math_dapo" and every data_source starting with "aime"
# to math_dapo.compute_score. Validation metrics are grouped by data_source, so each bundled
# set gets its own name; MATH-500 gets "math" because its hub name would route it to the
# \boxed{} verifier instead.
TRAIN_DATA_SOURCE = "math_dapo"
BUNDLED_DATA_SOURCES = {"aime24": "aime24", "aime25": "aime25", "math500": "math"}

Role = Literal["train", "validation"]
_OPTION = {"train": "--train", "validation": "--validation"}
_VERL_SPLIT = {"train": "train", "validation": "test"}


class Outcome(enum.Enum):
    """What happened, or in a dry run would happen, to one output file."""

    WRITTEN = "written"
    OVERWRITTEN = "overwritten"
    WOULD_WRITE = "would write"
    WOULD_OVERWRITE = "would overwrite"


@dataclass(frozen=True)
class PreparedFile:
    """One output file and the counts behind it."""

    name: str
    role: Role
    source: str
    path: Path
    rows_read: int
    incomplete_removed: int  # rows without a problem or an answer
    duplicates_removed: int
    rows_written: int  # in a dry run: the rows the file would hold
    outcome: Outcome


@dataclass(frozen=True)
class PrepareReport:
    """Everything one :func:`prepare` call wrote or, in a dry run, would write."""

    files: tuple[PreparedFile, ...]
    dry_run: bool

    @property
    def train_files(self) -> tuple[Path, ...]:
        return tuple(f.path for f in self.files if f.role == "train")

    @property
    def validation_files(self) -> tuple[Path, ...]:
        return tuple(f.path for f in self.files if f.role == "validation")


@dataclass(frozen=True)
class _Message:
    role: str
    content: str


@dataclass(frozen=True)
class _Row:
    """One output row; :meth:`record` gives the nested form verl reads."""

    data_source: str
    prompt: tuple[_Message, ...]
    ground_truth: str
    index: int
    split: str

    def record(self) -> dict[str, Any]:
        return {
            "data_source": self.data_source,
            "prompt": [{"role": m.role, "content": m.content} for m in self.prompt],
            "ability": "MATH",
            "reward_model": {"style": "rule", "ground_truth": self.ground_truth},
            "extra_info": {"index": self.index, "split": self.split},
        }


@dataclass(frozen=True)
class _Fields:
    """The columns of a source that hold the problem (text or chat messages) and the answer."""

    problem: str
    answer: str


@dataclass(frozen=True)
class _Converted:
    rows: tuple[_Row, ...]
    rows_read: int
    incomplete_removed: int
    duplicates_removed: int


def output_path(out_dir: str | os.PathLike[str], source: str | os.PathLike[str]) -> Path:
    """The parquet file :func:`prepare` writes for ``source`` into ``out_dir``.

    ``output_path("data", DEFAULT_TRAIN)`` is ``data/dapo-math-17k.parquet``;
    ``output_path("data", "aime24")`` is ``data/aime24.parquet``.
    """
    return Path(out_dir) / f"{resolve_source(source).name}.parquet"


def prepare(
    out_dir: str | os.PathLike[str] = DEFAULT_OUT_DIR,
    train: str | os.PathLike[str] | None = DEFAULT_TRAIN,
    validation: Sequence[str | os.PathLike[str]] = DEFAULT_VALIDATION,
    *,
    problem_key: str | None = None,
    answer_key: str | None = None,
    force: bool = False,
    dry_run: bool = False,
) -> PrepareReport:
    """Write ``train`` (unless None) and every ``validation`` set into ``out_dir`` as verl parquet.

    ``problem_key`` and ``answer_key`` name the columns of the training source that hold
    the problem and the answer; by default they are found among :data:`PROBLEM_COLUMNS`
    and :data:`ANSWER_COLUMNS`. Rows whose prompt repeats an earlier one (compared with
    whitespace collapsed) are dropped, as are rows without a problem or an answer.

    An existing output is an error unless ``force``; ``dry_run`` reads every source and
    reports what would be written, but writes nothing.

    Raises:
        UsageError: a bad source, two sets with one output name, or existing outputs.
        ConfigError: a problem or answer column that is missing.
        UsageError: also a source with no usable rows, a file that is not UTF-8 or not JSON, and an
            output directory that cannot be written (nothing is written then).
        FipoError: the Hub cannot be reached or has no such dataset.
    """
    out_dir = Path(out_dir)
    planned: list[tuple[Role, Source]] = [("validation", resolve_source(spec)) for spec in validation]
    if train is not None:
        planned.insert(0, ("train", resolve_source(train)))
    if not planned:
        raise UsageError("nothing to prepare: no training set and no validation set", hint="name at least one set")
    for role, source in planned:
        if source.kind is SourceKind.FILE:
            check_file(Path(source.spec).expanduser(), _OPTION[role])
    paths = _check_outputs(out_dir, [source for _, source in planned], force=force)

    converted = [
        _convert(
            read_records(source, _OPTION[role]),
            source=source,
            role=role,
            problem_key=problem_key if role == "train" else None,
            answer_key=answer_key if role == "train" else None,
        )
        for role, source in planned
    ]

    existed = [path.exists() for path in paths]
    if not dry_run:
        write_all(out_dir, "--out", {
            path.name: functools.partial(write_parquet, records=[row.record() for row in result.rows])
            for path, result in zip(paths, converted, strict=True)
        })
    files = []
    for (role, source), path, result, was_there in zip(planned, paths, converted, existed, strict=True):
        files.append(
            PreparedFile(
                name=source.name,
                role=role,
                source=source.spec,
                path=path,
                rows_read=result.rows_read,
                incomplete_removed=result.incomplete_removed,
                duplicates_removed=result.duplicates_removed,
                rows_written=len(result.rows),
                outcome=_outcome(existed=was_there, dry_run=dry_run),
            )
        )
    return PrepareReport(files=tuple(files), dry_run=dry_run)


def recipe_note(report: PrepareReport) -> str | None:
    """What to change so the recipes train on a training set written under another name than the
    file they read (``data/dapo-math-17k.parquet``); None when there is nothing to say."""
    recipe_file = output_path(DEFAULT_OUT_DIR, DEFAULT_TRAIN)
    written = report.train_files
    if not written or written[0] == recipe_file:
        return None
    return (f"the recipes train on {recipe_file}, not {written[0]}: set data.train_files: [{written[0]}] in "
            f"fipo.yaml, or train with data.train_files=[{written[0]}]")


def _outcome(*, existed: bool, dry_run: bool) -> Outcome:
    if dry_run:
        return Outcome.WOULD_OVERWRITE if existed else Outcome.WOULD_WRITE
    return Outcome.OVERWRITTEN if existed else Outcome.WRITTEN


def _check_outputs(out_dir: Path, sources: Sequence[Source], *, force: bool) -> list[Path]:
    """The output paths, after making sure no two sets share one and none is overwritten unasked."""
    paths = [out_dir / f"{source.name}.parquet" for source in sources]
    by_path: dict[Path, list[str]] = {}
    for source, path in zip(sources, paths, strict=True):
        by_path.setdefault(path, []).append(source.spec)
    clashes = [f"{', '.join(map(repr, specs))} → {path}" for path, specs in by_path.items() if len(specs) > 1]
    if clashes:
        raise UsageError(
            "two sets would be written to the same file: " + "; ".join(clashes),
            hint="name each set once, and rename a local file whose stem matches another set's name",
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"the output directory {str(out_dir)!r} is a file", hint="pass a directory with --out")
    existing = [str(path) for path in paths if path.exists()]
    if existing and not force:
        raise UsageError(
            f"{len(existing)} output file(s) exist already: {', '.join(existing)}; nothing was written",
            hint="pass --force to overwrite them, or --out to write somewhere else",
        )
    return paths


def _convert(
    records: Iterable[Mapping[str, Any]],
    *,
    source: Source,
    role: Role,
    problem_key: str | None,
    answer_key: str | None,
) -> _Converted:
    """verl rows from source records: prompts built or kept, answers as strings, duplicates dropped."""
    data_source = BUNDLED_DATA_SOURCES[source.spec] if source.kind is SourceKind.BUNDLED else TRAIN_DATA_SOURCE
    fields: _Fields | None = None
    seen: set[str] = set()
    rows: list[_Row] = []
    rows_read = incomplete = duplicates = 0
    for record in records:
        if fields is None:
            fields = _find_fields(record, source, problem_key=problem_key, answer_key=answer_key)
        rows_read += 1
        prompt = _prompt(record.get(fields.problem))
        answer = _ground_truth(record.get(fields.answer))
        if prompt is None or answer is None:
            incomplete += 1
            continue
        # DAPO-Math-17k on the Hub holds every problem many times over.
        key = " ".join(" ".join(message.content for message in prompt).split())
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        rows.append(_Row(data_source, prompt, answer, index=len(rows), split=_VERL_SPLIT[role]))
    if not rows:
        raise UsageError(
            f"{source.spec!r} has no row with both a problem and an answer ({rows_read} rows read)",
            hint="check the file, and name its columns with --problem-key and --answer-key",
        )
    return _Converted(tuple(rows), rows_read, incomplete, duplicates)


def _find_fields(
    record: Mapping[str, Any], source: Source, *, problem_key: str | None, answer_key: str | None
) -> _Fields:
    """The problem and answer columns: the ones named, else the first known name the record has."""
    found = f"its columns are: {', '.join(record)}"
    problem = problem_key or next((c for c in PROBLEM_COLUMNS if c in record), None)
    answer = answer_key or next((c for c in ANSWER_COLUMNS if c in record), None)
    if problem is not None and answer is not None and problem in record and answer in record:
        return _Fields(problem=problem, answer=answer)
    problems = []
    if problem_key is not None and problem_key not in record:
        problems.append(f"--problem-key {problem_key!r} is not a column of {source.spec!r}; {found}")
    elif problem is None:
        problems.append(f"{source.spec!r} has no problem column (looked for {', '.join(PROBLEM_COLUMNS)}); {found}")
    if answer_key is not None and answer_key not in record:
        problems.append(f"--answer-key {answer_key!r} is not a column of {source.spec!r}; {found}")
    elif answer is None:
        problems.append(f"{source.spec!r} has no answer column (looked for {', '.join(ANSWER_COLUMNS)}); {found}")
    raise ConfigError(problems, hint="name the columns with --problem-key and --answer-key")


def _prompt(value: Any) -> tuple[_Message, ...] | None:
    """Chat messages kept as they are, or a problem text wrapped in DAPO's prompt; None if neither."""
    if isinstance(value, str):
        return (_Message("user", dapo_prompt(value)),) if value.strip() else None
    if isinstance(value, list) and value:
        messages = []
        for message in value:
            if not (isinstance(message, Mapping) and isinstance(message.get("role"), str)):
                return None
            if not isinstance(message.get("content"), str):
                return None
            messages.append(_Message(message["role"], message["content"]))
        return tuple(messages)
    return None


def _ground_truth(value: Any) -> str | None:
    """The answer as a string (verl's verifier compares strings); a reward_model dict gives its ground_truth."""
    if isinstance(value, Mapping):
        value = value.get("ground_truth")
    if value is None or isinstance(value, list | Mapping | bool):
        return None
    text = str(value).strip()
    return text or None


def write_parquet(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    """Write verl rows (the columns of this module's docstring) to ``path`` (callers make it atomic)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(list(records), schema=_schema()), path)


def _schema() -> Any:
    """One fixed schema for every file, so verl can concatenate the validation sets."""
    import pyarrow as pa

    return pa.schema(
        [
            ("data_source", pa.string()),
            ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
            ("ability", pa.string()),
            ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
            ("extra_info", pa.struct([("index", pa.int64()), ("split", pa.string())])),
        ]
    )
