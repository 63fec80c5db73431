"""`fipo status` over 1,000 runs when no SLURM query is needed (target: at most 1 s, issue 4).

Builds a temporary project, experiments/bench/runs/<1,000 runs>, each with a status.json of a
finished SLURM run (succeeded, failed or cancelled, so nothing asks squeue/sacct/scontrol) and
a metrics.jsonl of 200 verl-like steps (about 60 keys each, ~480 KiB, so the last step comes
from the file's tail). Then times `python -m fipo_cli status` and `status --json` end to end
as fresh processes (cold import included; the file cache is warm after one untimed run),
median of 5. The table is rendered for a 160-column terminal, and for 80 columns (where the
W&B links fold onto three lines each). Stand-in squeue/sacct/scontrol on PATH record any call, and the script fails if
one is made.

Run by hand:  python benchmarks/bench_status.py [--runs N] [--steps N] [--repeats N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from fipo_cli.runs.status import RunStatus, write_status

TARGET_S = 1.0
STATES = ("succeeded", "failed", "cancelled")

# verl 0.9.1's metric names (FileLogger: {"step": N, "data": {...}}), about 60 per step.
METRIC_KEYS = [
    *(f"actor/{name}" for name in (
        "entropy", "pg_loss", "pg_clipfrac", "pg_clipfrac_lower", "ppo_kl", "grad_norm", "lr", "kl_loss",
        "fipo_influence_mean", "fipo_influence_max", "fipo_future_kl_mean", "fipo_dual_clip_frac",
    )),
    *(f"critic/{name}/{stat}" for name in ("score", "rewards", "advantages", "returns") for stat in ("mean", "max", "min")),
    "critic/advantages/length_weighted_mean",
    *(f"response_length/{stat}" for stat in ("mean", "max", "min", "clip_ratio", "p25", "median", "p75", "p90")),
    *(f"prompt_length/{stat}" for stat in ("mean", "max", "min", "clip_ratio")),
    *(f"timing_s/{name}" for name in ("gen", "reward", "old_log_prob", "adv", "update_actor", "step", "testing",
                                      "save_checkpoint")),
    *(f"timing_per_token_ms/{name}" for name in ("gen", "adv", "update_actor")),
    *(f"perf/{name}" for name in ("total_num_tokens", "time_per_step", "throughput", "max_memory_allocated_gb",
                                  "max_memory_reserved_gb", "cpu_memory_used_gb", "mfu/actor")),
    "train/num_gen_batches", "training/global_step", "training/epoch",
    "val-core/math_dapo/acc/mean@32", "val-aux/math_dapo/score/mean@32", "val-aux/num_turns/min",
]


def metrics_text(steps: int, rng: random.Random) -> str:
    lines = []
    for step in range(1, steps + 1):
        data = {key: rng.uniform(-1, 1) * 10 ** rng.randint(-4, 4) for key in METRIC_KEYS}
        data["training/global_step"] = step
        lines.append(json.dumps({"step": step, "data": data}))
    return "\n".join(lines) + "\n"


def build_project(root: Path, runs: int, steps: int) -> int:
    """The project under ``root``; returns the metrics file's size in bytes."""
    rng = random.Random(0)
    runs_dir = root / "experiments" / "bench" / "runs"
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    size = 0
    for index in range(runs):
        created = start + timedelta(minutes=7 * index)
        run_dir = runs_dir / created.strftime("%Y%m%d-%H%M%S")
        run_dir.mkdir(parents=True)
        state = STATES[index % len(STATES)]
        array = index % 4 != 0  # three runs in four come from sweeps (array tasks)
        job_id = f"{100000 + index // 8}_{index % 8}" if array else str(200000 + index)
        write_status(run_dir, RunStatus(
            state=state, launcher="slurm",
            exit_code={"succeeded": 0, "failed": 1, "cancelled": 143}[state],
            created_at=created.isoformat(timespec="seconds"),
            started_at=(created + timedelta(minutes=2)).isoformat(timespec="seconds"),
            finished_at=(created + timedelta(hours=rng.uniform(0.5, 40))).isoformat(timespec="seconds"),
            job_id=job_id, array_index=index % 8 if array else None, sweep=f"sweep-{index // 8:03d}" if array else None,
            scheduler_log=str(run_dir / f"slurm-{job_id}.out"), restarts=1 if index % 3 == 0 else 0,
            wandb_run_id=f"run{index:05d}", wandb_url=f"https://wandb.ai/team/fipo/runs/run{index:05d}",
        ))
        text = metrics_text(steps, rng)
        (run_dir / "metrics.jsonl").write_text(text)
        size = len(text)
    return size


def stand_in_tools(directory: Path, calls: Path) -> None:
    """squeue, sacct and scontrol that only record that they were called."""
    directory.mkdir()
    for tool in ("squeue", "sacct", "scontrol"):
        path = directory / tool
        path.write_text(f"#!/bin/sh\necho {tool} \"$@\" >> '{calls}'\n")
        path.chmod(0o755)


def time_command(argv: list[str], cwd: Path, env: dict[str, str], repeats: int) -> tuple[list[float], str]:
    subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=True)  # warm the file cache
    samples, out = [], ""
    for _ in range(repeats):
        start = time.perf_counter()
        result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=True)
        samples.append(time.perf_counter() - start)
        out = result.stdout
    return samples, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="Build the project here and keep it (for profiling).")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fipo-bench-status-") as scratch:
        root = args.keep or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        size = build_project(root, args.runs, args.steps)
        print(f"built {args.runs} runs ({args.steps} steps, {len(METRIC_KEYS)} keys per step, "
              f"metrics.jsonl {size / 1024:.0f} KiB each) in {time.perf_counter() - started:.1f} s")
        tools, calls = Path(scratch) / "slurm-stand-ins", Path(scratch) / "slurm-calls.txt"
        stand_in_tools(tools, calls)
        env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}",
               "FIPO_CLUSTER_CONFIG": str(Path(scratch) / "no-profile.yaml")}
        fipo = [sys.executable, "-m", "fipo_cli", "status"]

        results = []
        for label, extra, columns in (("fipo status", [], "160"), ("fipo status (80 columns)", [], "80"),
                                      ("fipo status --json", ["--json"], "160"),
                                      ("fipo status --no-refresh", ["--no-refresh"], "160")):
            samples, out = time_command([*fipo, *extra], root, {**env, "COLUMNS": columns}, args.repeats)
            if extra == ["--json"]:
                rows = json.loads(out)
                assert len(rows) == args.runs, f"{len(rows)} rows"
                assert all(row["last_step"] == args.steps and row["state"] in STATES for row in rows), "wrong rows"
            results.append((label, samples))
        baseline, _ = time_command([sys.executable, "-c", "pass"], root, env, args.repeats)
        imports, _ = time_command([sys.executable, "-c", "import fipo_cli.cli"], root, env, args.repeats)
        if calls.exists():
            sys.exit(f"a SLURM query was made: {calls.read_text()}")
    print(f"\n{'command':<32} {'median':>8} {'min':>8} {'max':>8}   (target {TARGET_S:.1f} s, {args.repeats} runs)")
    for label, samples in [*results, ("python -c pass", baseline), ("python -c 'import fipo_cli.cli'", imports)]:
        median = statistics.median(samples)
        verdict = "" if not label.startswith("fipo") else ("  ok" if median <= TARGET_S else "  OVER")
        print(f"{label:<32} {median * 1e3:>6.0f}ms {min(samples) * 1e3:>6.0f}ms {max(samples) * 1e3:>6.0f}ms{verdict}")
    print("no SLURM query was made")


if __name__ == "__main__":
    main()
