"""The length lab's warm start: how long `builtin:tiny-reasoner` takes to build, and what it learned.

Run by hand in the CPU training environment (scripts/install-cpu.sh), on a quiet machine:

    python benchmarks/bench_tiny_reasoner.py [--repeats 1] [--samples 64] [--keep DIR]

Each repeat builds the model into a fresh directory exactly as `fipo train --model tiny-reasoner`
does on first use (the default settings) and reports its wall and CPU time, with the machine's
load average before and after (the build is only as fast as the cores it gets). Then, from the
last build, it samples `--samples` responses per number of bits at temperature 1 (as the rollout
samples) and prints per number of bits: the share of responses that write the steps, the accuracy
of the stepwise answers, of the direct ones, and of all, and the mean response length in tokens.
`--keep DIR` keeps the last build there (a model directory, as the cache holds it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path


def build(directory: Path) -> tuple[float, float]:
    from fipo_cli.assets.tiny_reasoner import build_tiny_reasoner

    started, cpu = time.monotonic(), time.process_time()
    build_tiny_reasoner(directory)
    return time.monotonic() - started, time.process_time() - cpu


def behaviour(directory: Path, samples: int) -> list[str]:
    from fipo_cli.assets import binary_numbers as task
    from fipo_cli.assets.tiny_reasoner import sample

    lines = ["| bits | writes the steps | steps right | direct right | all right | mean length (tokens) |",
             "|---|---|---|---|---|---|"]
    for k in task.BITS:
        problems = task.problems(samples, seed=f"bench-{k}", bits=[k])
        responses = sample(directory, [problem.prompt for problem in problems], seed=k)
        scored = [(response, task.compute_score("", response, problem.answer))
                  for response, problem in zip(responses, problems, strict=True)]
        stepwise = [score for response, score in scored if not response.startswith(task.ANSWER_MARK)]
        direct = [score for response, score in scored if response.startswith(task.ANSWER_MARK)]

        def share(values: list[float]) -> str:
            return f"{100 * statistics.fmean(values):.0f} % (n={len(values)})" if values else "–"

        lines.append(f"| {k} | {100 * len(stepwise) / len(scored):.0f} % | {share(stepwise)} | {share(direct)} | "
                     f"{100 * statistics.fmean(score for _, score in scored):.0f} % | "
                     f"{statistics.fmean(len(response) for response, _ in scored):.1f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--samples", type=int, default=64, help="responses sampled per number of bits")
    parser.add_argument("--keep", type=Path, help="keep the last build in this (new) directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fipo-bench-reasoner-") as work:
        times = []
        for repeat in range(args.repeats):
            load_before = os.getloadavg()[0]
            wall, cpu = build(Path(work) / f"model-{repeat}")
            times.append(wall)
            print(f"build {repeat + 1}: {wall:.0f} s wall, {cpu:.0f} s CPU, load average {load_before:.1f} before, "
                  f"{os.getloadavg()[0]:.1f} after", file=sys.stderr, flush=True)
        print(f"build of builtin:tiny-reasoner: median {statistics.median(times):.0f} s wall over {args.repeats} "
              f"build(s), {os.cpu_count()} CPUs, trained on 1 torch thread")
        last = Path(work) / f"model-{args.repeats - 1}"
        if args.keep:
            shutil.copytree(last, args.keep)
        print("\n".join(behaviour(last, args.samples)))


if __name__ == "__main__":
    main()
