"""Real training on CPU: the tiny recipe through `fipo train`, FIPO against DAPO, in one invocation.

Run by hand in the CPU training environment (scripts/install-cpu.sh):

    python benchmarks/bench_train_cpu.py [--steps 12] [--warmup 2] [--repeats 1]

For each algorithm (`--model tiny`, `--algo fipo|dapo`) it reports, from verl's own timings in the
run's metrics.jsonl: seconds per step after the warm-up steps (median), the actor update's share
(the only phase where the two losses differ), the start-up time (from launching `fipo train` to the
start of step 1: Ray, TransferQueue, FSDP, vLLM), and the peak memory of the whole process tree
(fipo, its Ray head and every Ray worker and vLLM process under it), as RSS and PSS sampled every
0.5 s from /proc. The runs go one after another, alternating FIPO and DAPO with --repeats > 1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def tree(root: int) -> list[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB; (0, 0) once it is gone."""
    try:
        rollup = (Path("/proc") / str(pid) / "smaps_rollup").read_text()
    except OSError:
        return 0, 0
    values = {line.split(":")[0]: int(line.split()[1]) for line in rollup.splitlines()[1:] if line.endswith("kB")}
    return values.get("Rss", 0), values.get("Pss", 0)


class PeakMemory(threading.Thread):
    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root, self.rss, self.pss, self.processes = root, 0, 0, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            pids = tree(self.root)
            usage = [memory_kib(pid) for pid in pids]
            self.rss = max(self.rss, sum(rss for rss, _ in usage))
            self.pss = max(self.pss, sum(pss for _, pss in usage))
            self.processes = max(self.processes, len(pids))


def train(project: Path, experiment: str, steps: int, env: dict[str, str]) -> dict[str, Any]:
    runs = project / "experiments" / experiment / "runs"
    before = set(runs.iterdir()) if runs.is_dir() else set()
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "fipo_cli", "train", experiment, f"trainer.total_training_steps={steps}",
         f"trainer.save_freq={steps}", f"trainer.test_freq={steps}"],
        cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    peak = PeakMemory(process.pid)
    peak.start()
    first_step_logged = None
    while process.poll() is None:
        new = [run for run in (set(runs.iterdir()) if runs.is_dir() else set()) - before]
        metrics = new[0] / "metrics.jsonl" if new else None
        if first_step_logged is None and metrics is not None and metrics.is_file() and metrics.stat().st_size:
            first_step_logged = time.monotonic() - started
        time.sleep(0.2)
    peak.done.set()
    peak.join()
    if process.returncode != 0:
        raise SystemExit(f"fipo train {experiment} failed with exit code {process.returncode}")
    (run,) = set(runs.iterdir()) - before
    rows = [json.loads(line)["data"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {
        "rows": rows,
        "startup_s": (first_step_logged or float("nan")) - rows[0]["timing_s/step"],
        "total_s": time.monotonic() - started,
        "rss_gib": peak.rss / 2**20,
        "pss_gib": peak.pss / 2**20,
        "processes": peak.processes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2, help="steps left out of the per-step figures")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fipo-bench-") as work:
        project = Path(work)
        env = {key: value for key, value in os.environ.items() if not key.startswith("WANDB_")}
        env.update(HOME=str(project), FIPO_CACHE_DIR=str(project / "cache"), WANDB_MODE="offline",
                   RAY_USAGE_STATS_ENABLED="0")
        for algo in ("fipo", "dapo"):
            subprocess.run([sys.executable, "-m", "fipo_cli", "init", algo, "--model", "tiny", "--algo", algo],
                           cwd=project, env=env, check=True, capture_output=True)
        results: dict[str, list[dict]] = {"fipo": [], "dapo": []}
        for _ in range(args.repeats):
            for algo in ("fipo", "dapo"):
                results[algo].append(train(project, algo, args.steps, env))
                print(f"{algo}: {results[algo][-1]['total_s']:.0f} s", file=sys.stderr, flush=True)

    def after_warmup(algo: str, key: str) -> float:
        return statistics.median(row[key] for result in results[algo] for row in result["rows"][args.warmup:])

    def worst(algo: str, key: str) -> float:
        return max(result[key] for result in results[algo])

    print(f"{args.steps} steps per run, {args.repeats} run(s) each, steps {args.warmup + 1}-{args.steps} timed, "
          f"{os.cpu_count()} CPUs")
    print("| | FIPO | DAPO | FIPO / DAPO |")
    print("|---|---|---|---|")
    for label, key in (("seconds per step (median)", "timing_s/step"),
                       ("actor update per step (median)", "timing_s/update_actor"),
                       ("generation per step (median)", "timing_s/gen")):
        fipo, dapo = after_warmup("fipo", key), after_warmup("dapo", key)
        print(f"| {label} | {fipo:.2f} s | {dapo:.2f} s | {fipo / dapo:.2f}× |")
    for label, key, unit in (("start-up, launch to step 1", "startup_s", "s"), ("peak RSS, whole tree", "rss_gib", "GiB"),
                             ("peak PSS, whole tree", "pss_gib", "GiB")):
        fipo, dapo = worst("fipo", key), worst("dapo", key)
        print(f"| {label} | {fipo:.1f} {unit} | {dapo:.1f} {unit} | |")
    print(f"| processes, at most | {worst('fipo', 'processes'):.0f} | {worst('dapo', 'processes'):.0f} | |")


if __name__ == "__main__":
    main()
