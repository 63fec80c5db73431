"""The pieces some tests need (verl, vLLM, Ray, SLURM, its two-node cluster, a training set), and what
happens without one.

A test marked with a piece's name (``@pytest.mark.slurm``), or a module that calls :func:`require`
before importing it, skips with the reason when the piece is absent here, and fails instead when
``FIPO_REQUIRE_<PIECE>=1`` says it must be there: CI (``.ci/run``) sets them all, so a broken set-up
fails the run rather than silently skipping the tests that use it.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest


def _module(name: str, install: str) -> str | None:
    try:
        found = importlib.util.find_spec(name)
    except ModuleNotFoundError:  # a parent package is missing
        found = None
    return None if found is not None else f"{name} is not installed ({install})"


def _vllm() -> str | None:
    python = os.environ.get("FIPO_VLLM_PYTHON")
    if not python:
        return ("FIPO_VLLM_PYTHON is not set (scripts/install-cpu.sh VENV_DIR builds an environment with vLLM's "
                "CPU build)")
    if not Path(python).is_file():
        return f"FIPO_VLLM_PYTHON={python} does not exist"
    return None


def _slurm() -> str | None:
    if shutil.which("sbatch") is None:
        return "SLURM's client tools (sbatch) are not installed; .ci/slurm-up.sh installs and starts a cluster"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    if "is UP" in ping.stdout:
        return None
    return f"no SLURM controller answers `scontrol ping` (SLURM_CONF={os.environ.get('SLURM_CONF')})"


def _multinode() -> str | None:
    """The two-node cluster of .ci/slurm-up.sh: nodes n1 and n2 in SLURM, each the network namespace fipo-nI."""
    if (problem := _slurm()) is not None:
        return problem
    if os.geteuid() != 0:
        return "the multi-node tests stop and start the cluster's nodes (network namespaces): they run as root"
    listed = subprocess.run(["sinfo", "--noheader", "--Node", "--format=%N %T"], capture_output=True, text=True,
                            timeout=30, check=False).stdout
    states = dict(line.split() for line in listed.splitlines() if len(line.split()) == 2)
    missing = [f"n{i} (namespace fipo-n{i})" for i in (1, 2)
               if f"n{i}" not in states or not Path(f"/run/netns/fipo-n{i}").exists()]
    if missing:
        return (f"the SLURM cluster at SLURM_CONF={os.environ.get('SLURM_CONF')} lacks {', '.join(missing)}: "
                ".ci/slurm-up.sh starts the two-node cluster")
    down = [f"{node} ({state})" for node, state in sorted(states.items()) if state.startswith(("down", "drain"))
            or state.endswith("*")]
    if down:
        return f"nodes of the two-node cluster are down: {', '.join(down)}; .ci/slurm-node.sh I starts node nI again"
    return None


def _training() -> str | None:
    for module in ("torch", "verl", "vllm", "ray"):
        if (missing := _module(module, "the CPU training set: bash scripts/install-cpu.sh VENV")) is not None:
            return f"training with verl's real trainer needs the CPU training set: {missing}"
    return None


CHECKS = {
    "verl": lambda: _module("verl", "the `train` extra, or the CPU training set of scripts/install-cpu.sh"),
    "vllm": _vllm,
    "ray": lambda: _module("ray.dashboard", "Ray with its dashboard: ray[default], in the `cpu` extra"),
    "slurm": _slurm,
    "multinode": _multinode,
    "training": _training,
}


@functools.cache
def missing(piece: str) -> str | None:
    """Why ``piece`` is not available here; None when it is."""
    return CHECKS[piece]()


def require(piece: str) -> None:
    """Skip the test (or the module, called at its top) without ``piece``; fail under FIPO_REQUIRE_<PIECE>=1."""
    reason = missing(piece)
    if reason is None:
        return
    variable = f"FIPO_REQUIRE_{piece.upper()}"
    if os.environ.get(variable) == "1":
        pytest.fail(f"{variable}=1 but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)
