"""What each chart of `fipo report` shows (FIPO.md §4), independent of how it is drawn.

The charts, by file name:

    length_percentiles      (a) response length min, p25, median, mean, p75, p90, max per step (Fig. 3 a–e)
    accuracy_vs_length_B    (b) avg@n against mean response length, linear fit per run (Fig. 3 f)
    eval_B                  (c) avg@n and cons@n per checkpoint step, with reference lines on AIME 2024 (Fig. 1)
    stability               (d) dual-clip fraction, policy KL, gradient norm, mean length (Fig. 2)
    advantage_reward        (e) length-weighted mean advantage and mean reward (Fig. 4)
    future_kl               (f) mean Future-KL and the influence weights per step, FIPO runs only
    validation              (g) verl's own validation accuracy per step, one panel per data source
    accuracy_vs_length_validation
                            (h) that accuracy against the step's mean response length, fit per run

B is a benchmark that ``fipo eval --run`` evaluated. In (b) the length is the mean length of
the evaluation's own samples, so that accuracy and length describe the same responses. verl
validates during training when ``trainer.test_freq`` says (and before step 1 with
``trainer.val_before_train``); (g) reads the accuracy it logs, ``val-core/SOURCE/acc/mean@N``
(``reward`` in place of ``acc`` where the reward function reports no accuracy). In (h) the length
is the mean length of the training responses of the same step (verl does not log the length of
its validation responses), so the validation before step 1 has no point there. FIPO and DAPO
runs of one report share every chart but (f): DAPO has no Future-KL.
Accuracies are in percent, as in the paper, on an axis at least ten points wide. A panel whose
metric no run has stays in its chart, empty, saying so (a chart none of whose panels has data
is left out); :class:`Figures` says which metric was missing.
"""

from __future__ import annotations

import dataclasses
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from fipo_cli.report.data import RunData, StepRange

#: AIME 2024 avg@32 (Pass@1, %) of the paper's reference points (FIPO.md §3): all of 32B-class models.
AIME24_REFERENCES = (("DAPO", 50.0), ("DeepSeek-R1-Zero-32B", 47.0), ("o1-mini", 56.0))
REFERENCE_BENCHMARK = "aime24"
#: The model size the reference points apply to, as it appears in a model's path (Qwen/Qwen2.5-32B).
REFERENCE_MODEL_SIZE = re.compile(r"(?<![0-9.])32b\b", re.IGNORECASE)
#: A value more than this many times larger (in magnitude) than its panel's typical one is an
#: outlier: left out of the drawing, so that one 1e308 from a broken step does not flatten every
#: other line, and named. Real spikes (a gradient norm 1,000× its median) stay drawn.
OUTLIER_FACTOR = 1e6
#: The narrowest accuracy axis, in percentage points.
MIN_ACCURACY_SPAN = 10.0
#: Metrics that are shares (of tokens): their axis starts at 0.
FRACTIONS = frozenset({"actor/pg_clipfrac_lower", "actor/fipo_clipfrac_upper"})
#: matplotlib's tab10: one colour per run, the same in every chart.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")

#: (panel name, metric, title) of the history charts.
LENGTH_PANELS = (
    ("min", "response_length/min", "min"),
    ("p25", "response_length/p25", "25th percentile"),
    ("median", "response_length/median", "median"),
    ("mean", "response_length/mean", "mean"),
    ("p75", "response_length/p75", "75th percentile"),
    ("p90", "response_length/p90", "90th percentile"),
    ("max", "response_length/max", "max"),
)
STABILITY_PANELS = (
    ("dual_clip_fraction", "actor/pg_clipfrac_lower", "dual-clip fraction"),
    ("policy_kl", "actor/ppo_kl", "policy KL"),
    ("grad_norm", "actor/grad_norm", "gradient norm"),
    ("mean_length", "response_length/mean", "mean response length (tokens)"),
)
ADVANTAGE_PANELS = (
    ("length_weighted_advantage", "critic/advantages/length_weighted_mean", "length-weighted mean advantage"),
    ("mean_reward", "critic/rewards/mean", "mean reward"),
)
FUTURE_KL_PANELS = (
    ("future_kl", "actor/fipo_future_kl_mean", "mean Future-KL"),
    ("weight_mean", "actor/fipo_influence_weight_mean", "influence weight: mean"),
    ("weight_max", "actor/fipo_influence_weight_max", "influence weight: max"),
    ("clipped_upper", "actor/fipo_clipfrac_upper", "share of weights at the upper bound"),
)
#: verl's headline validation metric: mean accuracy (or reward) over the n samples of each prompt.
VALIDATION_METRIC = re.compile(r"^val-core/(?P<source>.+)/(?P<var>acc|reward)/mean@(?P<n>\d+)$")


