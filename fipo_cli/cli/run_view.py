"""What `fipo train` and `fipo watch` show of a run on a terminal: one live view, redrawn in place.

::

    ⠙ tiny/20261201-222345 step 12/20 ━━━━━━━━━━━━━━━━━━━━━━━━╸─────────────── 60% elapsed 00:05:31 ETA 00:02:48
      reward 0.208 · length 5.5 (p90 8) · policy loss 0.0024 · Future-KL -0.133 · clipped weights 84% low, 11% high
      · step time 15.5 s
      checkpoint step 10 · W&B fipo/runs/tiny-20261201-222345 (offline) · log experiments/tiny/runs/…/train.log

Before the first step the second line says which start-up phase the run is in. The trainer's real
warnings and errors are printed above the view as they come, whole. Without a terminal
:class:`fipo_cli.launch.watch.PlainScreen` prints a line per step instead (:func:`screen_for`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from fipo_cli.core.text import format_elapsed
from fipo_cli.launch.console import Notice
from fipo_cli.launch.watch import PlainScreen, Screen
from fipo_cli.runs.progress import Progress, numbers, step_of_total

#: The bar takes the header's free width, and at least this much.
MIN_BAR_WIDTH = 10


def render(run: str, state: Progress | None, *, phase: str | None, wandb: str | None, log: Path | None,
           spinner: Spinner | None = None) -> RenderableType:
    """The view: a header line (the run, its step of the total as a bar, elapsed, ETA), the last step's
    numbers (or the start-up phase before the first step), and where the run keeps its things."""
    elapsed = None if state is None else state.elapsed_s
    if state is None or state.step is None:
        head = _grid(bar=False)
        head.add_row(spinner or Text("·"), Text(run, style="bold"), Text(phase or "starting"),
                     Text(f"elapsed {format_elapsed(elapsed)}", style="dim"))
        return Group(head, *_footer(None, wandb, log))
    head = _grid(bar=state.fraction is not None)
    cells: list[RenderableType] = [spinner or Text("·"), Text(run, style="bold"), Text(f"step {step_of_total(state)}")]
    if state.fraction is not None:
        cells += [ProgressBar(total=1.0, completed=state.fraction, width=None), Text(f"{100 * state.fraction:3.0f}%")]
    cells.append(Text(f"elapsed {format_elapsed(elapsed)}"))
    cells.append(Text("" if state.eta_s is None else f"ETA {format_elapsed(state.eta_s)}", style="bold"))
    head.add_row(*cells)
    line = Text("  ")
    assert state.last is not None
    for index, (label, value) in enumerate(numbers(state.last)):
        if index:
            line.append(" · ", style="dim")
        line.append(f"{label} ", style="dim")
        line.append(value)
    return Group(head, line, *_footer(state.checkpoint, wandb, log))


def _grid(*, bar: bool) -> Table:
    """The header's columns: each as wide as its text, the bar (when there is one) taking what is left."""
    grid = Table.grid(padding=(0, 1), expand=bar)
    for column in range(7 if bar else 4):
        if bar and column == 3:
            grid.add_column(ratio=1, min_width=MIN_BAR_WIDTH)
        else:
            grid.add_column(no_wrap=True)
    return grid


def _footer(checkpoint: int | None, wandb: str | None, log: Path | None) -> list[Text]:
    parts = [f"checkpoint step {checkpoint}" if checkpoint is not None else "no checkpoint yet"]
    if wandb:
        parts.append(f"W&B {wandb}")
    if log is not None:
        parts.append(f"log {log}")
    return [Text("  " + " · ".join(parts), style="dim")]


class LiveScreen:
    """The view on a terminal: rich's Live display, the notices printed above it."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(highlight=False)
        self._live: Live | None = None
        self._spinner = Spinner("dots", style="cyan")
        self._run, self._wandb, self._log = "", None, None
        self._phase: str | None = None
        self._state: Progress | None = None

    def _view(self) -> RenderableType:
        return render(self._run, self._state, phase=self._phase, wandb=self._wandb, log=self._log, spinner=self._spinner)

    def _redraw(self) -> None:
        if self._live is None:
            self._live = Live(self._view(), console=self.console, refresh_per_second=4, transient=False)
            self._live.start()
        else:
            self._live.update(self._view())

    def begin(self, run: str, wandb: str | None, log: Path) -> None:
        self._run, self._wandb, self._log = run, wandb, log
        self._redraw()

    def phase(self, text: str) -> None:
        self._phase = text
        self._redraw()

    def steps(self, states: Sequence[Progress]) -> None:
        self._state = states[-1]
        self._redraw()

    def tick(self, state: Progress) -> None:
        self._state = state
        self._redraw()

    def notice(self, notice: Notice) -> None:
        text = Text("\n".join(notice.lines), style="red" if notice.kind == "error" else "yellow")
        if notice.repeats > 1:
            text.append(f"\n(printed {notice.repeats} times)", style="dim")
        self.console.print(text, soft_wrap=True)  # one print: the view is not redrawn between its lines

    def close(self, lines: Sequence[str]) -> None:
        if self._live is not None:
            self._spinner = None
            self._live.update(self._view())
            self._live.stop()
            self._live = None
        for line in lines:
            self.console.print(Text(line, style="dim"), soft_wrap=True)


def screen_for(out: TextIO | None = None) -> Screen:
    """The live view on a terminal; a line per step anywhere else (a pipe, a file, CI, ``TERM=dumb``)."""
    out = out or sys.stdout
    if out.isatty() and os.environ.get("TERM") != "dumb":
        return LiveScreen(Console(file=out, highlight=False))
    return PlainScreen(out)
