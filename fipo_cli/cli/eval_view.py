"""What `fipo eval` shows people: progress bars while it works (a :class:`fipo_cli.eval.runner.Progress`),
a summary table at the end."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from fipo_cli.eval.pipeline import Scores


class _Bars:
    def __init__(self, progress) -> None:
        self._progress = progress
        self._tasks: dict[str, int] = {}

    def callback(self, label: str) -> Callable[[int, int], None]:
        def update(done: int, total: int) -> None:
            if self._progress is None:
                return
            if label not in self._tasks:
                self._tasks[label] = self._progress.add_task(label, total=total)
            self._progress.update(self._tasks[label], completed=done, total=total)

        return update


@contextmanager
def progress(*, quiet: bool) -> Iterator[_Bars]:
    """Progress bars on stderr (none with ``quiet``), one per stage that reports."""
    if quiet:
        yield _Bars(None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), transient=False,
    ) as bars:
        yield _Bars(bars)


def show(scores: Scores, results: Path, *, as_json: bool) -> None:
    """The results as JSON, or as a table: one row per grader, percentages like the paper's Table 1."""
    if as_json:
        typer.echo(json.dumps({"results_file": str(results), **scores.to_json()}))
        return
    from rich.console import Console
    from rich.table import Table

    any_report = next(iter(scores.accuracy.values()))
    n = any_report.n
    table = Table(title=f"{any_report.problems} problems × {n} samples", caption="* the headline grader")
    for column in ("grader", f"avg@{n} %", "± s.e.", f"cons@{n} %", f"pass@{n} %", "no answer", "errors"):
        table.add_column(column, justify="left" if column == "grader" else "right")
    comparison = scores.comparison
    for name, report in scores.accuracy.items():
        label = f"{name}*" if name == scores.primary_grader else name
        table.add_row(
            label,
            f"{report.avg.value * 100:.1f} ({report.avg.percent})",
            "–" if report.stderr is None else f"{report.stderr * 100:.2f}",
            f"{report.cons.value * 100:.1f} ({report.cons.percent})",
            f"{report.pass_at[n].value * 100:.1f} ({report.pass_at[n].percent})",
            str(comparison.no_answer[name]),
            str(comparison.errors[name]),
        )
    console = Console()
    console.print(table)
    lengths = scores.lengths
    if lengths is not None:
        console.print(
            f"response tokens: mean {lengths.mean:.0f}, median {lengths.median:.0f}, p90 {lengths.p90:.0f}, "
            f"max {lengths.max}; truncated {lengths.truncated.value * 100:.1f} %"
        )
    console.print(f"graders disagree on {len(comparison.disagreements)} of {comparison.samples} samples")
    console.print(f"results: {results}", highlight=False)