@dataclass(frozen=True)
class Line:
    """One series of a panel: a run's values (``run`` is its ref), a run's fit, or a reference level."""

    label: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    run: str | None = None
    style: str = "line"
    """``line``, ``points`` (no connecting line), ``fit`` (dashed) or ``reference`` (grey, dotted)."""


@dataclass(frozen=True)
class Panel:
    name: str
    title: str
    xlabel: str
    ylabel: str
    lines: tuple[Line, ...]
    steps: bool = True
    """The x axis counts training steps: whole numbers only."""
    y_range: tuple[float | None, float | None] | None = None
    """Fixed y limits (None at an end: matplotlib's); None: matplotlib's at both ends."""
    note: str | None = None
    """Why the panel shows less than it should (nothing logged, no fit): written inside it."""


@dataclass(frozen=True)
class Chart:
    name: str
    """The file name without ``.png``, and the W&B key under ``report/``."""
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Fit:
    """The least-squares line avg@n (%) = intercept + slope · length / 1000 of one run on one benchmark."""

    run: str
    benchmark: str
    points: int
    slope: float
    """Percentage points of avg@n per 1,000 tokens of mean response length."""
    intercept: float
    r2: float | None
    """Coefficient of determination; None when every accuracy is the same (nothing to explain)."""


@dataclass
class Figures:
    charts: list[Chart] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """One line per chart or panel left out, naming the metric that was missing."""
    notes: list[str] = field(default_factory=list)
    """Runs missing from a chart that other runs are in."""
    fits: list[Fit] = field(default_factory=list)


def accuracy_range(values: Sequence[float]) -> tuple[float, float]:
    """The y limits of an accuracy panel (percent): the values with a margin, at least
    :data:`MIN_ACCURACY_SPAN` points wide, inside 0–100. A flat 0 % is drawn on 0–10 %, not on
    −0.04–0.04 %; AIME's 50 % against 56 % keeps its gap visible, as a 0–100 % axis would not."""
    low, high = min(values), max(values)
    margin = max(1.0, 0.1 * (high - low))
    low, high = low - margin, high + margin
    if high - low < MIN_ACCURACY_SPAN:
        middle = (low + high) / 2
        low, high = middle - MIN_ACCURACY_SPAN / 2, middle + MIN_ACCURACY_SPAN / 2
    if low < 0:
        low, high = 0.0, high - low
    if high > 100:
        low, high = low - (high - 100), 100.0
    return max(0.0, low), min(100.0, high)


def colours(runs: Sequence[RunData]) -> dict[str, str]:
    """Each run's colour, by its position in the report (the palette repeats after ten runs)."""
    return {run.ref: PALETTE[index % len(PALETTE)] for index, run in enumerate(runs)}


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float | None]:
    """Least squares y = a + b·x: (b, a, R²). Needs two distinct x; R² is None when every y is the same."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("a linear fit needs at least two distinct x values")
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = mean_y - slope * mean_x
    total = sum((y - mean_y) ** 2 for y in ys)
    residual = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    return slope, intercept, (1.0 - residual / total) if total > 0 else None


def paper_references_apply(runs: Sequence[RunData]) -> bool:
    """Whether the paper's AIME 2024 reference points compare with these runs: some run trains a 32B model."""
    return any(run.config is not None and REFERENCE_MODEL_SIZE.search(run.config.model.path) for run in runs)


def build(runs: Sequence[RunData], steps: StepRange, references: bool | None = None) -> Figures:
    """Every chart the runs have data for, cropped to ``steps``, and why the others are missing.

    ``references``: draw the paper's 32B reference points on the AIME 2024 chart; None: when
    :func:`paper_references_apply`.
    """
    figures = Figures()
    for run in runs:
        if run.non_finite:
            named = ", ".join(f"{key} (step{'s' if len(at) > 1 else ''} {_steps_text(at)})"
                              for key, at in sorted(run.non_finite.items()))
            figures.notes.append(f"{run.ref}: NaN or infinite values left out: {named}")
    if references is None:
        references = paper_references_apply(runs)
    _history_chart(figures, "length_percentiles", "Response length per training step (tokens)", LENGTH_PANELS,
                   runs, steps)
    for benchmark in sorted({benchmark for run in runs for benchmark in run.evals}):
        _accuracy_vs_length(figures, benchmark, runs, steps)
        _eval_chart(figures, benchmark, runs, steps, references)
    if not any(run.evals for run in runs):
        figures.skipped.append(
            "skipped accuracy_vs_length and eval charts: no `fipo eval` results in these runs "
            "(missing RUN/eval/BENCH/step_N/results.json; run `fipo eval aime24 --run EXP/RUN --step all`)"
        )
    _history_chart(figures, "stability", "Stability diagnostics", STABILITY_PANELS, runs, steps)
    _history_chart(figures, "advantage_reward", "Advantage and reward", ADVANTAGE_PANELS, runs, steps)
    fipo_runs = [run for run in runs if run.config is None or run.config.algorithm.name == "fipo"]
    if fipo_runs:  # DAPO has no Future-KL: its runs are left out of this chart, not missing from it
        _history_chart(figures, "future_kl", "Future-KL and influence weights (FIPO runs)", FUTURE_KL_PANELS,
                       fipo_runs, steps)
    else:
        figures.skipped.append("skipped future_kl.png: no FIPO run among these")
    _validation_charts(figures, runs, steps)
    figures.charts = [_without_outliers(figures, chart) for chart in figures.charts]
    return figures


