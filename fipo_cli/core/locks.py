"""One writer per evaluation directory: a lock file that works on NFS and Lustre.

Two ``fipo eval`` runs into one ``--out`` would interleave their samples. The lock is a file
created with ``O_CREAT | O_EXCL`` (atomic on NFSv3+ and Lustre, unlike ``flock``, which
many cluster mounts do not honour across nodes), holding who took it. A second writer is
refused with the first one's host, pid and command. A lock left by a process that died on
this host is taken over; one from another host is only named (its process cannot be
checked from here), with how to remove it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from fipo_cli.core.errors import UsageError
from fipo_cli.runs.status import utc_now

LOCK_FILE = ".fipo-eval.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _owner(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # being written right now, or damaged: treat as held by an unknown writer


@contextlib.contextmanager
def writer_lock(directory: Path) -> Iterator[None]:
    """Hold ``directory``'s writer lock for the ``with`` block; UsageError when another holds it."""
    created = [folder for folder in (directory, *directory.parents) if not folder.exists()]  # leaf first
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"{directory}: cannot create the evaluation directory ({error.strerror})",
                         hint="pass --out a directory you can write") from None
    path = directory / LOCK_FILE
    me = {"host": socket.gethostname(), "pid": os.getpid(), "command": " ".join(sys.argv), "since": utc_now()}
    for _ in range(2):  # the second try follows the removal of a dead process's lock
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except PermissionError as error:
            raise UsageError(f"{directory} is not writable ({error.strerror})",
                             hint="pass --out a directory you can write") from None
        except FileExistsError:
            owner = _owner(path)
            if owner.get("host") == me["host"] and isinstance(owner.get("pid"), int) and not _alive(owner["pid"]):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            who = (
                f"process {owner.get('pid')} on {owner.get('host')} "
                f"({owner.get('command')}, since {owner.get('since')})"
                if owner else "another process"
            )
            raise UsageError(
                f"{directory} is being written by {who}; one evaluation directory takes one writer at a time",
                hint=f"wait for it to finish, or pass another --out; if that process is gone, delete {path}",
            ) from None
        with open(descriptor, "w", encoding="utf-8") as file:
            json.dump(me, file)
        break
    else:  # pragma: no cover - a third process took the lock between our removal and retry
        raise UsageError(f"{directory} is being written by another process", hint="pass another --out")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        # A run that wrote nothing (its model did not load) leaves no directory behind.
        for folder in created:
            try:
                folder.rmdir()
            except OSError:  # not empty: it holds the evaluation
                break
