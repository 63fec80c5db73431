"""A run's training metrics on disk: verl's file-logger files and the one rule that merges them.

verl's file logger (``VERL_FILE_LOGGER_PATH``) writes one ``{"step": N, "data": {...}}`` line per
step to ``metrics.jsonl`` and truncates that file when it starts, so a resumed or requeued run first
moves what it logged to ``metrics.earlier.jsonl`` (:func:`keep_earlier_metrics`). The rule every
reader follows: the earlier file first, then the current one; a step logged twice (a resumed run
repeats the steps after its last checkpoint) takes its later value.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from fipo_cli.core.errors import UsageError
from fipo_cli.core.files import read_utf8
from fipo_cli.runs.layout import EARLIER_METRICS_FILE, METRICS_FILE

#: A run's metrics files, oldest first: a step's value in a later file wins.
METRICS_FILES = (EARLIER_METRICS_FILE, METRICS_FILE)
#: The metrics of a run as ``{name: {step: value}}``.
Metrics = dict[str, dict[int, float]]
_TAIL_BYTES = 1 << 16  # verl's file logger writes a few KiB per step


def keep_earlier_metrics(run_dir: Path) -> None:
    """Append the metrics a previous attempt logged to ``metrics.earlier.jsonl``, before verl truncates them.

    A crash between the append and the removal leaves those steps in both files, which
    readers tolerate (a step's later value wins); it never loses one.
    """
    current = run_dir / METRICS_FILE
    if not current.is_file() or current.stat().st_size == 0:
        return
    data = current.read_bytes()
    with open(run_dir / EARLIER_METRICS_FILE, "ab") as earlier:
        earlier.write(data if data.endswith(b"\n") else data + b"\n")
        earlier.flush()
        os.fsync(earlier.fileno())
    current.unlink()


def read_metrics(path: Path, non_finite: dict[str, list[int]] | None = None) -> Metrics:
    """The numeric metrics of verl's file-logger file ``path``, as ``{name: {step: value}}``.

    ``path`` is a run's ``metrics.jsonl``; the files of :data:`METRICS_FILES` beside it are read in
    their order, a step logged again taking its later value.
    NaN and ±infinity are left out, their steps recorded in ``non_finite`` by metric. A last
    line without its newline is left out when it does not parse: the trainer may be writing
    it. UsageError for a missing file, a file that is not UTF-8, a malformed line or a file
    without any metric.
    """
    parts = [path.with_name(name) for name in METRICS_FILES]
    if not any(part.is_file() for part in parts):
        raise UsageError(f"{path}: no metrics file",
                         hint="verl's file logger writes it once the run logs its first step")
    metrics: Metrics = {}
    non_finite = {} if non_finite is None else non_finite
    for part in parts:
        if part.is_file():
            _read_metric_lines(part, metrics, non_finite)
    if not metrics:
        raise UsageError(f"{path}: the metrics file is empty (no step with a numeric metric)",
                         hint="has the run trained a step yet? see its train.log")
    return metrics


def _read_metric_lines(path: Path, metrics: Metrics, non_finite: dict[str, list[int]]) -> None:
    text = read_utf8(path)
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines) and not text.endswith("\n"):
                break
            raise UsageError(f"{path}:{number}: not a JSON line ({error})") from None
        if not (isinstance(record, dict) and isinstance(record.get("step"), int)
                and isinstance(record.get("data"), dict)):
            raise UsageError(f'{path}:{number}: expected {{"step": N, "data": {{...}}}}, as verl\'s file logger writes')
        values, infinite = numbers(record["data"])
        for name, value in values.items():
            metrics.setdefault(name, {})[record["step"]] = value
        for name in infinite:
            non_finite.setdefault(name, []).append(record["step"])


def numbers(data: Mapping[str, object]) -> tuple[dict[str, float], list[str]]:
    """A record's numeric metrics: the finite ones, and the names of the NaN or infinite ones (verl
    also logs strings and, as null, NaN: neither is a number here)."""
    finite, infinite = {}, []
    for name, value in data.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            finite[name] = float(value)
        else:
            infinite.append(name)
    return finite, infinite


class MetricsTail:
    """The records a metrics file gained since the last :meth:`read`: what a view of a running run reads.

    Only whole lines are read (the trainer may be writing the last one); a file that was replaced or
    truncated (verl truncates it when a resumed run starts) is read again from its start, and its steps
    come again: a step's later value wins, as everywhere. A line that is not a record is skipped, not
    refused: a view must not stop over what ``fipo report`` names.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._offset = 0
        self._inode: int | None = None

    def read(self) -> list[tuple[int, dict[str, float]]]:
        """The new records as (step, finite numbers)."""
        try:
            with open(self.path, "rb") as file:
                stat = os.fstat(file.fileno())
                if stat.st_ino != self._inode or stat.st_size < self._offset:
                    self._inode, self._offset = stat.st_ino, 0
                file.seek(self._offset)
                data = file.read()
        except OSError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        return parse_records(complete.decode("utf-8", errors="replace").splitlines())


def parse_records(lines: Iterable[str]) -> list[tuple[int, dict[str, float]]]:
    """The (step, finite numbers) of verl's file-logger lines; lines that are not records are skipped."""
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and isinstance(record.get("data"), dict):
            records.append((record["step"], numbers(record["data"])[0]))
    return records


def last_step(run_dir: Path) -> int | None:
    """The last step in the run's metrics file, read from its end (the file grows to many MiB).

    A requeued run that has not logged again yet shows the last step of its earlier attempts.
    """
    for name in reversed(METRICS_FILES):
        step = _last_step_in(run_dir / name)
        if step is not None:
            return step
    return None


def _last_step_in(path: Path) -> int | None:
    try:
        with open(path, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - _TAIL_BYTES))
            lines = file.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            step = json.loads(line).get("step")
        except (ValueError, AttributeError):
            continue  # a line being written, or cut by the tail's start
        if isinstance(step, int):
            return step
    return None
