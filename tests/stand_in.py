"""A stand-in trainer for the local launcher's tests: a real subprocess that prints, writes metrics like
verl's file logger and exits with a code chosen by ``STAND_IN_MODE`` (``exit3`` by default, ``ok``,
``crash``, ``wait`` until SIGINT, or ``stubborn``: deaf to SIGINT and SIGTERM for a minute). In the waiting
modes it writes its pid to ``STAND_IN_READY``. The tests that train with verl's real trainer are marked ``training``.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from fipo_run import run_fipo

STAND_IN = textwrap.dedent(
    """
    import json, os, signal, sys, time
    print("stand-in trainer started with", len(sys.argv) - 1, "overrides", flush=True)
    print("WANDB_RUN_ID=" + os.environ.get("WANDB_RUN_ID", ""), flush=True)
    print("RAY_ADDRESS=" + os.environ.get("RAY_ADDRESS", ""), flush=True)
    if os.environ.get("WANDB_MODE") == "offline":  # where wandb.init keeps an offline run
        run = "offline-run-20261122_013000-" + os.environ["WANDB_RUN_ID"]
        os.makedirs(os.path.join(os.environ["WANDB_DIR"], "wandb", run), exist_ok=True)
    with open(os.environ["VERL_FILE_LOGGER_PATH"], "a") as metrics:
        metrics.write(json.dumps({"step": 1, "data": {"response_length/mean": 100.0}}) + "\\n")
    mode = os.environ.get("STAND_IN_MODE", "exit3")
    if mode == "wait":
        signal.signal(signal.SIGINT, lambda *_: (print("got SIGINT", flush=True), sys.exit(130)))
    if mode == "stubborn":
        for deaf in (signal.SIGINT, signal.SIGTERM):
            signal.signal(deaf, signal.SIG_IGN)
    if mode in ("wait", "stubborn"):
        with open(os.environ["STAND_IN_READY"], "w") as ready:
            ready.write(str(os.getpid()))
        time.sleep(60)
    if mode == "crash":
        print("Traceback (most recent call last):", flush=True)
        print("ValueError: the stand-in broke", flush=True)
        print("(shutting down)", flush=True)
    sys.exit(0 if mode == "ok" else 1 if mode == "crash" else 3)
    """
)


def stand_in_project(root: Path) -> Path:
    """``root`` as a project with experiments/smoke from the one-GPU recipe, training with the stand-in."""
    assert run_fipo(root, "init", "smoke", "--model", "qwen2.5-0.5b").returncode == 0
    (root / "stand_in.py").write_text(STAND_IN)
    config_file = root / "experiments" / "smoke" / "fipo.yaml"
    text = config_file.read_text().replace("  seed: 42", f"  seed: 42\n  entrypoint: [{sys.executable}, stand_in.py]")
    config_file.write_text(text)
    return root
