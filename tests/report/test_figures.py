"""The charts of a FIPO/DAPO comparison, from two real runs of the length lab (:mod:`lab_run`):
both algorithms in every chart but Future-KL's, accuracy per number of bits, and accuracy against
length fit by least squares, each value the one verl logged."""

from __future__ import annotations

import lab_run
import numpy as np
import pytest

from fipo_cli.assets import binary_numbers as task
from fipo_cli.report import charts, data, figures
from fipo_cli.report.data import StepRange

pytest.importorskip("matplotlib")  # the `report` extra


def logged(algo: str) -> dict[str, dict[int, float]]:
    """Every numeric metric of the recorded run, by key and step, read here without fipo's reader."""
    by_key: dict[str, dict[int, float]] = {}
    for record in lab_run.records(algo):
        for key, value in record["data"].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                by_key.setdefault(key, {})[record["step"]] = float(value)
    return by_key


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    project = tmp_path_factory.mktemp("lab")
    runs = [data.load_run(lab_run.run_dir(project, algo)) for algo in ("fipo", "dapo")]
    return runs, figures.build(runs, StepRange())


def test_length_and_reward_draw_both_algorithms_with_the_values_verl_logged(comparison):
    runs, built = comparison
    by_name = {chart.name: chart for chart in built.charts}
    for chart_name, panel_name, key in (("length_percentiles", "p90", "response_length/p90"),
                                        ("length_percentiles", "median", "response_length/median"),
                                        ("advantage_reward", "mean_reward", "critic/rewards/mean")):
        (panel,) = [panel for panel in by_name[chart_name].panels if panel.name == panel_name]
        assert [line.run for line in panel.lines] == [run.ref for run in runs]
        for line, algo in zip(panel.lines, ("fipo", "dapo"), strict=True):
            expected = logged(algo)[key]
            assert line.xs == tuple(sorted(expected)) and line.ys == tuple(expected[x] for x in sorted(expected))
    assert max(by_name["length_percentiles"].panels[0].lines[0].xs) == lab_run.STEPS


def test_future_kl_and_the_influence_weights_are_the_fipo_runs_alone(comparison):
    runs, built = comparison
    (chart,) = [chart for chart in built.charts if chart.name == "future_kl"]
    fipo = logged("fipo")
    assert not any(key.startswith("actor/fipo_") for key in logged("dapo"))  # DAPO's loss logs none of it
    for panel, key in zip(chart.panels, [key for _, key, _ in figures.FUTURE_KL_PANELS], strict=True):
        (line,) = panel.lines
        assert line.run == runs[0].ref and line.ys == tuple(fipo[key][step] for step in sorted(fipo[key]))
    # Two mini-batches a step: the second is off-policy, so Future-KL moves and the weights leave 1.
    assert any(value != 0 for value in fipo["actor/fipo_future_kl_mean"].values())
    assert max(fipo["actor/fipo_influence_weight_max"].values()) > 1.0


def test_accuracy_per_number_of_bits_from_verls_validation_before_and_during_training(comparison):
    runs, built = comparison
    (chart,) = [chart for chart in built.charts if chart.name == "validation"]
    sources = [task.validation_source(bits) for bits in task.BITS]
    assert [panel.name for panel in chart.panels] == sorted(sources)
    for panel in chart.panels:
        assert panel.title == f"{panel.name}: mean@2" and [line.run for line in panel.lines] == [r.ref for r in runs]
        for line, algo in zip(panel.lines, ("fipo", "dapo"), strict=True):
            expected = logged(algo)[f"val-core/{panel.name}/acc/mean@2"]
            assert line.xs == (0, 10, 20, 30)  # before step 1, then every trainer.test_freq steps
            assert line.ys == pytest.approx([100 * expected[step] for step in line.xs])
            low, high = panel.y_range
            assert 0 <= low <= min(line.ys) and max(line.ys) <= high <= 100


def test_accuracy_against_length_is_fit_by_least_squares_per_run_and_number_of_bits(comparison):
    runs, built = comparison
    fits = {(fit.run, fit.benchmark): fit for fit in built.fits}
    for run, algo in zip(runs, ("fipo", "dapo"), strict=True):
        metrics = logged(algo)
        for bits in task.BITS:
            source = task.validation_source(bits)
            accuracy = metrics[f"val-core/{source}/acc/mean@2"]
            steps = [step for step in sorted(accuracy) if step in metrics["response_length/mean"]]  # not step 0
            xs = np.array([metrics["response_length/mean"][step] for step in steps])
            ys = np.array([100 * accuracy[step] for step in steps])
            fit = fits[(run.ref, f"validation {source}")]
            slope, intercept = np.polyfit(xs, ys, 1)
            assert fit.points == len(steps) == 3
            assert fit.slope == pytest.approx(1000 * slope, abs=1e-6) and fit.intercept == pytest.approx(intercept)
            if np.ptp(ys) > 0:
                assert fit.r2 == pytest.approx(np.corrcoef(xs, ys)[0, 1] ** 2)


def test_every_chart_of_the_comparison_is_drawn(comparison, tmp_path):
    runs, built = comparison
    assert {"length_percentiles", "stability", "advantage_reward", "future_kl", "validation",
            "accuracy_vs_length_validation"} <= {chart.name for chart in built.charts}
    colours = figures.colours(runs)
    for chart in built.charts:
        drawn = charts.figure(chart, colours)
        assert len(drawn.axes) >= len(chart.panels)
