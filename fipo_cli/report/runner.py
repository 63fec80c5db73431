"""`fipo report` from start to end: read the runs, build the charts, write the PNGs and the page, log to W&B."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fipo_cli.core.errors import ConfigError, UsageError
from fipo_cli.core.files import write_all
from fipo_cli.report import charts, data, figures, summary
from fipo_cli.report.data import RunData, StepRange
from fipo_cli.runs.layout import REPORT_DIR, REPORT_HTML


@dataclass
class Report:
    out: Path
    html: Path
    runs: list[RunData]
    colours: dict[str, str]
    figures: figures.Figures
    files: list[Path] = field(default_factory=list)
    """The PNG of each of ``figures.charts``, in the same order."""
    wandb_run: str | None = None
    wandb_sync: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "html": str(self.html),
            "runs": [
                {"run": run.ref, "parameters": run.parameters, "colour": self.colours[run.ref]} for run in self.runs
            ],
            "charts": [
                {"name": chart.name, "title": chart.title, "file": str(path), "panels": [p.name for p in chart.panels]}
                for chart, path in zip(self.figures.charts, self.files, strict=True)
            ],
            "skipped": self.figures.skipped,
            "notes": self.figures.notes,
            "fits": [asdict(fit) for fit in self.figures.fits],
            "wandb": None if self.wandb_run is None else {"run_id": self.wandb_run, "sync": self.wandb_sync},
        }


def make_report(
    references: list[str], *, out: Path | None, steps: StepRange, from_wandb: bool = False, to_wandb: bool = False,
    paper_lines: bool | None = None,
) -> Report:
    """The report of the runs the references name (experiments or ``EXP/RUN``), written into ``out``.

    ``out`` defaults to ``experiments/EXP/report/`` of the first run's experiment. A run named
    by itself must have metrics (UsageError otherwise); a run that only came with its
    experiment and has none (not started, say) is left out with a line in ``skipped``.
    """
    charts.require_matplotlib()
    runs, left_out = [], []
    for run_dir, named in data.resolve(references):
        try:
            runs.append(data.load_run(run_dir, from_wandb=from_wandb))
        except (UsageError, ConfigError) as error:
            if named:
                raise
            left_out.append(f"left out run {run_dir.parent.parent.name}/{run_dir.name}: {error.message}")
    if not runs:
        raise UsageError("no run to report:\n  " + "\n  ".join(left_out), hint="train a step first, or name other runs")
    _require_steps_logged(runs, steps)
    built = figures.build(runs, steps, paper_lines)
    built.skipped[:0] = left_out
    colours = figures.colours(runs)
    images = [(chart, charts.render(chart, colours)) for chart in built.charts]
    out = out or runs[0].directory.parent.parent / REPORT_DIR
    report = Report(out, out / REPORT_HTML, runs, colours, built)
    page = summary.html_page(runs, colours, built, images, steps)
    writers = {f"{chart.name}.png": functools.partial(Path.write_bytes, data=png) for chart, png in images}
    writers[REPORT_HTML] = functools.partial(Path.write_text, data=page, encoding="utf-8")
    report.files = write_all(out, "--out", writers)[: len(images)]
    if to_wandb:
        from fipo_cli.report.wandb_charts import log_charts
        from fipo_cli.tracking.identity import wandb_sync_command

        report.wandb_run = log_charts(built.charts, runs, steps, out)
        report.wandb_sync = wandb_sync_command(out) if report.wandb_run else None
    return report


def _require_steps_logged(runs: list[RunData], steps: StepRange) -> None:
    """A UsageError when ``--steps`` holds none of the steps the runs logged, naming the range they did."""
    logged = set().union(*(run.steps_logged for run in runs))
    if not logged or any(step in steps for step in logged):
        return
    first, last = min(logged), max(logged)
    raise UsageError(f"--steps {steps}: no step of these runs lies there; they logged steps {first} to {last}",
                     hint=f"pass a range within {first}:{last}, or leave --steps out")
