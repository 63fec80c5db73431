"""GPU visibility, without importing torch: how many GPUs a process started here would see, and which.

``CUDA_VISIBLE_DEVICES`` decides when it is set; otherwise ``nvidia-smi -L`` lists the GPUs.
A login node has no CUDA, and ``fipo --help`` must stay fast: nothing here imports torch.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from fipo_cli.core.errors import FipoError
from fipo_cli.core.text import plural


def visible_devices(env: Mapping[str, str]) -> list[str] | None:
    """The entries of ``CUDA_VISIBLE_DEVICES`` that CUDA uses (ids or UUIDs); None when it is unset.

    CUDA reads the entries up to the first invalid one, so ``""`` and ``"-1"`` mean none.
    """
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return None
    entries = [entry.strip() for entry in listed.split(",")]
    return list(itertools.takewhile(lambda entry: entry and not entry.startswith("-"), entries))


GpuSource = Literal["CUDA_VISIBLE_DEVICES", "nvidia-smi", "none"]


@dataclass(frozen=True)
class GpuInventory:
    """How many GPUs a process started here would see, and how that was found out."""

    count: int
    source: GpuSource
    detail: str
    """What was seen, for messages: ``CUDA_VISIBLE_DEVICES='0,1'``, ``nvidia-smi not installed``."""


def visible_gpus(env: Mapping[str, str] | None = None) -> GpuInventory:
    """Count the GPUs visible to a process with environment ``env`` (default: fipo's own).

    ``CUDA_VISIBLE_DEVICES`` decides when it is set: CUDA sees its entries up to the first
    invalid one, so ``""`` and ``"-1"`` mean none. Otherwise the GPUs that ``nvidia-smi -L``
    lists are visible; without nvidia-smi there are none.
    """
    env = os.environ if env is None else env
    listed = visible_devices(env)
    if listed is not None:
        return GpuInventory(len(listed), "CUDA_VISIBLE_DEVICES", f"CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']!r}")
    nvidia_smi = shutil.which("nvidia-smi", path=env.get("PATH", os.defpath))
    if nvidia_smi is None:
        return GpuInventory(0, "none", "nvidia-smi not installed")
    try:
        # A wedged driver can hang nvidia-smi; a GPU check must not hang fipo.
        listing = subprocess.run([nvidia_smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return GpuInventory(0, "nvidia-smi", f"nvidia-smi -L failed: {exc}")
    if listing.returncode != 0:
        return GpuInventory(0, "nvidia-smi", f"nvidia-smi -L failed with exit code {listing.returncode}")
    # MIG instances are listed indented under their GPU; count the GPUs only.
    count = sum(line.startswith("GPU ") for line in listing.stdout.splitlines())
    return GpuInventory(count, "nvidia-smi", "nvidia-smi -L")


def require_gpus(needed: int, inventory: GpuInventory | None = None, *, layout: str | None = None) -> None:
    """Raise :class:`FipoError` unless at least ``needed`` GPUs are visible here.

    ``inventory`` defaults to :func:`visible_gpus`. ``layout`` says where the number comes
    from, for the message: ``"1 node × 8 GPUs per node"``.
    """
    inventory = visible_gpus() if inventory is None else inventory
    if inventory.count >= needed:
        return
    because = f" ({layout})" if layout else ""
    raise FipoError(
        f"the run needs {plural(needed, 'GPU')}{because}; found {inventory.count} ({inventory.detail})",
        hint="use `--launcher slurm` to run on a cluster, or lower the trainer's nodes or GPUs per node",
    )
