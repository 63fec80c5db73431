"""Files: the one way fipo replaces a file or a directory (a scratch copy beside it, then a rename), and
reading the files a user hands fipo, with fipo's errors.

Every file fipo writes is replaced atomically, never edited in place: fipo's directories sit on
shared network filesystems, where a reader must see the old file or the new one, never half of one.
A scratch copy is named by :func:`scratch_path`; a directory built whole is put in place by
:func:`publish_directory`. An output directory's files are written all or none (:func:`write_all`).
A file that is not UTF-8 is named with the line of its first bad byte (exit 2), never a
``UnicodeDecodeError``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

from fipo_cli.core.errors import UsageError


def scratch_path(target: Path) -> Path:
    """Where a file or directory is built before it is renamed over ``target``: hidden, beside it (the
    same filesystem, so the rename is atomic), and unique to this process and call."""
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    _replace_atomically(Path(path), lambda file: file.write(text))


def atomic_write_json(path: Path, obj: Any) -> None:
    """Replace ``path`` with ``obj`` as indented JSON atomically; ``path`` is untouched if ``obj``
    cannot be encoded."""

    def write(file: TextIO) -> None:
        json.dump(obj, file, indent=2)
        file.write("\n")

    _replace_atomically(Path(path), write)


def _replace_atomically(path: Path, write: Callable[[TextIO], object]) -> None:
    """Write a temporary file beside ``path`` with ``write``, make it durable, then rename it
    over ``path``. The temporary file is removed if anything fails."""
    temporary = scratch_path(path)
    # os.open with 0o666 lets the umask decide the permissions, as for any file the user
    # creates (tempfile.mkstemp would make it private to the user, hiding it from the team).
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(descriptor, "w", encoding="utf-8") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def publish_directory(scratch: Path, target: Path) -> bool:
    """Rename the directory ``scratch`` (built whole, see :func:`scratch_path`) to ``target``.

    When another process published ``target`` first (two runs building the same asset, two
    evaluations merging the same checkpoint), its copy is kept, ``scratch`` removed, and False
    returned; any other failure raises. True when ``scratch`` became ``target``.
    """
    try:
        os.rename(scratch, target)
    except OSError:
        if not target.is_dir():
            raise
        shutil.rmtree(scratch, ignore_errors=True)
        return False
    return True


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
            temporaries[target] = scratch_path(target)
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

