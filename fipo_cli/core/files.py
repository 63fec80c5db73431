"""Files a user hands fipo, and the output directories fipo writes into, with fipo's errors.

A file that is not UTF-8 is named with the line of its first bad byte (exit 2), never a
``UnicodeDecodeError``. An output directory's files are written all or none: each goes to a
temporary file beside its target first, and only when every one is written are they renamed
into place; a directory fipo had to create is removed again when writing fails.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from fipo_cli.core.errors import UsageError


def read_utf8(path: Path) -> str:
    """The text of ``path``; a UsageError naming the file and line when it is not UTF-8."""
    return decode_utf8(Path(path).read_bytes(), path)


def decode_utf8(data: bytes, path: Path, hint: str = "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)") -> str:
    """``data``, read from ``path``, as text; a UsageError naming the file and line when it is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise UsageError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start})", hint=hint,
        ) from None


def write_all(directory: Path, option: str, writers: Mapping[str, Callable[[Path], object]]) -> list[Path]:
    """Write the files ``writers`` names into ``directory`` (created if need be), all or none.

    Each writer writes its file to the temporary path it is given. An OSError (the directory
    cannot be created or written, the disk is full) leaves no file behind, and no directory
    that was not there before: a UsageError naming ``option`` and the directory.
    """
    directory = Path(directory)
    created = first_missing(directory)
    temporaries: dict[Path, Path] = {}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, write in writers.items():
            target = directory / name
            temporaries[target] = target.with_name(f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
            write(temporaries[target])
        for target, temporary in temporaries.items():
            os.replace(temporary, target)
    except OSError as error:
        _clean(temporaries.values(), created)
        reason = error.strerror or str(error)
        raise UsageError(f"{option} {directory}: cannot write there ({reason}); nothing was written",
                         hint=f"pass a directory you can write to with {option}") from None
    except BaseException:
        _clean(temporaries.values(), created)
        raise
    return list(temporaries)


def first_missing(directory: Path) -> Path | None:
    """The topmost directory of ``directory``'s path that does not exist yet (None: it exists): what
    removing a directory created with ``mkdir(parents=True)`` must remove."""
    missing = None
    for path in (directory, *directory.parents):
        if path.exists():
            break
        missing = path
    return missing


def _clean(temporaries: Iterable[Path], created: Path | None) -> None:
    for temporary in temporaries:
        with contextlib.suppress(OSError):
            temporary.unlink()
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)

