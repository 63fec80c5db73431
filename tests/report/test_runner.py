"""`fipo report` on runs whose metrics files and eval results the tests write, as verl and `fipo eval` do."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fipo_cli.experiment import config
from fipo_cli.report import charts, data, figures, runner
from fipo_cli.report.charts import legend_entries
from fipo_cli.report.data import StepRange, read_metrics

from fipo_run import run_fipo

pytest.importorskip("matplotlib")  # the `report` extra

STEPS = range(1, 31)


EVAL_STEPS = (5, 10, 15, 20, 25, 30)


ALL_METRICS = (
    "response_length/min", "response_length/p25", "response_length/median", "response_length/mean",
    "response_length/p75", "response_length/p90", "response_length/max", "actor/pg_clipfrac_lower",
    "actor/ppo_kl", "actor/grad_norm", "critic/advantages/length_weighted_mean", "critic/rewards/mean",
)


#: What the FIPO loss logs (a DAPO run has none of it).
FIPO_METRICS = ("actor/fipo_future_kl_mean", "actor/fipo_influence_weight_mean", "actor/fipo_influence_weight_max",
                "actor/fipo_clipfrac_upper")


#: verl's own validation, every 5 steps and before step 1 (step 0).
VALIDATION = "val-core/aime24/acc/mean@8"


VALIDATION_STEPS = (0, 5, 10, 15, 20, 25, 30)


#: What verl 0.9.1 logs without fipo's plugin: no percentiles, no length-weighted advantage.
VERL_ONLY = ("response_length/min", "response_length/mean", "response_length/max", "actor/pg_clipfrac_lower",
             "actor/ppo_kl", "actor/grad_norm", "critic/rewards/mean")


EXPECTED_CHARTS = ["length_percentiles", "accuracy_vs_length_aime24", "eval_aime24", "stability", "advantage_reward",
                   "future_kl", "validation", "accuracy_vs_length_validation"]


def make_run(project: Path, experiment: str, run: str, *, algo: str = "fipo", gamma: float | None = None,
             growth: float = 20.0, keys=ALL_METRICS + FIPO_METRICS + (VALIDATION,),
             evals: dict[int, tuple[float, float, float | None]] | None = None, seed: int = 0) -> Path:
    """A run directory as `fipo train` and `fipo eval --run` leave it: config, metrics.jsonl, results per checkpoint.

    ``evals``: step → (avg, cons, mean length) of aime24; default a length that grows with accuracy.
    The FIPO loss's metrics are logged only by a FIPO run, verl's validation every 5 steps and at step 0.
    """
    generator = np.random.default_rng(seed)
    run_dir = project / "experiments" / experiment / "runs" / run
    run_dir.mkdir(parents=True)
    experiment_dir = run_dir.parent.parent
    raw = {"name": experiment, "model": {"path": "Qwen/Qwen2.5-0.5B"}, "algorithm": {"name": algo, "gamma": gamma}}
    (experiment_dir / "fipo.yaml").write_text(json.dumps(raw))
    (run_dir / "config.yaml").write_text(config.build(raw).to_yaml())
    with (run_dir / "metrics.jsonl").open("w") as metrics:
        if VALIDATION in keys:  # the validation before step 1: a row of its own
            metrics.write(json.dumps({"step": 0, "data": {VALIDATION: 0.2}}) + "\n")
        for step in STEPS:
            mean = 500 + growth * step + generator.normal(0, 10)
            values = dict(zip(ALL_METRICS, (0.1 * mean, 0.6 * mean, 0.9 * mean, mean, 1.3 * mean, 1.8 * mean, 3 * mean,
                                            generator.uniform(0, 1e-3), generator.uniform(0, 1e-3), generator.uniform(),
                                            generator.normal(0, 0.01), -0.5 + step / 60), strict=True))
            if algo == "fipo":
                values |= dict(zip(FIPO_METRICS, (generator.uniform(0, 1e-3), 1.0 + generator.uniform(0, 0.01),
                                                  1.0 + generator.uniform(0, 0.2), generator.uniform(0, 0.05)),
                                   strict=True))
            if step in VALIDATION_STEPS:
                values[VALIDATION] = 0.2 + step / 100 + generator.normal(0, 0.01)
            # verl also logs strings and, as null, NaN: they are left out.
            data = {key: values[key] for key in keys if key in values} | {"training/epoch": 0, "val/note": "x",
                                                                          "critic/nan": None}
            metrics.write(json.dumps({"step": step, "data": data}) + "\n")
    if evals is None:
        evals = {step: (0.2 + step / 200 + generator.normal(0, 0.01), 0.3 + step / 150, 600 + growth * step * 1.1)
                 for step in EVAL_STEPS}
    for step, (avg, cons, length) in evals.items():
        results = run_dir / "eval" / "aime24" / f"step_{step}" / "results.json"
        results.parent.mkdir(parents=True)
        results.write_text(json.dumps({
            "settings": {"benchmark": "aime24"}, "primary_grader": "dapo",
            "graders": {"dapo": {"n": 32, "avg@32": {"value": avg}, "cons@32": {"value": cons}},
                        "math-verify": {"n": 32, "avg@32": {"value": 0.0}, "cons@32": {"value": 0.0}}},
            "lengths": None if length is None else {"mean": length},
        }))
    return run_dir


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """fipo-a with two FIPO runs (γ 0.99 and 0.95) and dapo-b with one DAPO run."""
    make_run(tmp_path, "fipo-a", "20261122-010000", gamma=0.99, growth=30, seed=1)
    make_run(tmp_path, "fipo-a", "20261122-020000", gamma=0.95, growth=25, seed=2)
    make_run(tmp_path, "dapo-b", "20261122-030000", algo="dapo", growth=3, seed=3)
    return tmp_path


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_the_report_draws_every_chart_with_one_colour_per_run(project):
    result = run_fipo(project, "report", "fipo-a", "dapo-b", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)

    out = project / "experiments" / "fipo-a" / "report"
    assert Path(report["out"]) == Path("experiments/fipo-a/report")
    assert [chart["name"] for chart in report["charts"]] == EXPECTED_CHARTS
    assert report["skipped"] == [] and report["notes"] == []
    runs = ["fipo-a/20261122-010000", "fipo-a/20261122-020000", "dapo-b/20261122-030000"]
    assert [run["run"] for run in report["runs"]] == runs
    assert [run["parameters"] for run in report["runs"]] == ["fipo γ=0.99 ε_f,high=0.2", "fipo γ=0.95 ε_f,high=0.2",
                                                              "dapo"]
    import matplotlib.image

    for chart in report["charts"]:
        path = project / chart["file"]
        panels = len(chart["panels"])
        columns = min(4, panels)
        # FIPO's Future-KL leaves the DAPO run out: two runs, else three; one legend column per two panels.
        drawn = [run for run in report["runs"] if chart["name"] != "future_kl" or run["parameters"] != "dapo"]
        legend_rows = math.ceil(len(drawn) / max(1, columns // 2))
        inches = (4 * max(columns, 2), 3 * math.ceil(panels / columns) + 0.5 + 0.3 * legend_rows)
        assert png_size(path) == tuple(round(100 * side) for side in inches), chart["name"]
        pixels = matplotlib.image.imread(path)[..., :3].reshape(-1, 3)
        colours = {tuple(np.round(pixel * 255).astype(int)) for pixel in pixels[::7]}
        assert len(colours) > 20, f"{path} is (nearly) blank"
        for run in drawn:  # every run is drawn in its own colour
            rgb = tuple(int(run["colour"][i:i + 2], 16) for i in (1, 3, 5))
            assert (np.abs(pixels * 255 - rgb).max(axis=1) < 2).any(), (chart["name"], run["run"])
    assert len({run["colour"] for run in report["runs"]}) == 3
    # 4 × 2 panels of 4 × 3 inches, a 0.5-inch title, two 0.3-inch legend rows, at 100 dpi.
    assert png_size(out / "length_percentiles.png") == (1600, 710)

    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(EXPECTED_CHARTS)
    assert "http" not in page.replace("http-equiv", "") and all(run in page for run in runs)


def test_the_fit_of_accuracy_against_length_is_ordinary_least_squares(project):
    result = run_fipo(project, "report", "fipo-a/20261122-010000", "--json", "--steps", "10:")
    assert result.returncode == 0, result.stderr
    fit, validation_fit = json.loads(result.stdout)["fits"]
    results = sorted((project / "experiments/fipo-a/runs/20261122-010000/eval/aime24").glob("step_*/results.json"))
    points = [json.loads(path.read_text()) for path in results if int(path.parent.name[5:]) >= 10]
    xs = np.array([point["lengths"]["mean"] for point in points])
    ys = np.array([100 * point["graders"]["dapo"]["avg@32"]["value"] for point in points])
    slope, intercept = np.polyfit(xs, ys, 1)
    assert fit["points"] == len(points) == 5
    assert fit["slope"] == pytest.approx(1000 * slope) and fit["intercept"] == pytest.approx(intercept)
    assert fit["r2"] == pytest.approx(np.corrcoef(xs, ys)[0, 1] ** 2)

    # verl's validation accuracy against the mean length of the same step's training responses.
    by_step = read_metrics(project / "experiments/fipo-a/runs/20261122-010000/metrics.jsonl")
    steps = [step for step in VALIDATION_STEPS if step >= 10]
    xs = np.array([by_step["response_length/mean"][step] for step in steps])
    ys = np.array([100 * by_step[VALIDATION][step] for step in steps])
    slope, intercept = np.polyfit(xs, ys, 1)
    assert (validation_fit["benchmark"], validation_fit["points"]) == ("validation aime24", len(steps))
    assert validation_fit["slope"] == pytest.approx(1000 * slope)
    assert validation_fit["intercept"] == pytest.approx(intercept)
    assert validation_fit["r2"] == pytest.approx(np.corrcoef(xs, ys)[0, 1] ** 2)
    assert figures.linear_fit([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]) == (0.0, 5.0, None)


def test_missing_metrics_leave_their_panel_empty_saying_why_and_the_console_says_which(tmp_path):
    make_run(tmp_path, "old", "r1", keys=VERL_ONLY, evals={})
    make_run(tmp_path, "new", "r2", evals={5: (0.2, 0.3, None), 10: (0.3, 0.4, None)})

    result = run_fipo(tmp_path, "report", "old/r1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "length_percentiles.png panel '25th percentile' is empty: missing metric response_length/p25" in lines
    assert "length_percentiles.png panel '90th percentile' is empty: missing metric response_length/p90" in lines
    assert ("advantage_reward.png panel 'length-weighted mean advantage' is empty: "
            "missing metric critic/advantages/length_weighted_mean") in lines
    assert any(line.startswith("skipped accuracy_vs_length and eval charts: no `fipo eval` results") for line in lines)
    assert "wrote 3 charts" in result.stdout
    # The figure says it too, inside the empty panel.
    run = data.load_run(tmp_path / "experiments" / "old" / "runs" / "r1")
    (chart,) = [chart for chart in figures.build([run], StepRange()).charts if chart.name == "length_percentiles"]
    assert [panel.name for panel in chart.panels] == ["min", "p25", "median", "mean", "p75", "p90", "max"]
    drawn = charts.figure(chart, figures.colours([run]))
    p25 = drawn.axes[1]
    assert not p25.lines and [text.get_text() for text in p25.texts] == ["not drawn: no run logged response_length/p25"]

    both = json.loads(run_fipo(tmp_path, "report", "old", "new", "--json").stdout)
    assert "length_percentiles.png, 25th percentile: old/r1 has no metric response_length/p25" in both["notes"]
    assert ("accuracy_vs_length_aime24.png is empty: missing metric aime24 mean response length "
            "(results.json lengths.mean) in --steps :") in both["skipped"]
    assert [chart["name"] for chart in both["charts"]] == ["length_percentiles", "accuracy_vs_length_aime24",
                                                           "eval_aime24", "stability", "advantage_reward",
                                                           "future_kl", "validation", "accuracy_vs_length_validation"]
    assert "validation.png, aime24: old/r1 has no validation metric for it" in both["notes"]


def test_steps_crop_every_chart(project, monkeypatch):
    monkeypatch.chdir(project)
    report = runner.make_report(["fipo-a"], out=project / "cropped", steps=StepRange(12, 20), paper_lines=True)
    for chart in report.figures.charts:
        for panel in chart.panels:
            for line in panel.lines:
                if chart.name.startswith("accuracy_vs_length"):
                    assert line.style == "fit" or len(line.xs) == 2  # checkpoints 15 and 20
                elif line.style != "reference":
                    assert min(line.xs) >= 12 and max(line.xs) <= 20, (chart.name, panel.name)
    lengths = report.figures.charts[0].panels[3]
    assert lengths.name == "mean" and lengths.lines[0].xs == tuple(range(12, 21))
    reference_levels = [line.ys[0] for line in report.figures.charts[2].panels[0].lines if line.style == "reference"]
    assert reference_levels == [50.0, 47.0, 56.0]
    assert sorted(path.name for path in (project / "cropped").iterdir()) == sorted(
        [f"{name}.png" for name in EXPECTED_CHARTS] + ["report.html"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["nope"], "'nope' is neither an experiment nor a run (EXP/RUN): no experiment 'nope'"),
        (["fipo-a/19990101-000000"], "'fipo-a/19990101-000000': no run '19990101-000000'"),
        (["nope/r"], "no experiment 'nope'"),
        (["empty/r"], "metrics.jsonl: the metrics file is empty"),
        (["empty"], "no run to report:"),
        (["broken/r"], "metrics.jsonl:2: not a JSON line"),
        (["fipo-a", "--steps", "20"], "--steps '20': expected A:B"),
        (["fipo-a", "--steps", "a:b"], "--steps 'a:b': expected A:B"),
        (["fipo-a", "--steps", ":"], "--steps ':': expected A:B"),
        (["fipo-a", "--steps", "9:3"], "--steps '9:3': the first step 9 is after the last 3"),
    ],
)
def test_bad_input_is_a_usage_error(project, args, message):
    for name in ("empty", "broken"):
        run_dir = project / "experiments" / name / "runs" / "r"
        run_dir.mkdir(parents=True)
        (run_dir.parent.parent / "fipo.yaml").write_text("name: x\n")
    (project / "experiments/empty/runs/r/metrics.jsonl").write_text("")
    (project / "experiments/broken/runs/r/metrics.jsonl").write_text('{"step": 1, "data": {}}\n{"step": 2,\n{}\n')

    result = run_fipo(project, "report", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (project / "experiments" / "fipo-a" / "report").exists()


def test_steps_outside_the_logged_range_are_refused_naming_the_range(project):
    result = run_fipo(project, "report", "fipo-a", "--steps", "500:600")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--steps 500:600: no step of these runs lies there; they logged steps 0 to 30" in result.stderr
    assert not (project / "experiments" / "fipo-a" / "report").exists()


def test_a_metrics_file_that_is_not_utf8_is_named_with_its_line(project):
    metrics = project / "experiments" / "fipo-a" / "runs" / "20261122-010000" / "metrics.jsonl"
    lines = metrics.read_bytes().splitlines(keepends=True)
    metrics.write_bytes(b"".join(lines[:2]) + b'{"step": 3, "data": {"x\xe9": 1}}\n' + b"".join(lines[3:]))
    result = run_fipo(project, "report", "fipo-a/20261122-010000")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "experiments/fipo-a/runs/20261122-010000/metrics.jsonl:3: not UTF-8 text (byte 0xe9" in result.stderr
    assert not (project / "experiments" / "fipo-a" / "report").exists()
    # Named with its experiment, the run is left out, saying why.
    result = run_fipo(project, "report", "fipo-a")
    assert result.returncode == 0 and "left out run fipo-a/20261122-010000: " in result.stdout
    assert "metrics.jsonl:3: not UTF-8 text" in result.stdout


def test_an_unwritable_out_directory_is_a_usage_error_and_nothing_is_written(project):
    (project / "a-file").write_text("")
    for out in ("/sys/fipo-report", str(project / "a-file" / "report")):  # /sys refuses even root
        result = run_fipo(project, "report", "fipo-a", "--out", out)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert f"--out {out}: cannot write there" in result.stderr and "nothing was written" in result.stderr
    assert not Path("/sys/fipo-report").exists() and (project / "a-file").read_text() == ""
    assert not (project / "experiments" / "fipo-a" / "report").exists()


def test_nan_infinity_and_a_huge_value_are_named_once_and_kept_off_the_axes(project, monkeypatch):
    monkeypatch.chdir(project)
    run_dir = project / "experiments" / "fipo-a" / "runs" / "20261122-010000"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    by_step = {record["step"]: record["data"] for record in records}
    by_step[5]["actor/grad_norm"] = math.nan
    by_step[6]["actor/grad_norm"] = math.inf
    by_step[7]["actor/grad_norm"] = 1e308
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))  # NaN, Infinity

    result = run_fipo(project, "report", "fipo-a", "--json")
    assert result.returncode == 0 and "Warning" not in result.stderr and "overflow" not in result.stderr, result.stderr
    notes = json.loads(result.stdout)["notes"]
    assert notes.count("fipo-a/20261122-010000: NaN or infinite values left out: actor/grad_norm (steps 5, 6)") == 1
    outliers = [note for note in notes if "outlier" in note]
    expected = "stability.png, gradient norm: fipo-a/20261122-010000: outlier left out of the chart (7: 1e+308)"
    assert outliers == [expected]
    report = runner.make_report(["fipo-a"], out=project / "again", steps=StepRange())
    grad_norm = next(chart for chart in report.figures.charts if chart.name == "stability").panels[2]
    assert grad_norm.name == "grad_norm"
    assert max(y for line in grad_norm.lines for y in line.ys) <= 1.0  # uniform(0, 1) draws only
    assert 7 not in grad_norm.lines[0].xs and 8 in grad_norm.lines[0].xs


def test_only_values_a_million_times_the_typical_one_are_outliers():
    assert figures.outlier_limit([1.0, 2.0, 3.0, 1e308]) == 2.5e6  # the median magnitude, 2.5, times 1e6
    assert figures.outlier_limit([0.0] * 28 + [0.01, 1e308]) == 1e4  # mostly 0: the smallest nonzero, 0.01
    assert figures.outlier_limit([0.0, 0.0, 0.0]) is None
    assert figures.outlier_limit([-0.02, 0.01, 0.03]) == 2e4


def test_paper_reference_lines_only_for_32b_runs_or_on_request_and_the_axis_names_n(project, monkeypatch):
    monkeypatch.chdir(project)
    def reference_lines(report):
        chart = next(chart for chart in report.figures.charts if chart.name == "eval_aime24")
        assert chart.panels[0].ylabel == "avg@32 (%)" and chart.panels[1].ylabel == "cons@32 (%)"
        return [line.label for line in chart.panels[0].lines if line.style == "reference"]

    assert reference_lines(runner.make_report(["fipo-a"], out=project / "r1", steps=StepRange())) == []
    drawn = reference_lines(runner.make_report(["fipo-a"], out=project / "r2", steps=StepRange(), paper_lines=True))
    assert drawn == ["DAPO (50)", "DeepSeek-R1-Zero-32B (47)", "o1-mini (56)"]
    config_file = project / "experiments" / "fipo-a" / "runs" / "20261122-010000" / "config.yaml"
    config_file.write_text(config_file.read_text().replace("Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-32B"))
    assert reference_lines(runner.make_report(["fipo-a"], out=project / "r3", steps=StepRange())) == drawn
    assert reference_lines(runner.make_report(["fipo-a"], out=project / "r4", steps=StepRange(),
                                              paper_lines=False)) == []


def test_without_matplotlib_report_says_how_to_install_it_and_writes_nothing(project):
    hide = ("import sys; sys.modules['matplotlib'] = None; sys.argv = ['fipo', 'report', 'fipo-a']; "
            "from fipo_cli.cli.app import main; main()")
    result = subprocess.run([sys.executable, "-c", hide], cwd=project, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "matplotlib, which is not installed" in result.stderr and "pip install 'fipo[report]'" in result.stderr
    assert not (project / "experiments" / "fipo-a" / "report").exists()


def test_a_line_being_written_is_left_out_and_experiments_skip_runs_without_metrics(project):
    run_dir = project / "experiments" / "fipo-a" / "runs" / "20261122-010000"
    with (run_dir / "metrics.jsonl").open("a") as metrics:
        metrics.write('{"step": 31, "data": {"response_length/mean"')  # the trainer is writing this line
    assert max(read_metrics(run_dir / "metrics.jsonl")["response_length/mean"]) == 30
    (project / "experiments" / "fipo-a" / "runs" / "20261122-090000").mkdir()  # started, nothing logged yet

    report = json.loads(run_fipo(project, "report", "fipo-a", "--json").stdout)
    assert [run["run"] for run in report["runs"]] == ["fipo-a/20261122-010000", "fipo-a/20261122-020000"]
    assert report["skipped"][0].startswith("left out run fipo-a/20261122-090000: ")
    assert "no metrics file" in report["skipped"][0]


def test_wandb_gets_the_same_charts_as_native_line_series(project, offline_wandb, monkeypatch):
    import wandb

    from fipo_cli.report.wandb_charts import chart_keys

    import wandb_records

    monkeypatch.chdir(project)
    report = runner.make_report(["fipo-a", "dapo-b"], out=project / "out", steps=StepRange(), to_wandb=True,
                                paper_lines=True)
    wandb.teardown()

    (path,) = wandb_records.run_files(project / "out" / "wandb")
    record = wandb_records.run_record(path)
    assert (record.run_id, record.job_type, record.display_name) == (report.wandb_run, "report", "report-fipo-a+dapo-b")
    assert wandb_records.config(path)["runs"] == [run.ref for run in report.runs]
    assert report.wandb_sync == f"wandb sync {project / 'out' / 'wandb'}/offline-run-*"
    (row,) = wandb_records.history(path)
    keys = chart_keys(report.figures.charts)
    assert len(keys) == 7 + 1 + 2 + 4 + 2 + 4 + 1 + 1 and "report/length_percentiles/p25" in keys
    assert {f"{key}_table" for key in keys} <= set(row)

    # The p25 panel's table holds every run's series: (step, series, value) rows.
    table = wandb_records.table(path, row["report/length_percentiles/p25_table"])
    assert table["columns"] == ["step", "lineKey", "lineVal"]
    panel = report.figures.charts[0].panels[1]
    expected = [[x, line.label, y] for line in panel.lines for x, y in zip(line.xs, line.ys, strict=True)]
    assert table["data"] == expected and len({row[1] for row in table["data"]}) == 3
    reference = wandb_records.table(path, row["report/eval_aime24/avg_table"])
    assert {"DAPO (50)", "o1-mini (56)", "DeepSeek-R1-Zero-32B (47)"} <= {line[1] for line in reference["data"]}
    visualized = [r.config for r in wandb_records.records(path) if r.WhichOneof("record_type") == "config"]
    charted = {tuple(item.nested_key)[2] for update in visualized for item in update.update
               if tuple(item.nested_key)[:2] == ("_wandb", "visualize")}
    assert charted == set(keys)


def test_from_wandb_without_credentials_says_so(project):
    # Without status.json the run cannot name its W&B run.
    result = run_fipo(project, "report", "fipo-a/20261122-010000", "--from-wandb")
    assert result.returncode == 1 and "status.json does not exist" in result.stderr
    run_dir = project / "experiments" / "fipo-a" / "runs" / "20261122-010000"
    (run_dir / "status.json").write_text(json.dumps({"state": "succeeded", "launcher": "local",
                                                     "created_at": "2026-11-22T01:00:00+00:00",
                                                     "wandb_run_id": "fipo-a-20261122-010000"}))
    result = run_fipo(project, "report", "fipo-a/20261122-010000", "--from-wandb")
    assert result.returncode == 1
    assert "W&B: cannot read the history of fipo/fipo-a-20261122-010000" in result.stderr
    assert "wandb login" in result.stderr


def visible_ticks(axis) -> list[float]:
    low, high = sorted(axis.get_view_interval())
    return [tick for tick in axis.get_majorticklocs() if low - 1e-9 <= tick <= high + 1e-9]


def test_step_axes_have_whole_number_ticks_and_accuracy_axes_at_least_ten_points(project):
    runs = [data.load_run(path) for path, _ in data.resolve(["fipo-a", "dapo-b"], project / "experiments")]
    built = figures.build(runs, StepRange())
    colours = figures.colours(runs)
    checked = 0
    for chart in built.charts:
        drawn = charts.figure(chart, colours)
        for panel, ax in zip(chart.panels, drawn.axes, strict=False):
            if panel.xlabel == "training step":
                ticks = visible_ticks(ax.xaxis)
                assert ticks and all(tick == int(tick) for tick in ticks), (chart.name, panel.name, ticks)
                checked += 1
            if panel.ylabel.startswith(("avg@", "cons@", "accuracy")):
                low, high = ax.get_ylim()
                values = [y for line in panel.lines for y in line.ys]
                assert 0 <= low <= min(values) and max(values) <= high <= 100 and high - low >= 10
    # every panel of length_percentiles, eval, stability, advantage_reward, future_kl, validation
    assert checked == 7 + 2 + 4 + 2 + 4 + 1


def test_one_checkpoint_at_zero_is_a_labelled_marker_on_a_readable_axis(tmp_path):
    """What the README's first command gives: one checkpoint (step 19), evaluated at 0 %, one length."""
    run_dir = make_run(tmp_path, "tiny", "r1", evals={19: (0.0, 0.0, 7.0)})
    run = data.load_run(run_dir)
    built = figures.build([run], StepRange())
    by_name = {chart.name: chart for chart in built.charts}
    eval_chart = charts.figure(by_name["eval_aime24"], figures.colours([run]))
    avg = eval_chart.axes[0]
    assert avg.get_ylim() == (0.0, 10.0)  # not −0.04 to 0.04
    assert visible_ticks(avg.xaxis) == [18.0, 19.0, 20.0]  # not 19.00, 19.25, …
    (line,) = avg.lines
    assert line.get_marker() == "o" and line.get_linestyle() == "None"
    assert [text.get_text() for text in avg.texts] == ["0"]  # the point's value beside it
    # Accuracy against length: the point is drawn, and the panel says why there is no line through it.
    (panel,) = by_name["accuracy_vs_length_aime24"].panels
    fit_chart = charts.figure(by_name["accuracy_vs_length_aime24"], figures.colours([run]))
    assert "no fit for tiny/r1: fewer than two distinct lengths" in [text.get_text() for text in fit_chart.axes[0].texts]
    assert fit_chart.axes[0].get_ylim() == (0.0, 10.0) and panel.lines[0].xs == (7.0,)


