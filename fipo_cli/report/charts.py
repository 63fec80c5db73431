"""Drawing :class:`fipo_cli.report.figures.Chart` objects as PNG files with matplotlib (Agg, no display).

A chart is a grid of panels, at most four side by side, with the legend under the grid.
Every run has its colour from :func:`fipo_cli.report.figures.colours` in every chart. The
figure size is fixed by the number of panels and legend entries (:func:`figure_inches`), so
a PNG is ``DPI`` × that size in pixels. A training-step axis has whole-number ticks, as has an
axis of whole numbers (token counts); a panel's ``y_range`` (accuracies, fractions) fixes its y
axis; its ``note`` is written inside it; a series of one point is a marker with its value beside it.
"""

from __future__ import annotations

import io
import math

from fipo_cli.core.errors import FipoError
from fipo_cli.report.figures import Chart, Line, Panel

DPI = 100
PANEL_INCHES = (4.0, 3.0)
MAX_COLUMNS = 4
TITLE_INCHES = 0.5
LEGEND_ROW_INCHES = 0.3
#: Figure width, in panels, per legend column (a legend label with its parameters and fit is long).
PANELS_PER_LEGEND_COLUMN = 2
REFERENCE_COLOUR = "#555555"
#: Above the axes' frame (2.5), so that a line along a fixed limit (0 %) is seen.
DATA_ZORDER = 3


def grid(chart: Chart) -> tuple[int, int]:
    """(rows, columns) of the chart's panels."""
    columns = min(MAX_COLUMNS, len(chart.panels))
    return math.ceil(len(chart.panels) / columns), columns


def legend_entries(chart: Chart) -> list[Line]:
    """The runs the legend names, each once, in the order they are first drawn.

    Fits share their run's colour and reference lines carry their label on the panel.
    """
    seen: dict[str, Line] = {}
    for panel in chart.panels:
        for line in panel.lines:
            if line.run is not None and line.style != "fit":
                seen.setdefault(line.label, line)
    return list(seen.values())


def legend_columns(chart: Chart) -> int:
    return max(1, grid(chart)[1] // PANELS_PER_LEGEND_COLUMN)


def figure_inches(chart: Chart) -> tuple[float, float]:
    """(width, height): the panels, the title above them and one row per legend row below."""
    rows, columns = grid(chart)
    legend_rows = math.ceil(len(legend_entries(chart)) / legend_columns(chart))
    width = max(columns, 2) * PANEL_INCHES[0]  # two panels wide at least, so a legend label fits
    return width, rows * PANEL_INCHES[1] + TITLE_INCHES + legend_rows * LEGEND_ROW_INCHES


def require_matplotlib() -> None:
    """A clear error, before anything is read or written, when matplotlib (the `report` extra) is missing."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise FipoError("fipo report draws its charts with matplotlib, which is not installed here",
                        hint="pip install 'fipo[report]' (or matplotlib)")


def render(chart: Chart, colours: dict[str, str]) -> bytes:
    """The chart as PNG bytes."""
    buffer = io.BytesIO()
    figure(chart, colours).savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def figure(chart: Chart, colours: dict[str, str]):
    """The chart as a matplotlib ``Figure`` (Agg): one axes per panel, in order, then the unused cells."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows, columns = grid(chart)
    drawing = Figure(figsize=figure_inches(chart), dpi=DPI, layout="constrained")
    drawing.suptitle(chart.title)
    axes = drawing.subplots(rows, columns, squeeze=False)
    handles = {}
    for index, panel in enumerate(chart.panels):
        ax = axes[index // columns][index % columns]
        for line in panel.lines:
            drawn = _draw(ax, line, colours.get(line.run, REFERENCE_COLOUR))
            if line.run is not None and line.style != "fit":
                handles.setdefault(line.label, drawn)
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel(panel.xlabel, fontsize=9)
        ax.set_ylabel(panel.ylabel, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
        _axes_limits(ax, panel)
        if panel.note:
            ax.text(0.5, 0.5 if not panel.lines else 0.92, panel.note, transform=ax.transAxes, ha="center", va="center",
                    fontsize=8, color=REFERENCE_COLOUR, wrap=True)
    for index in range(len(chart.panels), rows * columns):
        axes[index // columns][index % columns].set_axis_off()
    drawing.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=legend_columns(chart),
                   fontsize=8, frameon=False)
    return drawing


def _axes_limits(ax, panel: Panel) -> None:
    """Whole steps on a step axis (one step: one tick, a step either side); whole-number ticks for whole-number
    data; the panel's fixed y range."""
    from matplotlib.ticker import MaxNLocator

    if panel.steps:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
        xs = [x for line in panel.lines if line.style != "reference" for x in line.xs]
        if xs and max(xs) - min(xs) < 2:
            ax.set_xlim(min(xs) - 1, max(xs) + 1)
    ys = [y for line in panel.lines if line.style != "reference" for y in line.ys]
    if ys and all(float(y).is_integer() for y in ys) and panel.y_range is None:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # token counts (min, max): no 1.5 tokens
    if panel.y_range is not None:
        ax.set_ylim(*panel.y_range)


def _draw(ax, line: Line, colour: str):
    if len(line.xs) == 1 and line.style in ("line", "points"):
        # One point (one checkpoint, one step): a marker, and its value beside it.
        ax.annotate(f"{line.ys[0]:.3g}", (line.xs[0], line.ys[0]), textcoords="offset points", xytext=(6, 4),
                    fontsize=8, color=colour)
        return ax.plot(line.xs, line.ys, color=colour, linestyle="none", marker="o", markersize=6, label=line.label,
                       clip_on=False, zorder=DATA_ZORDER)[0]
    # Not clipped, and over the axes' frame: a fixed y range starts at the data's bound (an accuracy's or a
    # fraction's 0), where the frame would hide a line and cut its markers in half.
    if line.style == "points":
        return ax.scatter(line.xs, line.ys, color=colour, s=18, label=line.label, clip_on=False, zorder=DATA_ZORDER)
    if line.style == "fit":
        return ax.plot(line.xs, line.ys, color=colour, linestyle="--", linewidth=1.2)[0]
    if line.style == "reference":
        ax.annotate(line.label, xy=(1.0, line.ys[0]), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                    fontsize=7, color=colour)
        return ax.axhline(line.ys[0], color=colour, linestyle=":", linewidth=1.0)
    marker = "o" if len(line.xs) <= 20 else None  # a few checkpoints show as dots; hundreds of steps as a line
    return ax.plot(line.xs, line.ys, color=colour, linewidth=1.3, marker=marker, markersize=3, label=line.label,
                   clip_on=False, zorder=DATA_ZORDER)[0]

