"""Read W&B's offline transaction log (``run-<id>.wandb``) without a server.

``wandb.Api()`` needs a W&B server, and wandb 0.31 keeps nothing else on disk in offline
mode (no summary JSON, no Python reader), so tests read the ``.wandb`` file itself. Its
format, as wandb-core writes it (``core/internal/transactionlog/writer.go`` on top of
``core/pkg/leveldb/record.go``, checked against files written by the installed wandb 0.31):

* a 7-byte file header: the magic ``:W&B``, the little-endian uint16 ``0xBEE1`` and a
  version byte (0 in wandb 0.31);
* then LevelDB's log format: the file (header included) is cut into 32 KiB blocks; a record
  is one or more chunks, each with a 7-byte header (little-endian CRC-32 (IEEE, the
  ``zlib.crc32`` kind) of the type byte and the payload, little-endian uint16 payload
  length, type byte FULL=1 / FIRST=2 / MIDDLE=3 / LAST=4) and its payload. Chunks never
  cross a block boundary; fewer than 7 bytes left at a block's end are zero padding;
* each assembled record is a ``wandb.proto.wandb_internal_pb2.Record``.

History items carry their value as JSON text (``value_json``) or, with newer settings, in a
typed field (``number``, ``integer``, ``text``, ``json``, …): both are decoded here
(wandb 0.31 writes ``value_json``).

A file is complete only once wandb's service has written it out: ``run.finish()`` can return
before that; ``wandb.teardown()`` (or the end of the process) waits for it.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

MAGIC = b":W&B"
IDENT = 0xBEE1
VERSIONS = (0,)  # the versions whose framing this module has been checked against
FILE_HEADER = struct.Struct("<4sHB")  # magic, identifier, version: 7 bytes
CHUNK_HEADER = struct.Struct("<IHB")  # crc32, payload length, chunk type: 7 bytes
BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


class FormatError(ValueError):
    """The file is not a transaction log this module can read."""


def run_files(wandb_dir: Path) -> list[Path]:
    """Every ``run-*.wandb`` file under ``wandb_dir`` (a W&B ``dir``), oldest run first.

    W&B names a run's folder ``{offline-,}run-YYYYMMDD_HHMMSS-<id>``, so sorting by the
    folder name without its mode prefix orders the runs by start time.
    """
    files = Path(wandb_dir).glob("**/run-*.wandb")
    # latest-run is a symlink to the newest run's folder: skip it, or that run counts twice.
    real = [path for path in files if "latest-run" not in path.parts]
    return sorted(real, key=lambda path: path.parent.name.removeprefix("offline-"))


def records(path: Path) -> Iterator[wandb_internal_pb2.Record]:
    """Every record of a ``.wandb`` file, in the order written. FormatError on a damaged file."""
    data = Path(path).read_bytes()
    if len(data) < FILE_HEADER.size:
        raise FormatError(f"{path}: {len(data)} bytes, shorter than the file header")
    magic, ident, version = FILE_HEADER.unpack_from(data)
    if magic != MAGIC or ident != IDENT:
        raise FormatError(f"{path}: not a W&B transaction log (header {data[:FILE_HEADER.size]!r})")
    if version not in VERSIONS:
        raise FormatError(f"{path}: transaction log version {version}; this reader knows {VERSIONS}")
    for payload in _assembled(data, FILE_HEADER.size, path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        yield record


def _assembled(data: bytes, offset: int, path: Path) -> Iterator[bytes]:
    """The payloads of the records from ``offset`` on, their chunks joined and checked."""
    parts: list[bytes] = []
    while offset < len(data):
        left_in_block = BLOCK - offset % BLOCK
        if left_in_block < CHUNK_HEADER.size:  # the block's zero trailer
            offset += left_in_block
            continue
        if offset + CHUNK_HEADER.size > len(data):
            raise FormatError(f"{path}: cut chunk header at byte {offset}")
        checksum, length, kind = CHUNK_HEADER.unpack_from(data, offset)
        start = offset + CHUNK_HEADER.size
        end = start + length
        if kind == 0 and length == 0 and checksum == 0:  # zeros to the end of a block
            offset += left_in_block
            continue
        if end > len(data) or length > left_in_block - CHUNK_HEADER.size:
            raise FormatError(f"{path}: chunk at byte {offset} overflows its block or the file")
        if zlib.crc32(data[start - 1 : end]) != checksum:  # the type byte and the payload
            raise FormatError(f"{path}: checksum mismatch in the chunk at byte {offset}")
        if kind not in (FULL, FIRST, MIDDLE, LAST) or (kind in (FULL, FIRST)) == bool(parts):
            raise FormatError(f"{path}: chunk of type {kind} out of sequence at byte {offset}")
        parts.append(data[start:end])
        if kind in (FULL, LAST):
            yield b"".join(parts)
            parts = []
        offset = end
    if parts:
        raise FormatError(f"{path}: the file ends inside a record")


def run_record(path: Path) -> wandb_internal_pb2.RunRecord:
    """The run record (id, project, job type, ...) of a ``.wandb`` file."""
    for record in records(path):
        if record.WhichOneof("record_type") == "run":
            return record.run
    raise FormatError(f"{path}: no run record")


def run_id(path: Path) -> str:
    """The W&B run id a ``.wandb`` file logs to."""
    return run_record(path).run_id


def config(path: Path) -> dict[str, Any]:
    """The config the run record carries (what ``wandb.init(config=...)`` was given)."""
    return _nested(run_record(path).config.update)


def history(path: Path) -> list[dict[str, Any]]:
    """One dict per logged history row, keys as logged (``_step``, ``_runtime``, ... included).

    A logged media object (a table) comes back as the dict W&B stores for it, e.g.
    ``{"_type": "table-file", "path": "media/table/...", "nrows": 3, ...}``.
    """
    return [
        _nested(record.history.item)
        for record in records(path)
        if record.WhichOneof("record_type") == "history"
    ]


def summary(path: Path) -> dict[str, Any]:
    """The run's summary as this file leaves it: every summary update applied in order."""
    result: dict[str, Any] = {}
    for record in records(path):
        if record.WhichOneof("record_type") == "summary":
            result |= _nested(record.summary.update)
            for item in record.summary.remove:
                result.pop(_path(item)[0], None)
    return result


