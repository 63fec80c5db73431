"""The `fipo` command run as a user runs it: a subprocess in a project directory."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path


def run_fipo(cwd: Path, *args: str, timeout: float = 300, unset: Iterable[str] = (), **env: str) -> subprocess.CompletedProcess:
    """``python -m fipo_cli ARGS`` in ``cwd``, with ``HOME=cwd`` (a fresh user: no ~/.netrc, no
    ~/.config/fipo), without the developer's ``WANDB_API_KEY`` and ``FIPO_DEBUG``.

    ``unset`` removes more variables (``"WANDB_*"``: every one with that prefix); ``env`` sets some.
    """
    drop = {"WANDB_API_KEY", "FIPO_DEBUG", *unset}
    prefixes = tuple(name[:-1] for name in drop if name.endswith("*"))
    base = {k: v for k, v in os.environ.items() if k not in drop and not (prefixes and k.startswith(prefixes))}
    return subprocess.run([sys.executable, "-m", "fipo_cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**base, "HOME": str(cwd), **env})
