"""Lock files that work on NFS and Lustre: one holder at a time, and a refusal that names the holder.

A lock is a file created with ``O_CREAT | O_EXCL`` (atomic on NFSv3+ and Lustre, unlike ``flock``,
which many cluster mounts do not honour across nodes), holding who took it: host, pid, command and
since when. A lock left by a process that died on this host is taken over; one from another host is
only named (its process cannot be checked from here), with how to remove it. It is fipo's one lock:
the writer of an evaluation directory and the evaluations that log into one W&B run both take it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fipo_cli.core.clock import utc_now
from fipo_cli.core.errors import UsageError
from fipo_cli.core.processes import pid_alive

_LOCK_POLL_S = 0.2


class LockHeld(UsageError):
    """Another process holds the lock: ``owner`` is its record (empty when unreadable), ``path`` the lock file."""

    def __init__(self, path: Path, owner: dict[str, Any]) -> None:
        self.path, self.owner = path, owner
        super().__init__(f"{path} is held by {describe_owner(owner)}", hint=f"if that process is gone, delete {path}")


def describe_owner(owner: dict[str, Any]) -> str:
    """``process 4242 on node-17 (fipo eval aime24, since …)``, or ``another process`` without a record."""
    if not owner:
        return "another process"
    return f"process {owner.get('pid')} on {owner.get('host')} ({owner.get('command')}, since {owner.get('since')})"


def _owner(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # being written right now, or damaged: treat as held by an unknown writer
    return record if isinstance(record, dict) else {}


def _abandoned(owner: dict[str, Any]) -> bool:
    """A lock whose holder died on this host: free to take over."""
    return owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int) and not pid_alive(owner["pid"])


def _try_take(path: Path, me: dict[str, Any]) -> dict[str, Any] | None:
    """Take the lock (None), or the record of the live holder that has it."""
    for _ in range(2):  # the second try follows the removal of a dead process's lock
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            owner = _owner(path)
            if _abandoned(owner):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            return owner
        with open(descriptor, "w", encoding="utf-8") as file:
            json.dump(me, file)
        return None
    return {}  # a third process took it between our removal and retry


@contextlib.contextmanager
def exclusive(path: Path, *, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the lock file ``path`` for the ``with`` block.

    While another live process holds it, wait up to ``wait_s`` seconds for it to be released, then
    raise :class:`LockHeld`. ``PermissionError`` when the lock's directory cannot be written.
    """
    me = {"host": socket.gethostname(), "pid": os.getpid(), "command": " ".join(sys.argv), "since": utc_now()}
    deadline = time.monotonic() + wait_s
    while (owner := _try_take(path, me)) is not None:
        if time.monotonic() >= deadline:
            raise LockHeld(path, owner)
        time.sleep(_LOCK_POLL_S)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