def _steps_text(steps: Sequence[int], shown: int = 5) -> str:
    listed = ", ".join(map(str, sorted(steps)[:shown]))
    return listed + (f" and {len(steps) - shown} more" if len(steps) > shown else "")


def outlier_limit(values: Sequence[float]) -> float | None:
    """The magnitude above which a value is an outlier: :data:`OUTLIER_FACTOR` times the median
    magnitude, or, where most values are 0 (a clip fraction), times the smallest nonzero one.
    None when every value is 0."""
    magnitudes = [abs(value) for value in values]
    typical = statistics.median(magnitudes) if magnitudes else 0.0
    if typical == 0:
        typical = min((magnitude for magnitude in magnitudes if magnitude > 0), default=0.0)
    return OUTLIER_FACTOR * typical if typical > 0 else None


def _without_outliers(figures: Figures, chart: Chart) -> Chart:
    """The chart with each panel's outliers left out of its lines, each named once in ``figures.notes``."""
    panels = []
    for panel in chart.panels:
        limit = outlier_limit([y for line in panel.lines if line.style != "reference" for y in line.ys])
        if limit is None:
            panels.append(panel)
            continue
        lines = []
        for line in panel.lines:
            kept = [(x, y) for x, y in zip(line.xs, line.ys, strict=True) if line.style == "reference" or abs(y) <= limit]
            if len(kept) < len(line.xs):
                cut = [f"{x:g}: {y:.3g}" for x, y in zip(line.xs, line.ys, strict=True) if abs(y) > limit]
                figures.notes.append(f"{chart.name}.png, {panel.title}: {line.run or line.label}: "
                                     f"outlier{'s' if len(cut) > 1 else ''} left out of the chart ({', '.join(cut)})")
            if kept:
                lines.append(dataclasses.replace(line, xs=tuple(x for x, _ in kept), ys=tuple(y for _, y in kept)))
        panels.append(dataclasses.replace(panel, lines=tuple(lines)))
    return dataclasses.replace(chart, panels=tuple(panels))


def _history_chart(figures: Figures, name: str, title: str, definitions: Sequence[tuple[str, str, str]],
                   runs: Sequence[RunData], steps: StepRange) -> None:
    """A chart of metrics per training step; a panel no run can fill stays, saying why (the chart is left
    out only when no panel has a line)."""
    panels, missing = [], []
    for panel_name, key, panel_title in definitions:
        y_range = (0.0, None) if key in FRACTIONS else None
        if all(key not in run.metrics for run in runs):
            missing.append((key, panel_title))
            panels.append(Panel(panel_name, panel_title, "training step", panel_title, (), y_range=y_range,
                                note=f"not drawn: no run logged {key}"))
            continue
        lines = []
        for run in runs:
            xs, ys = run.series(key, steps)
            if xs:
                lines.append(Line(run.label, tuple(xs), tuple(ys), run=run.ref))
            elif key not in run.metrics:
                figures.notes.append(f"{name}.png, {panel_title}: {run.ref} has no metric {key}")
        note = None
        if not lines:
            figures.skipped.append(f"skipped {name}.png panel {panel_title!r}: no step of {key} in --steps {steps}")
            note = f"not drawn: no step of {key} in --steps {steps}"
        elif key in FRACTIONS and not any(y for line in lines for y in line.ys):
            y_range, note = (0.0, 1.0), "0 at every step"
        panels.append(Panel(panel_name, panel_title, "training step", panel_title, tuple(lines), y_range=y_range,
                            note=note))
    if not any(panel.lines for panel in panels):
        keys = ", ".join(key for key, _ in missing)
        if missing:
            figures.skipped.append(f"skipped {name}.png ({title}): missing metric {keys}")
        return
    figures.skipped += [f"{name}.png panel {panel_title!r} is empty: missing metric {key}" for key, panel_title in missing]
    figures.charts.append(Chart(name, title, tuple(panels)))


