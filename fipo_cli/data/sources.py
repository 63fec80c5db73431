"""Where problems come from: a bundled benchmark, a local file or a Hugging Face Hub dataset.

Shared by ``fipo data prepare`` and ``fipo eval``. Local ``.jsonl``/``.json``/``.parquet``
files are read with the standard library and pyarrow, values exactly as stored (``datasets``
would guess types: "025" would become 25). Hub datasets go through ``datasets`` after a quick
reachability probe, so an unreachable Hub fails in seconds with a hint to pass a local file.
"""

from __future__ import annotations

import enum
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fipo_cli.core.errors import FipoError, UsageError
from fipo_cli.core.files import read_utf8
from fipo_cli.core.hub import is_hub_id
from fipo_cli.data.bundled import BENCHMARKS, load_bundled

LOCAL_FORMATS = (".jsonl", ".json", ".parquet")
#: Columns that hold a problem or its answer, tried in this order when none is named.
PROBLEM_COLUMNS = ("problem", "question", "prompt", "query")
# "solution" is left out on purpose: in MATH-style sets it is the worked solution, and as a
# ground truth it would make every reward -1. Name it explicitly when it is an answer.
# "reward_model" is verl's {style, ground_truth} column.
ANSWER_COLUMNS = ("answer", "ground_truth", "final_answer", "expected_answer", "reward_model")
_READ_BATCH_ROWS = 8192


class SourceKind(enum.Enum):
    """Where a set's rows come from."""

    BUNDLED = "bundled"
    FILE = "file"
    HUB = "hub"


@dataclass(frozen=True)
class Source:
    """One set to prepare, as the user named it."""

    spec: str
    kind: SourceKind

    @property
    def name(self) -> str:
        """The stem of the output file: the benchmark name, the file's stem, or the dataset's name."""
        if self.kind is SourceKind.BUNDLED:
            return self.spec
        stem = Path(self.spec).stem if self.kind is SourceKind.FILE else self.spec.rsplit("/", 1)[-1]
        return re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-") or "dataset"


def resolve_source(spec: str | os.PathLike[str]) -> Source:
    """Classify ``spec`` as a bundled benchmark, a local file or a Hub dataset id.

    Bundled names win over files of the same name. Anything that looks like a path (it
    exists, has a data-file suffix, or starts with ``.``, ``/`` or ``~``) is a file.
    Nothing is read here, and the file need not exist yet (see :func:`prepare`).
    """
    text = os.fspath(spec)
    if not isinstance(spec, os.PathLike) and text in BENCHMARKS:
        return Source(text, SourceKind.BUNDLED)
    path = Path(text).expanduser()
    if (
        isinstance(spec, os.PathLike)
        or path.exists()
        or path.suffix in LOCAL_FORMATS
        or text.startswith((".", "/", "~"))
    ):
        return Source(text, SourceKind.FILE)
    if is_hub_id(text):
        return Source(text, SourceKind.HUB)
    raise UsageError(
        f"{text!r} is neither a bundled benchmark, a data file nor a Hugging Face dataset id",
        hint=f"pass one of {', '.join(BENCHMARKS)}, a {'/'.join(LOCAL_FORMATS)} file, or a hub id like owner/dataset",
    )


def read_records(source: Source, option: str) -> Iterator[dict[str, Any]]:
    """The rows of a source as dicts; ``option`` (e.g. ``--train``) names it in messages."""
    if source.kind is SourceKind.BUNDLED:
        return iter(load_bundled(source.spec))
    if source.kind is SourceKind.FILE:
        path = Path(source.spec).expanduser()
        check_file(path, option)
        return _file_records(path)
    return _hub_records(source.spec, option)


def check_file(path: Path, option: str) -> None:
    """A readable local data file, or a UsageError naming the option and the path."""
    if not path.exists():
        raise UsageError(f"{option} {str(path)!r}: no such file", hint="check the path")
    if not path.is_file():
        raise UsageError(f"{option} {str(path)!r} is not a file", hint="pass a .jsonl, .json or .parquet file")
    if path.suffix not in LOCAL_FORMATS:
        raise UsageError(
            f"{option} {str(path)!r}: unsupported format {path.suffix or '(no suffix)'!r}",
            hint=f"pass a {', '.join(LOCAL_FORMATS)} file",
        )


def _file_records(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a local file, with values exactly as stored (no type inference)."""
    if path.suffix == ".parquet":
        return _parquet_records(path)
    return iter(_json_records(path))


def _parquet_records(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as error:
        raise UsageError(f"cannot read {str(path)!r} as parquet: {error}") from error
    for batch in parquet.iter_batches(batch_size=_READ_BATCH_ROWS):
        yield from batch.to_pylist()


def _json_records(path: Path) -> list[dict[str, Any]]:
    """A JSON array of objects, or JSON lines (whatever the suffix says: both are common)."""
    text = read_utf8(path)
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        records = _json_lines(path, text)
    else:
        records = [document] if isinstance(document, dict) else document
    if not isinstance(records, list) or not all(isinstance(record, dict) for record in records):
        raise UsageError(
            f"{str(path)!r} holds no list of objects",
            hint="write one JSON object per line, or one JSON array of objects",
        )
    return records


def _json_lines(path: Path, text: str) -> list[Any]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise UsageError(f"{path}:{number}: not valid JSON: {error}") from error
    return records


def _hub_records(hub_id: str, option: str) -> Iterator[dict[str, Any]]:
    """The rows of the ``train`` split (or the only split) of a Hub dataset, cached the usual way."""
    import datasets

    offline = datasets.config.HF_HUB_OFFLINE
    hint = (
        f"download it where the Hub is reachable and pass the file, e.g. {option} path/to/file.parquet "
        "(.jsonl and .json work too)"
        + ("; or pass --no-train to write only the validation sets" if option == "--train" else "")
    )
    if not offline:
        # Without this probe an unreachable Hub costs half a minute of download retries.
        _require_hub(hub_id, hint + "; if it is in the Hugging Face cache already, set HF_HUB_OFFLINE=1")
    try:
        splits = datasets.load_dataset(hub_id)
    except (OSError, *_http_errors()) as error:
        where = "the Hugging Face cache (offline mode is on)" if offline else "the Hugging Face Hub"
        raise FipoError(f"cannot load {hub_id!r} from {where}: {error}", hint=hint) from error
    if "train" in splits:
        dataset = splits["train"]
    elif len(splits) == 1:
        dataset = next(iter(splits.values()))
    else:
        raise FipoError(f"{hub_id!r} has no 'train' split, but {', '.join(splits)}", hint=hint)
    for batch in dataset.with_format("arrow").iter(batch_size=_READ_BATCH_ROWS):
        yield from batch.to_pylist()


def _http_errors() -> tuple[type[Exception], ...]:
    """The HTTP errors the Hub client can raise: huggingface_hub 1.x speaks through httpx, 2.x through
    httpx2 (transformers 5.16+, the vLLM CPU environment, brings 2.x)."""
    import importlib

    errors = []
    for client in ("httpx", "httpx2"):
        try:
            errors.append(importlib.import_module(client).HTTPError)
        except ImportError:
            continue
    return tuple(errors)


def _require_hub(hub_id: str, hint: str) -> None:
    import datasets
    from huggingface_hub import get_session

    try:
        get_session().head(datasets.config.HF_ENDPOINT, timeout=10)
    except _http_errors() as error:
        raise FipoError(
            f"cannot reach the Hugging Face Hub at {datasets.config.HF_ENDPOINT} to download {hub_id!r}: {error}",
            hint=hint,
        ) from error