@pytest.mark.parametrize(("values", "expected"), [
    ([0.0], (0.0, 10.0)), ([100.0], (90.0, 100.0)), ([50.0, 56.0], (48.0, 58.0)),
    ([47.0, 50.0, 56.0, 58.5], (45.85, 59.65)), ([10.0, 90.0], (2.0, 98.0)),
])
def test_the_accuracy_range_is_ten_points_at_least_with_a_margin_inside_0_to_100(values, expected):
    assert figures.accuracy_range(values) == pytest.approx(expected)


def test_the_charts_of_a_real_tiny_run_have_whole_steps(tmp_path):
    import tiny_run

    run = data.load_run(tiny_run.run_dir(tmp_path))
    built = {chart.name: chart for chart in figures.build([run], StepRange()).charts}
    assert sorted(built) == ["accuracy_vs_length_validation", "advantage_reward", "future_kl", "length_percentiles",
                             "stability", "validation"]
    for chart in built.values():
        drawn = charts.figure(chart, figures.colours([run]))
        for panel, ax in zip(chart.panels, drawn.axes, strict=False):
            if not panel.steps:  # accuracy against length: tokens on the x axis
                continue
            ticks = visible_ticks(ax.xaxis)
            assert ticks and all(tick == int(tick) for tick in ticks), (chart.name, panel.name, ticks)
    dual_clip = charts.figure(built["stability"], figures.colours([run])).axes[0]
    # The tiny run never dual-clips: its fraction is 0 at every step, on a 0–1 axis that says so.
    assert dual_clip.get_ylim() == (0.0, 1.0) and [text.get_text() for text in dual_clip.texts] == ["0 at every step"]


