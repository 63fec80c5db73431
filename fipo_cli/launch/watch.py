"""Following a run as it trains: its metrics records and its trainer's output, turned into what a view shows.

A :class:`RunWatch` is fed the run's metrics records (verl's file logger: the numbers) and its
trainer's output (for the start-up phases, and the warnings and errors :mod:`fipo_cli.launch.console`
lets through), and tells a :class:`Screen`: a live view on a terminal (``fipo_cli.cli.run_view``)
or :class:`PlainScreen`, one line per step, where there is none (CI, a pipe, a batch job's log).

It is fed in two ways: ``fipo train`` with the local launcher, and a SLURM job's task, give it the
output of the trainer they run (:func:`run_watched`); ``fipo watch`` gives it what a run's
:class:`RunFeed` read since the last poll (the launcher says which feed: the run's files where the
run directory is shared, the Ray job's log where it is not).
"""

from __future__ import annotations

import codecs
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol, TextIO

from fipo_cli.launch.console import Notice, Shown, TrainerConsole
from fipo_cli.launch.process import run_local
from fipo_cli.runs.layout import EARLIER_METRICS_FILE, LOG_FILE, METRICS_FILE
from fipo_cli.runs.metrics import MetricsTail
from fipo_cli.runs.progress import Progress, StepNumbers, plain_line, progress

#: Records as :class:`~fipo_cli.runs.metrics.MetricsTail` reads them: (step, finite numbers).
Records = Sequence[tuple[int, Mapping[str, float]]]


class Screen(Protocol):
    """What shows a run: a live view redraws on every call, a log prints steps, phases and notices."""

    def begin(self, run: str, wandb: str | None, log: Path) -> None:
        """The run shown (``EXP/RUN``), its W&B link, its full log."""

    def phase(self, text: str) -> None:
        """A start-up phase begins (Ray, the model, vLLM): shown until the first step."""

    def steps(self, states: Sequence[Progress]) -> None:
        """Steps were logged: the progress after each of them, oldest first."""

    def tick(self, state: Progress) -> None:
        """Time passed (the elapsed time grew)."""

    def notice(self, notice: Notice) -> None:
        """A real warning or an error of the trainer's, whole."""

    def close(self, lines: Sequence[str]) -> None:
        """The watch is over; ``lines`` say what was counted and not shown."""


