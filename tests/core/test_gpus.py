"""GPU visibility without torch: CUDA_VISIBLE_DEVICES as CUDA reads it, nvidia-smi -L, and the check before a run."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from fipo_cli.core.errors import FipoError
from fipo_cli.core.gpus import GpuInventory, require_gpus, visible_gpus


def write_script(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source))
    return path


@pytest.mark.parametrize(
    ("cuda_visible_devices", "count"), [("0,1,2", 3), ("", 0), ("-1", 0), ("0,-1,2", 1), ("GPU-8a4c1e2f", 1)]
)
def test_cuda_visible_devices_decides_the_gpu_count(monkeypatch, cuda_visible_devices, count):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", cuda_visible_devices)
    inventory = visible_gpus()
    assert (inventory.count, inventory.source) == (count, "CUDA_VISIBLE_DEVICES")


def test_nvidia_smi_lists_the_gpus_when_cuda_visible_devices_is_unset(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = write_script(
        bin_dir / "nvidia-smi",
        """\
        #!/bin/sh
        echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)"
        echo "  MIG 3g.40gb     Device  0: (UUID: MIG-0)"
        echo "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-1)"
        """,
    )
    fake.chmod(0o755)
    assert visible_gpus({"PATH": str(bin_dir)}) == GpuInventory(2, "nvidia-smi", "nvidia-smi -L")
    assert visible_gpus({"PATH": str(tmp_path)}) == GpuInventory(0, "none", "nvidia-smi not installed")


def test_require_gpus_says_what_it_found_and_what_the_run_needs(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    found = visible_gpus().count
    needed = max(8, found + 1)
    with pytest.raises(FipoError) as raised:
        require_gpus(needed)
    assert f"needs {needed} GPUs" in raised.value.message
    assert f"found {found} " in raised.value.message
    assert "slurm" in raised.value.hint

    none = GpuInventory(0, "none", "nvidia-smi not installed")
    with pytest.raises(FipoError) as raised:
        require_gpus(8, none, layout="1 node × 8 GPUs per node")
    assert raised.value.message == (
        "the run needs 8 GPUs (1 node × 8 GPUs per node); found 0 (nvidia-smi not installed)"
    )
    require_gpus(2, GpuInventory(3, "CUDA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES='0,1,2'"))