def _accuracy_vs_length(figures: Figures, benchmark: str, runs: Sequence[RunData], steps: StepRange) -> None:
    name = f"accuracy_vs_length_{benchmark}"
    lines: list[Line] = []
    unfitted: list[str] = []
    for run in runs:
        points = [point for point in run.evals.get(benchmark, []) if point.step in steps]
        measured = [point for point in points if point.mean_length is not None]
        if len(measured) < len(points):
            figures.notes.append(f"{name}.png: {run.ref} has evaluations without response lengths (left out)")
        if not measured:
            continue
        xs = tuple(point.mean_length for point in measured)
        drawn = _points_with_fit(figures, name, run, benchmark, xs, tuple(100.0 * point.avg for point in measured))
        if len(drawn) == 1:
            unfitted.append(run.ref)
        lines += drawn
    n = _samples_label(run.evals.get(benchmark, []) for run in runs)
    title = f"{benchmark}: accuracy against mean response length"
    if not lines:
        missing = f"missing metric {benchmark} mean response length (results.json lengths.mean) in --steps {steps}"
        if not any(point.step in steps for run in runs for point in run.evals.get(benchmark, [])):
            figures.skipped.append(f"skipped {name}.png: {missing}")
            return
        figures.skipped.append(f"{name}.png is empty: {missing}")
        figures.charts.append(Chart(name, title, (Panel(
            "avg", f"avg@{n} per checkpoint", "mean response length (tokens)", f"avg@{n} (%)", (), steps=False,
            note="not drawn: the evaluations have no response lengths (results.json lengths.mean)"),)))
        return
    note = None
    if unfitted:
        note = f"no fit for {', '.join(unfitted)}: fewer than two distinct lengths"
    panel = Panel("avg", f"avg@{n} per checkpoint, linear fit per run", "mean response length (tokens)",
                  f"avg@{n} (%)", tuple(lines), steps=False,
                  y_range=accuracy_range([y for line in lines for y in line.ys]), note=note)
    figures.charts.append(Chart(name, title, (panel,)))


def _points_with_fit(figures: Figures, chart: str, run: RunData, benchmark: str, xs: tuple[float, ...],
                     ys: tuple[float, ...], slope_in_label: bool = True) -> list[Line]:
    """A run's (length, accuracy %) points and, given two distinct lengths, their least-squares line
    (recorded in ``figures.fits``; its slope and R² also in the legend with ``slope_in_label``: a chart of
    several panels has one legend, which names each run once, and the page's table has every fit)."""
    if len(set(xs)) < 2:
        figures.notes.append(f"{chart}.png: {run.ref} has fewer than two distinct lengths, no fit")
        return [Line(run.label, xs, ys, run=run.ref, style="points")]
    slope, intercept, r2 = linear_fit(xs, ys)
    figures.fits.append(Fit(run.ref, benchmark, len(xs), 1000.0 * slope, intercept, r2))
    label = (f"{run.label} (slope {1000.0 * slope:+.2f} pp/1k tokens, R² {'–' if r2 is None else f'{r2:.2f}'})"
             if slope_in_label else run.label)
    ends = (min(xs), max(xs))
    return [Line(label, xs, ys, run=run.ref, style="points"),
            Line(f"{run.ref} fit", ends, tuple(intercept + slope * x for x in ends), run=run.ref, style="fit")]


def _samples_label(point_lists) -> str:
    """n of avg@n when every evaluation drew the same number of samples per problem, else ``n``."""
    ns = {point.n for points in point_lists for point in points}
    return str(ns.pop()) if len(ns) == 1 else "n"


