"""Wall time of the commands that compose verl's config: `fipo train --dry-run`, `fipo doctor`,
`fipo sweep --dry-run`, and where the time of one compose goes.

Each command runs as a user runs it (a fresh `python -m fipo_cli`, in a temporary project made by
`fipo init bench --model qwen2.5-0.5b`); the figure is the median of RUNS runs. The fipo measured
is the one Python imports: `PYTHONPATH=/other/checkout python benchmarks/bench_dry_run.py` measures
another checkout (the README's "before" figures are the commit before the in-process compose).

Run by hand:  python benchmarks/bench_dry_run.py [RUNS]
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
SWEEP_POINTS = ("gamma=0.9,0.95,0.99,0.999",)  # four runs

#: One process: the imports and composes of `fipo train --dry-run`, timed apart (overrides on stdin).
BREAKDOWN = """
import json, statistics, sys, time
overrides = json.load(sys.stdin)
marks = [("start", time.perf_counter())]
import fipo_cli.cli
marks.append(("import fipo_cli.cli (typer, rich)", time.perf_counter()))
import hydra, omegaconf
from hydra import compose, initialize_config_dir
marks.append(("import hydra + omegaconf", time.perf_counter()))
from fipo_cli.verl_adapter import compose as verl_compose
directory = str(verl_compose.config_dir())
with initialize_config_dir(config_dir=directory, job_name="main_ppo", version_base=None):
    marks.append(("Hydra's search path and plugins", time.perf_counter()))
    compose("ppo_trainer", overrides=overrides)
    marks.append((f"first compose ({len(overrides)} overrides)", time.perf_counter()))
    steps = {name: end - start for (_, start), (name, end) in zip(marks, marks[1:])}
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        compose("ppo_trainer", overrides=overrides)
        samples.append(time.perf_counter() - start)
    steps["each further compose (a sweep point; median of 5)"] = statistics.median(samples)
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        compose("ppo_trainer", overrides=[])
        samples.append(time.perf_counter() - start)
    steps["  of which without the overrides (median of 5)"] = statistics.median(samples)
print(json.dumps(steps))
print(json.dumps(sorted(m for m in ("torch", "verl", "vllm", "wandb", "ray") if m in sys.modules)))
"""


def median_wall(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, int]:
    """Median wall seconds and CPU seconds (user + system, a figure the machine's other load
    changes less) of RUNS runs of ``command``, after one to warm the file cache; its exit code."""
    code = subprocess.run(command, cwd=cwd, env=env, capture_output=True, check=False).returncode
    walls, cpus = [], []
    for _ in range(RUNS):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, cwd=cwd, env=env, capture_output=True, check=False)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus), code


def main() -> None:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    fipo = [sys.executable, "-m", "fipo_cli"]
    with tempfile.TemporaryDirectory() as temporary:
        project = Path(temporary)
        env["HOME"] = str(project)
        subprocess.run([*fipo, "init", "bench", "--model", "qwen2.5-0.5b"], cwd=project, env=env, check=True,
                       capture_output=True)
        commands = {
            "python -c pass (interpreter start)": [sys.executable, "-c", "pass"],
            "fipo train bench --dry-run": [*fipo, "train", "bench", "--dry-run"],
            "fipo doctor bench": [*fipo, "doctor", "bench"],
            "fipo sweep bench gamma=<4 values> --dry-run": [*fipo, "sweep", "bench", *SWEEP_POINTS, "--dry-run"],
            "python -m verl.trainer.main_ppo --cfg job": [sys.executable, "-m", "verl.trainer.main_ppo", "--cfg", "job"],
        }
        print(f"median of {RUNS} runs (fipo from {_fipo_location(project, env)}; load average {os.getloadavg()[0]:.1f})")
        print(f"  {'':<48} {'wall':>8} {'CPU':>8}")
        for label, command in commands.items():
            wall, cpu, code = median_wall(command, project, env)
            print(f"  {label:<48} {wall:6.2f} s {cpu:6.2f} s" + (f"  (exit {code})" if code else ""))
        plan = subprocess.run([*fipo, "train", "bench", "--dry-run", "--json"], cwd=project, env=env,
                              capture_output=True, text=True, check=True)
        overrides = json.dumps(json.loads(plan.stdout)["overrides"])
        result = subprocess.run([sys.executable, "-c", BREAKDOWN], input=overrides, cwd=project, env=env,
                                capture_output=True, text=True, check=False)
        if result.returncode:
            print("this checkout has no in-process compose (fipo_cli.verl_adapter.compose)")
            return
        steps, heavy = (json.loads(line) for line in result.stdout.strip().splitlines()[-2:])
        print("where `fipo train --dry-run` spends its time (one process, after the interpreter starts):")
        for step, seconds in steps.items():
            print(f"  {step:<52} {seconds:6.2f} s")
        print(f"  heavy libraries imported: {heavy or 'none'}")


def _fipo_location(project: Path, env: dict[str, str]) -> str:
    probe = "import fipo_cli, os; print(os.path.dirname(os.path.dirname(fipo_cli.__file__)))"
    return subprocess.run([sys.executable, "-c", probe], cwd=project, env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


if __name__ == "__main__":
    main()
