"""Cold start of `fipo --help`: median wall time of 10 fresh runs of the installed console script.

Run by hand:  python benchmarks/bench_help.py
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time

RUNS = 10


def main() -> None:
    script = shutil.which("fipo", path=os.path.dirname(sys.executable)) or shutil.which("fipo")
    if script is None:
        sys.exit("the fipo console script is not installed: pip install -e .")
    subprocess.run([script, "--help"], capture_output=True, check=True)  # warm the file cache
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run([script, "--help"], capture_output=True, check=True)
        samples.append(time.perf_counter() - start)
    print(f"fipo --help: median {statistics.median(samples) * 1e3:.0f} ms, "
          f"min {min(samples) * 1e3:.0f} ms, max {max(samples) * 1e3:.0f} ms over {RUNS} runs")


if __name__ == "__main__":
    main()