def _eval_chart(figures: Figures, benchmark: str, runs: Sequence[RunData], steps: StepRange, references: bool) -> None:
    name = f"eval_{benchmark}"
    panels = []
    n = _samples_label(run.evals.get(benchmark, []) for run in runs)
    # In a comparison, a run without evaluations would simply be absent: the panels name it.
    missing = [run.ref for run in runs if not any(point.step in steps for point in run.evals.get(benchmark, []))]
    unevaluated = f"not evaluated on {benchmark}: {', '.join(missing)}" if missing else None
    for panel_name, title in (("avg", f"avg@{n} (Pass@1)"), ("cons", f"cons@{n} (majority vote)")):
        lines = []
        for run in runs:
            points = [point for point in run.evals.get(benchmark, []) if point.step in steps]
            if points:
                ys = tuple(100.0 * (point.avg if panel_name == "avg" else point.cons) for point in points)
                lines.append(Line(run.label, tuple(point.step for point in points), ys, run=run.ref))
        if lines and panel_name == "avg" and benchmark == REFERENCE_BENCHMARK and references:
            ends = (min(min(line.xs) for line in lines), max(max(line.xs) for line in lines))
            lines += [Line(f"{who} ({value:g})", ends, (value, value), style="reference")
                      for who, value in AIME24_REFERENCES]
        if lines:
            panels.append(Panel(panel_name, f"{benchmark} {title}", "training step", f"{title.split()[0]} (%)",
                                tuple(lines), y_range=accuracy_range([y for line in lines for y in line.ys]),
                                note=unevaluated))
    if panels:
        figures.charts.append(Chart(name, f"{benchmark} accuracy per checkpoint", tuple(panels)))
        figures.notes += [f"{name}.png: {ref} has no {benchmark} evaluation in --steps {steps}" for ref in missing]
    else:
        figures.skipped.append(f"skipped {name}.png: no {benchmark} evaluation in --steps {steps}")


def validation_metrics(run: RunData) -> dict[str, str]:
    """The run's validation accuracy metric (:data:`VALIDATION_METRIC`) by data source: ``acc``
    before ``reward``, then the one of most samples where several were logged."""
    found: dict[str, tuple[tuple[bool, int], str]] = {}
    for key in run.metrics:
        match = VALIDATION_METRIC.match(key)
        if match:
            rank = (match["var"] == "acc", int(match["n"]))
            if match["source"] not in found or rank > found[match["source"]][0]:
                found[match["source"]] = (rank, key)
    return {source: key for source, (_, key) in sorted(found.items())}


def _validation_charts(figures: Figures, runs: Sequence[RunData], steps: StepRange) -> None:
    """(g) and (h): one panel per data source, every run that validated it in its own colour."""
    keys = {run.ref: validation_metrics(run) for run in runs}
    sources = sorted({source for by_source in keys.values() for source in by_source})
    if not sources:
        figures.skipped.append("skipped validation.png and accuracy_vs_length_validation.png: no validation metric "
                               "(val-core/SOURCE/acc/mean@N) in these runs; verl validates every trainer.test_freq "
                               "steps and, with trainer.val_before_train, before step 1")
        return
    accuracy_panels, fit_panels = [], []
    for source in sources:
        accuracy_lines: list[Line] = []
        fit_lines: list[Line] = []
        for run in runs:
            key = keys[run.ref].get(source)
            if key is None:
                figures.notes.append(f"validation.png, {source}: {run.ref} has no validation metric for it")
                continue
            xs, ys = run.series(key, steps)
            if xs:
                accuracy_lines.append(Line(run.label, tuple(xs), tuple(100.0 * y for y in ys), run=run.ref))
            lengths = run.metrics.get("response_length/mean", {})
            paired = sorted((lengths[step], 100.0 * y) for step, y in zip(xs, ys, strict=True) if step in lengths)
            if paired:
                fit_lines += _points_with_fit(figures, "accuracy_vs_length_validation", run, f"validation {source}",
                                              tuple(x for x, _ in paired), tuple(y for _, y in paired),
                                              slope_in_label=len(sources) == 1)
        ns = {VALIDATION_METRIC.match(by_source[source])["n"] for by_source in keys.values() if source in by_source}
        title = f"{source}: mean@{ns.pop() if len(ns) == 1 else 'n'}"
        if accuracy_lines:
            accuracy_panels.append(Panel(source, title, "training step", "accuracy (%)", tuple(accuracy_lines),
                                         y_range=accuracy_range([y for line in accuracy_lines for y in line.ys])))
        if fit_lines:
            fit_panels.append(Panel(source, title, "mean response length (tokens)", "accuracy (%)", tuple(fit_lines),
                                    steps=False, y_range=accuracy_range([y for line in fit_lines for y in line.ys])))
    if accuracy_panels:
        figures.charts.append(Chart("validation", "Validation accuracy per step (verl's validation)",
                                    tuple(accuracy_panels)))
    else:
        figures.skipped.append(f"skipped validation.png: no validation step in --steps {steps}")
    if fit_panels:
        figures.charts.append(Chart("accuracy_vs_length_validation",
                                    "Validation accuracy against the step's mean training response length",
                                    tuple(fit_panels)))
    else:
        figures.skipped.append("skipped accuracy_vs_length_validation.png: no validation step that also trained "
                               f"(response_length/mean) in --steps {steps}")
