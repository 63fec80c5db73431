"""The length lab, measured: FIPO against DAPO on `--model tiny-reasoner`, several seeds each, on CPU.

Run by hand in the CPU training environment (scripts/install-cpu.sh), one run at a time:

    python benchmarks/bench_length_lab.py [--seeds 3] [--project DIR] [--json FILE]
    python benchmarks/bench_length_lab.py --table FILE      # the tables again, from a --json file

For each seed it trains FIPO, then DAPO, with `fipo train` (the recipes as shipped, `trainer.seed`
set, `trainer.keep_samples=true`), so both algorithms of a seed see the same prompts in the same
order and differ only in the loss. The warm-started model is the same for every run (the
`builtin:tiny-reasoner` asset). From each run it reads:

* verl's validation responses (`samples/validation/STEP.jsonl`, 16 numbers per bit count, 4
  samples each, temperature 1, top-p 1) before the first step and after the last: response length
  in tokens (mean, median, p90) and accuracy, scored again here with the task's own verifier;
* the correlation between a response's length and its correctness (Pearson, i.e. point-biserial)
  among the final validation's responses, pooled and within problems (each problem's mean length
  and accuracy subtracted first: does a longer answer to the same problem come out right more often?);
* the same within-problem correlation among the training responses of the last five steps;
* the wall time of the run.

It prints one Markdown table per algorithm (mean ± standard deviation over seeds) and the FIPO − DAPO
differences (paired by seed: mean ± standard deviation of the per-seed differences), and writes every
figure to --json after every run (a benchmark cut short keeps the runs it finished; run it again
with the same --json and --project and it trains only the runs missing). The project directory
keeps the runs: `fipo report lab-fipo lab-dapo` (run there) draws them side by side.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ALGORITHMS = ("fipo", "dapo")
LAST_TRAINING_STEPS = 5
#: (key, label, unit) of every figure the tables show, in order.
FIGURES = (
    ("length_mean_start", "mean length, start", "tokens"),
    ("length_mean_end", "mean length, end", "tokens"),
    ("length_median_start", "median length, start", "tokens"),
    ("length_median_end", "median length, end", "tokens"),
    ("length_p90_start", "p90 length, start", "tokens"),
    ("length_p90_end", "p90 length, end", "tokens"),
    ("accuracy_start", "accuracy, start", "%"),
    ("accuracy_end", "accuracy, end", "%"),
    ("correlation_pooled_end", "length–correct correlation, final validation, pooled", "r"),
    ("correlation_within_end", "length–correct correlation, final validation, within problems", "r"),
    ("correlation_within_training", f"length–correct correlation, last {LAST_TRAINING_STEPS} training steps, "
                                    "within problems", "r"),
    ("minutes", "wall time of the run", "min"),
    ("load_before", "machine's load average when the run started", "1 min"),
)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile with linear interpolation between order statistics (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def pearson(xs: list[float], ys: list[float]) -> float:
    """Pearson's r; NaN when either side does not vary."""
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mean_x) ** 2 for x in xs)
    syy = sum((y - mean_y) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else math.nan


def within_problems(rows: list[tuple[str, float, float]]) -> float:
    """Pearson's r of (length, correct) after subtracting each problem's means (rows: problem, length, correct)."""
    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for problem, length, correct in rows:
        groups[problem].append((length, correct))
    xs, ys = [], []
    for members in groups.values():
        mean_length = statistics.fmean(length for length, _ in members)
        mean_correct = statistics.fmean(correct for _, correct in members)
        xs += [length - mean_length for length, _ in members]
        ys += [correct - mean_correct for _, correct in members]
    return pearson(xs, ys)


def scored_samples(path: Path, tokenizer: Any) -> list[tuple[str, float, float]]:
    """(prompt, length in tokens, 1.0 if right) of every response of one of verl's sample dumps."""
    from fipo_cli.assets import binary_numbers as task

    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        sample = json.loads(line)
        length = len(tokenizer(sample["output"], add_special_tokens=False)["input_ids"])
        rows.append((sample["input"], float(length), task.compute_score("", sample["output"], sample["gts"])))
    return rows


def run_figures(run: Path, tokenizer: Any, minutes: float) -> dict[str, float]:
    validation = sorted((run / "samples" / "validation").glob("*.jsonl"), key=lambda path: int(path.stem))
    training = sorted((run / "samples" / "train").glob("*.jsonl"), key=lambda path: int(path.stem))
    if len(validation) < 2 or not training:
        raise SystemExit(f"{run}: expected validation samples before and after training and training samples")
    figures: dict[str, float] = {"minutes": minutes}
    for moment, path in (("start", validation[0]), ("end", validation[-1])):
        rows = scored_samples(path, tokenizer)
        lengths = [length for _, length, _ in rows]
        figures[f"length_mean_{moment}"] = statistics.fmean(lengths)
        figures[f"length_median_{moment}"] = percentile(lengths, 50)
        figures[f"length_p90_{moment}"] = percentile(lengths, 90)
        figures[f"accuracy_{moment}"] = 100.0 * statistics.fmean(correct for _, _, correct in rows)
        if moment == "end":
            figures["correlation_pooled_end"] = pearson(lengths, [correct for _, _, correct in rows])
            figures["correlation_within_end"] = within_problems(rows)
    last = [row for path in training[-LAST_TRAINING_STEPS:] for row in scored_samples(path, tokenizer)]
    figures["correlation_within_training"] = within_problems(last)
    return figures


def train(project: Path, experiment: str, seed: int, env: dict[str, str]) -> tuple[Path, float]:
    runs = project / "experiments" / experiment / "runs"
    before = set(runs.iterdir()) if runs.is_dir() else set()
    started = time.monotonic()
    log = project / f"{experiment}-seed{seed}.log"
    with log.open("w") as output:
        result = subprocess.run(
            [sys.executable, "-m", "fipo_cli", "train", experiment, f"trainer.seed={seed}", "trainer.keep_samples=true"],
            cwd=project, env=env, stdout=output, stderr=subprocess.STDOUT, check=False,
        )
    if result.returncode != 0:
        raise SystemExit(f"fipo train {experiment} (seed {seed}) failed with exit code {result.returncode}: see {log}")
    (run,) = set(runs.iterdir()) - before
    return run, (time.monotonic() - started) / 60.0


def spread(values: list[float]) -> str:
    finite = [value for value in values if not math.isnan(value)]
    if not finite:
        return "–"
    mean = statistics.fmean(finite)
    if len(finite) == 1:  # one seed: no spread to show
        return f"{mean:.3g}"
    return f"{mean:.3g} ± {statistics.stdev(finite):.2g}"


def tables(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """One Markdown table: per figure, each algorithm's mean ± sd over its seeds and the FIPO − DAPO
    difference over the seeds both algorithms ran (paired by seed)."""
    paired = sorted(results["fipo"].keys() & results["dapo"].keys(), key=int)
    counts = f"FIPO {len(results['fipo'])} seeds, DAPO {len(results['dapo'])}, paired {len(paired)}"
    lines = [f"| figure ({counts}; mean ± sd over seeds) | FIPO | DAPO | FIPO − DAPO (paired by seed) |",
             "|---|---|---|---|"]
    for key, label, unit in FIGURES:
        fipo = [figures[key] for figures in results["fipo"].values()]
        dapo = [figures[key] for figures in results["dapo"].values()]
        difference = [results["fipo"][seed][key] - results["dapo"][seed][key] for seed in paired]
        lines.append(f"| {label} ({unit}) | {spread(fipo)} | {spread(dapo)} | {spread(difference)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--project", type=Path, help="where the runs go (default: a new temporary directory, kept)")
    parser.add_argument("--json", type=Path, help="write every figure of every run here (and resume from it)")
    parser.add_argument("--table", type=Path, metavar="FILE", help="print the tables of a --json file and stop")
    args = parser.parse_args()
    if args.table:
        print(tables(json.loads(args.table.read_text(encoding="utf-8"))["results"]))
        return
    project = args.project or Path(tempfile.mkdtemp(prefix="fipo-length-lab-"))
    project.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("WANDB_")}
    env.update(WANDB_MODE="offline", RAY_USAGE_STATS_ENABLED="0")
    for algo in ALGORITHMS:
        if not (project / "experiments" / f"lab-{algo}" / "fipo.yaml").is_file():
            subprocess.run([sys.executable, "-m", "fipo_cli", "init", f"lab-{algo}", "--model", "tiny-reasoner",
                            "--algo", algo], cwd=project, env=env, check=True, capture_output=True)
    from transformers import AutoTokenizer

    from fipo_cli.assets import builtin
    from fipo_cli.core.files import atomic_write_json
    from fipo_cli.experiment import config

    experiment = config.load(project / "experiments" / "lab-fipo" / "fipo.yaml")
    model = experiment.model.path
    started = time.monotonic()
    if builtin.ensure(experiment.asset_paths(), env=env):  # built here, so that no run's time includes it
        print(f"built the lab's assets in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    tokenizer = None
    saved = json.loads(args.json.read_text(encoding="utf-8")) if args.json and args.json.is_file() else {}
    results: dict[str, dict[str, dict[str, float]]] = saved.get("results", {algo: {} for algo in ALGORITHMS})
    runs: dict[str, dict[str, str]] = saved.get("runs", {algo: {} for algo in ALGORITHMS})
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for algo in ALGORITHMS:
            if str(seed) in results[algo]:
                continue
            load = os.getloadavg()[0]
            run, minutes = train(project, f"lab-{algo}", seed, env)
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(builtin.resolve(model, env))
            figures = run_figures(run, tokenizer, minutes) | {"load_before": load, "load_after": os.getloadavg()[0]}
            results[algo][str(seed)], runs[algo][str(seed)] = figures, str(run)
            print(f"{algo} seed {seed}: {minutes:.1f} min (load {load:.1f} → {figures['load_after']:.1f}), accuracy "
                  f"{figures['accuracy_start']:.1f} → {figures['accuracy_end']:.1f} %, mean length "
                  f"{figures['length_mean_start']:.1f} → {figures['length_mean_end']:.1f}", file=sys.stderr, flush=True)
            if args.json:  # whole or not at all: a benchmark cut short resumes from it
                atomic_write_json(args.json, {"results": results, "runs": runs})
    print(f"{args.seeds} seeds per algorithm, {os.cpu_count()} CPUs, runs in {project}")
    print(tables(results))


if __name__ == "__main__":
    main()