def test_a_comparison_names_the_run_without_evaluations_and_token_counts_have_whole_ticks(tmp_path):
    import tiny_run

    evaluated = data.load_run(make_run(tmp_path, "tiny", "r1", evals={10: (0.0, 0.0, 7.4), 20: (0.0, 0.0, 2.5)}))
    trained = data.load_run(tiny_run.run_dir(tmp_path))  # the real run: no evaluation
    runs = [evaluated, trained]
    built = figures.build(runs, StepRange())
    assert "eval_aime24.png: tiny/20261201-222345 has no aime24 evaluation in --steps :" in built.notes
    (eval_chart,) = [chart for chart in built.charts if chart.name == "eval_aime24"]
    drawn = charts.figure(eval_chart, figures.colours(runs))
    for ax in drawn.axes:
        assert "not evaluated on aime24: tiny/20261201-222345" in [text.get_text() for text in ax.texts]
        (line,) = ax.lines
        assert line.get_zorder() > ax.spines["bottom"].get_zorder()  # a line at 0 % is drawn over the frame
    lengths = charts.figure(next(chart for chart in built.charts if chart.name == "length_percentiles"),
                            figures.colours([trained]))
    minimum = lengths.axes[0]  # the real run's shortest responses: 1 or 2 tokens
    assert visible_ticks(minimum.yaxis) and all(tick == int(tick) for tick in visible_ticks(minimum.yaxis))