class PlainScreen:
    """The view without a terminal: a line per step, a line per start-up phase, notices as printed."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out

    def _print(self, line: str) -> None:
        out = self._out or sys.stdout
        out.write(line + "\n")
        out.flush()

    def begin(self, run: str, wandb: str | None, log: Path) -> None:
        self._print(f"fipo: run {run}" + (f" · W&B {wandb}" if wandb else "") + f" · everything the trainer prints: {log}")

    def phase(self, text: str) -> None:
        self._print(f"fipo: {text}")

    def steps(self, states: Sequence[Progress]) -> None:
        for state in states:
            self._print(plain_line(state))

    def tick(self, state: Progress) -> None:
        """Nothing: a log gets a line per step, not per second."""

    def notice(self, notice: Notice) -> None:
        for line in notice.lines:
            self._print(line)
        if notice.repeats > 1:
            self._print(f"fipo: (printed {notice.repeats} times)")

    def close(self, lines: Sequence[str]) -> None:
        for line in lines:
            self._print(line)


class RunWatch:
    """Everything a view of one run shows, from what it is fed.

    ``run``, ``wandb``, ``log``: what :meth:`Screen.begin` names; ``total``: the steps the run trains
    for (None: verl's own count is taken from its output); ``elapsed``: the seconds the run has run,
    asked at every tick.
    """

    def __init__(self, screen: Screen, *, run: str, wandb: str | None, log: Path, total: int | None,
                 elapsed: Callable[[], float | None]) -> None:
        self.screen = screen
        self.console = TrainerConsole()
        # A read can end inside a character: the decoder keeps its first bytes for the next one.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._total = total
        self._elapsed = elapsed
        self._steps: dict[int, StepNumbers] = {}
        self._shown_through: int | None = None
        self._phase: str | None = None
        self._closed = False
        screen.begin(run, wandb, log)

    @property
    def state(self) -> Progress:
        return progress(sorted(self._steps.values(), key=_by_step), self._total, self._elapsed())

    def output(self, chunk: bytes) -> None:
        """The trainer's output, as it arrives."""
        self._show(self.console.feed(self._decoder.decode(chunk, final=not chunk)))

    def phase(self, text: str) -> None:
        """A start-up phase (fipo's own: the run's Ray head, a queue; or read from the trainer's output),
        shown until the first step, each once."""
        if not self._steps and text != self._phase:
            self._phase = text
            self.screen.phase(text)
            self.screen.tick(self.state)

    def records(self, records: Records) -> None:
        """Metrics records: a step logged again (a resumed run) takes its later value."""
        if not records:
            return
        for step, data in records:
            self._steps[step] = StepNumbers.of(step, data)
        ordered = sorted(self._steps.values(), key=_by_step)
        new = [index for index, numbers in enumerate(ordered)
               if self._shown_through is None or numbers.step > self._shown_through]
        if not new:
            return
        # Steps read together (a watch that starts late): each one's elapsed time is now's less the
        # times of the steps after it.
        elapsed, later, states = self._elapsed(), 0.0, []
        for index in reversed(new):
            states.append(progress(ordered[: index + 1], self._total, None if elapsed is None else max(0.0, elapsed - later)))
            later += ordered[index].seconds or 0.0
        self.screen.steps(states[::-1])
        self._shown_through = ordered[-1].step

    def tick(self) -> None:
        """Between reads: errors whose last line has come are shown, the view's clock moves."""
        self._show(self.console.flush())
        self.screen.tick(self.state)

    def close(self) -> None:
        """The output has ended: what is still gathered is shown, then what was counted (once)."""
        if self._closed:
            return
        self._closed = True
        self._show(self.console.close())
        self.screen.close([line for line in (self.console.summary(),) if line])

    def _show(self, shown: Shown) -> None:
        if shown.total_steps is not None and self._total is None:
            self._total = shown.total_steps
        if shown.phase is not None:
            self.phase(shown.phase)
        for notice in shown.notices:
            self.screen.notice(notice)


def _by_step(numbers: StepNumbers) -> int:
    return numbers.step


def run_watched(command: Sequence[str], *, env: Mapping[str, str], log_path: Path, watch: RunWatch | None,
                on_signal: Callable[[signal.Signals], None] | None = None) -> int:
    """The trainer, its output in ``log_path``; on the terminal everything (no ``watch``) or ``watch``'s view,
    fed by the trainer's output and the metrics file beside the log. ``on_signal`` as :func:`run_local`'s."""
    if watch is None:
        return run_local(command, env=env, log_path=log_path, on_signal=on_signal)
    metrics = MetricsTail(Path(log_path).with_name(METRICS_FILE))

    def tick() -> None:
        watch.records(metrics.read())
        watch.tick()

    try:
        return run_local(command, env=env, log_path=log_path, output=watch.output, tick=tick, on_signal=on_signal)
    finally:
        watch.records(metrics.read())
        watch.close()


class RunFeed(Protocol):
    """What a run wrote since the last :meth:`poll`, wherever it trains."""

    def poll(self) -> tuple[bytes, Records]:
        """The trainer's new output, and the new metrics records."""

    def close(self) -> None:
        """Stop reading."""


class FileFeed:
    """A run read from its directory (here, or on the filesystem a cluster shares): ``train.log`` and the
    metrics files, the steps of earlier attempts first."""

    def __init__(self, run_dir: Path) -> None:
        self._log = Path(run_dir) / LOG_FILE
        self._offset = 0
        self._earlier: MetricsTail | None = MetricsTail(Path(run_dir) / EARLIER_METRICS_FILE)
        self._metrics = MetricsTail(Path(run_dir) / METRICS_FILE)

    def poll(self) -> tuple[bytes, Records]:
        try:
            with open(self._log, "rb") as log:
                log.seek(self._offset)
                output = log.read()
        except OSError:
            output = b""
        self._offset += len(output)
        records = []
        if self._earlier is not None:
            records, self._earlier = self._earlier.read(), None
        return output, [*records, *self._metrics.read()]

    def close(self) -> None:
        """Nothing is held open between polls."""


def follow(feed: RunFeed, watch: RunWatch, *, finished: Callable[[], bool], poll_s: float = 1.0,
           sleep: Callable[[float], None] = time.sleep) -> None:
    """Feed ``watch`` from ``feed`` until ``finished()`` says the run is over, then once more, and close it."""
    try:
        while True:
            done = finished()
            output, records = feed.poll()
            if output:
                watch.output(output)
            watch.records(records)
            watch.tick()
            if done:
                return
            sleep(poll_s)
    finally:
        feed.close()
        watch.close()
