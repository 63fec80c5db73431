"""Time as fipo records and reads it: UTC timestamps, and SLURM's time limits."""

from __future__ import annotations

import re
from datetime import datetime, timezone

#: SLURM's time-limit forms that fipo accepts: ``[D-]HH:MM:SS`` or whole minutes.
TIME_LIMIT = re.compile(r"^(\d+-)?\d{1,2}:\d{2}:\d{2}$|^\d+$")


def utc_now() -> str:
    """The current time as an ISO-8601 UTC string, to the second: ``2026-11-22T01:30:00+00:00``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def parse_utc(stamp: str | None) -> datetime | None:
    """A timestamp as :func:`utc_now` writes it; None for none or one that does not parse."""
    try:
        return datetime.fromisoformat(stamp) if stamp else None
    except ValueError:
        return None


def time_limit_hours(limit: str | None) -> float | None:
    """SLURM's ``[D-]HH:MM:SS`` or plain minutes, in hours."""
    if not limit or not TIME_LIMIT.match(limit):
        return None
    if ":" not in limit:
        return int(limit) / 60
    days, _, clock = limit.rpartition("-")
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return int(days or 0) * 24 + hours + minutes / 60 + seconds / 3600
