"""Whether a process still runs: asked by its pid, or by who it is (host, pid and start), so that a
pid the system gave to another process since is not mistaken for the one that was recorded."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists here and has not exited.

    Someone else's process counts as alive (signalling it is refused, not absent). A child that
    exited but was not reaped yet is a zombie: gone for every purpose of fipo's.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # no /proc (not Linux), or it exited meanwhile: trust the signal
        return True


def start_mark(pid: int) -> str | None:
    """When process ``pid`` started, as ``BOOT_ID:TICKS`` (the boot, and clock ticks since it); None without /proc.

    Ticks since boot, not a wall-clock time: a clock set back or forward does not change it, and a
    pid reused after a reboot has another boot id.
    """
    try:
        with open("/proc/sys/kernel/random/boot_id") as boot, open(f"/proc/{pid}/stat") as stat:
            # Field 22 of stat, counted after the command name in parentheses (which may hold spaces).
            return f"{boot.read().strip()}:{stat.read().rsplit(')', 1)[1].split()[19]}"
    except (OSError, IndexError):
        return None


@dataclass(frozen=True)
class ProcessRef:
    """A process as another process on any host can record it."""

    host: str
    pid: int
    start: str | None
    """:func:`start_mark` of it, when the host has /proc."""

    def running(self) -> bool | None:
        """Whether it still runs; None when that cannot be known from here (another host)."""
        if self.host != socket.gethostname():
            return None
        if not pid_alive(self.pid):
            return False
        return self.start is None or start_mark(self.pid) == self.start


def this_process() -> ProcessRef:
    """This process, as :meth:`ProcessRef.running` asks after it later."""
    return ProcessRef(socket.gethostname(), os.getpid(), start_mark(os.getpid()))
