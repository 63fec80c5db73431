"""The report's one page, ``report.html``: self-contained, every chart embedded as a base64 PNG."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape

from fipo_cli.report.data import RunData, StepRange
from fipo_cli.report.figures import Chart, Figures

_STYLE = (
    "body{font-family:sans-serif;max-width:1700px;margin:1em auto;padding:0 1em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
    "img{max-width:100%}.swatch{display:inline-block;width:1em;height:1em;vertical-align:middle}"
)


def html_page(runs: Sequence[RunData], colours: dict[str, str], figures: Figures,
              images: Sequence[tuple[Chart, bytes]], steps: StepRange) -> str:
    """The page: the runs with their colours and parameters, the charts, the fits, what was left out."""
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8"><title>fipo report</title>',
        f"<style>{_STYLE}</style></head><body>",
        "<h1>fipo report</h1>",
        f"<p>Steps: {escape(str(steps)) if steps != StepRange() else 'all'}</p>",
        "<h2>Runs</h2><table><tr><th></th><th>run</th><th>parameters</th><th>steps logged</th>"
        "<th>evaluations</th></tr>",
    ]
    for run in runs:
        logged = sorted({step for values in run.metrics.values() for step in values})
        span = f"{logged[0]}–{logged[-1]} ({len(logged)})" if logged else "none"
        evals = ", ".join(f"{benchmark} × {len(points)}" for benchmark, points in run.evals.items()) or "none"
        parts.append(
            f'<tr><td><span class="swatch" style="background:{colours[run.ref]}"></span></td>'
            f"<td>{escape(run.ref)}</td><td>{escape(run.parameters)}</td><td>{span}</td><td>{escape(evals)}</td></tr>"
        )
    parts.append("</table>")
    for chart, png in images:
        encoded = base64.b64encode(png).decode("ascii")
        parts.append(f'<h2>{escape(chart.title)}</h2><img alt="{escape(chart.name)}" '
                     f'src="data:image/png;base64,{encoded}">')
    if figures.fits:
        parts.append("<h2>Accuracy against length: linear fits</h2><table><tr><th>run</th><th>benchmark</th>"
                     "<th>points</th><th>slope (pp / 1k tokens)</th><th>intercept (%)</th><th>R²</th></tr>")
        for fit in figures.fits:
            r2 = "–" if fit.r2 is None else f"{fit.r2:.3f}"
            parts.append(f"<tr><td>{escape(fit.run)}</td><td>{escape(fit.benchmark)}</td><td>{fit.points}</td>"
                         f"<td>{fit.slope:+.3f}</td><td>{fit.intercept:.2f}</td><td>{r2}</td></tr>")
        parts.append("</table>")
    for heading, lines in (("Left out", figures.skipped), ("Notes", figures.notes)):
        if lines:
            parts.append(f"<h2>{heading}</h2><ul>" + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