def table(path: Path, logged: dict[str, Any]) -> dict[str, Any]:
    """The rows of a table that the run of ``path`` logged, from the value history holds for it.

    Returns W&B's table JSON: ``{"columns": [...], "data": [[...], ...], ...}``. Offline,
    the table file sits in the run folder's ``files/`` under the logged ``path``.
    """
    if logged.get("_type") != "table-file":
        raise FormatError(f"{path}: {logged!r} is not a logged table")
    return json.loads((Path(path).parent / "files" / logged["path"]).read_text(encoding="utf-8"))


def _nested(items: Iterable[Any]) -> dict[str, Any]:
    """History, summary or config items as a dict; a ``nested_key`` [a, b] becomes ``{a: {b: ...}}``."""
    result: dict[str, Any] = {}
    for item in items:
        *parents, last = _path(item)
        node = result
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = _value(item)
    return result


def _path(item: Any) -> list[str]:
    """An item's key: ``[key]``, or its ``nested_key`` parts (W&B writes one or the other)."""
    return [item.key] if item.key else list(item.nested_key)


def _value(item: Any) -> Any:
    """An item's value, from its JSON text or (history items only) from its typed field."""
    if item.value_json:
        return json.loads(item.value_json)
    case = item.WhichOneof("value") if "value" in item.DESCRIPTOR.oneofs_by_name else None
    if case is None or case == "none":
        return None
    if case == "json":
        return json.loads(item.json)
    return getattr(item, case)
