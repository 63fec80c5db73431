"""`fipo report --wandb`: the report's charts as native W&B custom charts, in a run of job type ``report``.

Each panel is logged as ``wandb.plot.line_series`` under ``report/<chart>/<panel>`` (for
example ``report/length_percentiles/p25``): a W&B Table of (x, series, value) rows behind a
line chart that W&B draws, so the charts are interactive there. Every line of the PNG is a
series: a run, a run's fit, a reference level.

Project, entity and mode come from the first run's ``tracking`` section (mode as ``fipo
eval`` resolves it: an explicit ``WANDB_MODE`` wins unless tracking is disabled); the group
is the runs' group when they share one. W&B's files go under ``--out``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fipo_cli.experiment.config import TrackingConfig
from fipo_cli.report.data import RunData, StepRange
from fipo_cli.report.figures import Chart, Panel

JOB_TYPE = "report"


def chart_keys(charts: Sequence[Chart]) -> list[str]:
    """The history key of every panel with a line, in logging order (an empty panel has nothing to chart)."""
    return [f"report/{chart.name}/{panel.name}" for chart, panel in _drawn(charts)]


def _drawn(charts: Sequence[Chart]) -> list[tuple[Chart, Panel]]:
    return [(chart, panel) for chart in charts for panel in chart.panels if panel.lines]


def log_charts(charts: Sequence[Chart], runs: Sequence[RunData], steps: StepRange, out_dir: Path) -> str | None:
    """Log every panel to a new W&B run of job type ``report``; returns its id (None: tracking disabled)."""
    from fipo_cli.tracking.wandb_runs import resolve_mode, wandb_run

    tracking = next((run.config.tracking for run in runs if run.config is not None), TrackingConfig())
    mode = resolve_mode(tracking.mode)
    if mode == "disabled":
        return None
    groups = {run.config.tracking.group for run in runs if run.config is not None}
    experiments = list(dict.fromkeys(run.experiment for run in runs))
    with wandb_run(
        project=tracking.project, entity=tracking.entity, mode=mode, directory=out_dir, job_type=JOB_TYPE,
        name="report-" + "+".join(experiments), group=groups.pop() if len(groups) == 1 else None,
        config={"runs": [run.ref for run in runs], "steps": str(steps)},
    ) as run:
        import wandb  # importable: wandb_run checked it

        row = {}
        for key, (chart, panel) in zip(chart_keys(charts), _drawn(charts), strict=True):
            row[key] = wandb.plot.line_series(
                xs=[list(line.xs) for line in panel.lines], ys=[list(line.ys) for line in panel.lines],
                keys=[line.label for line in panel.lines], title=f"{chart.title}: {panel.title}", xname=panel.xlabel,
            )
        run.log(row)
        return run.id
