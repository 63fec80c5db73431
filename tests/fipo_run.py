"""The `fipo` command run as a user runs it: a subprocess in a project directory. The one way tests run `fipo`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

#: Libraries that take seconds to import: commands that do not train or evaluate import none of them.
HEAVY = ("torch", "verl", "vllm", "wandb", "ray", "transformers")


#: The developer's settings a fresh user does not have: W&B's, fipo's debug switch, a Ray cluster, GPUs chosen.
DEVELOPER_ENV = ("WANDB_*", "FIPO_DEBUG", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "CUDA_VISIBLE_DEVICES")


def run_fipo(cwd: Path, *args: str, timeout: float = 600, unset: Iterable[str] = (), **env: str) -> subprocess.CompletedProcess:
    """``python -m fipo_cli ARGS`` in ``cwd``, as a fresh user runs it: ``HOME=cwd`` (no ~/.netrc, no
    ~/.config/fipo) and none of :data:`DEVELOPER_ENV`.

    ``unset`` removes more variables (``"NAME_*"``: every one with that prefix); ``env`` sets some.
    """
    return _run([sys.executable, "-m", "fipo_cli", *args], cwd, timeout, unset, env)


def start_fipo(cwd: Path, *args: str, unset: Iterable[str] = (), **env: str) -> subprocess.Popen:
    """:func:`run_fipo` in the background, as a terminal holds a command: its output on pipes (text)."""
    return subprocess.Popen([sys.executable, "-m", "fipo_cli", *args], cwd=cwd, env=_env(cwd, unset, env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def heavy_imports(cwd: Path, *args: str, **env: str) -> list[str]:
    """The :data:`HEAVY` libraries ``fipo ARGS`` has imported when it ends (run as :func:`run_fipo` runs it)."""
    probe = (
        "import json, sys\n"
        f"sys.argv = ['fipo', *{list(args)!r}]\n"
        "from fipo_cli.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY:', json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    result = _run([sys.executable, "-c", probe], cwd, 300, (), env)
    last = result.stdout.strip().splitlines()[-1:]
    assert last and last[0].startswith("HEAVY: "), result.stdout + result.stderr
    return json.loads(last[0].removeprefix("HEAVY: "))


def _env(cwd: Path, unset: Iterable[str], env: dict[str, str]) -> dict[str, str]:
    drop = {*DEVELOPER_ENV, *unset}
    prefixes = tuple(name[:-1] for name in drop if name.endswith("*"))
    base = {k: v for k, v in os.environ.items() if k not in drop and not (prefixes and k.startswith(prefixes))}
    return {**base, "HOME": str(cwd), **env}


def _run(command: list[str], cwd: Path, timeout: float, unset: Iterable[str], env: dict[str, str]):
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
                          env=_env(cwd, unset, env))


def wait_for(predicate, timeout: float = 150.0, what: str = "a condition"):
    """Poll ``predicate`` every half second until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
