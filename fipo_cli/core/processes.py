"""Whether a process still runs, asked by its pid (on this host only: a pid means nothing elsewhere)."""

from __future__ import annotations

import os


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
