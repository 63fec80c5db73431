"""The vLLM environment as the tests use it: FIPO_VLLM_PYTHON, the python of an environment with
vLLM (on CPU: the CPU training set of scripts/install-cpu.sh, which CI uses for every test)."""

from __future__ import annotations

import os
from pathlib import Path

import pieces


def vllm_python() -> str:
    """The vLLM environment's python, or skip (fail under FIPO_REQUIRE_VLLM=1)."""
    pieces.require("vllm")
    return os.environ["FIPO_VLLM_PYTHON"]


def vllm_env() -> dict[str, str]:
    """The environment of every vLLM process: this checkout's fipo, vLLM in-process on the CPU
    with a small KV cache, offline, loopback without proxies."""
    return {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_LOGGING_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