def test_fipo_and_dapo_side_by_side_future_kl_for_fipo_only_validation_per_source(project, monkeypatch):
    monkeypatch.chdir(project)
    second = project / "experiments/dapo-b/runs/20261122-030000/metrics.jsonl"
    records = [json.loads(line) for line in second.read_text().splitlines()]
    for record in records:  # the DAPO run also validated a second data source
        if VALIDATION in record["data"]:
            record["data"]["val-core/digit_sums_k5/acc/mean@4"] = 0.5
            record["data"]["val-aux/digit_sums_k5/acc/std@4"] = 0.1  # not the headline: not drawn
    second.write_text("".join(json.dumps(record) + "\n" for record in records))

    report = runner.make_report(["fipo-a", "dapo-b"], out=project / "out", steps=StepRange())
    charts = {chart.name: chart for chart in report.figures.charts}
    fipo_runs = ["fipo-a/20261122-010000", "fipo-a/20261122-020000"]
    future_kl = charts["future_kl"]
    assert [panel.name for panel in future_kl.panels] == ["future_kl", "weight_mean", "weight_max", "clipped_upper"]
    assert all([line.run for line in panel.lines] == fipo_runs for panel in future_kl.panels)
    weights = read_metrics(project / "experiments/fipo-a/runs/20261122-010000/metrics.jsonl")
    assert future_kl.panels[2].lines[0].ys == tuple(weights["actor/fipo_influence_weight_max"][step] for step in STEPS)

    validation = charts["validation"]
    assert [panel.title for panel in validation.panels] == ["aime24: mean@8", "digit_sums_k5: mean@4"]
    aime, digits = validation.panels
    assert [line.run for line in aime.lines] == [*fipo_runs, "dapo-b/20261122-030000"]
    assert aime.lines[0].xs == VALIDATION_STEPS  # the validation before step 1 included
    assert aime.lines[0].ys == tuple(100 * weights[VALIDATION][step] for step in VALIDATION_STEPS)
    assert [(line.run, line.ys) for line in digits.lines] == [("dapo-b/20261122-030000", (50.0,) * 7)]
    assert report.figures.notes.count(f"validation.png, digit_sums_k5: {fipo_runs[0]} has no validation metric "
                                      "for it") == 1
    against_length = charts["accuracy_vs_length_validation"].panels[0]
    points = [line for line in against_length.lines if line.style == "points"]
    assert len(points) == 3 and all(len(line.xs) == len(VALIDATION_STEPS) - 1 for line in points)  # no step 0
    # Two panels, one legend: each run named once, its slope per panel in the page's table of fits.
    assert [line.run for line in legend_entries(charts["accuracy_vs_length_validation"])] == [*fipo_runs,
                                                                                            "dapo-b/20261122-030000"]
    assert not any("slope" in line.label for line in points)
    assert {(fit.run, fit.benchmark) for fit in report.figures.fits} >= {(run, "validation aime24") for run in fipo_runs}

    only_dapo = runner.make_report(["dapo-b"], out=project / "dapo", steps=StepRange())
    assert "future_kl" not in [chart.name for chart in only_dapo.figures.charts]
    assert "skipped future_kl.png: no FIPO run among these" in only_dapo.figures.skipped
