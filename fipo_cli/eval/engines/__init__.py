"""Generation engines for ``fipo eval``: pick one by name with :func:`make_engine`.

- ``vllm``: offline vLLM in this process, tensor and data parallel over the visible GPUs;
- ``transformers``: batched ``model.generate``, for small models, CPUs and CI;
- ``openai``: any OpenAI-compatible server (``vllm serve``, SGLang) over HTTP.

Engine modules are imported on demand: vLLM, torch and transformers stay out of ``fipo --help``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fipo_cli.core.errors import FipoError, UsageError
from fipo_cli.core.gpus import visible_gpus
from fipo_cli.core.hub import is_hub_id
from fipo_cli.eval.engines.base import (
    Engine,
    Generation,
    Message,
    Request,
    SamplingSettings,
    sample_seed,
)

__all__ = [
    "ENGINES", "Engine", "Generation", "Message", "Request", "SamplingSettings", "make_engine", "resolve_engine",
    "sample_seed",
]

ENGINES = ("vllm", "transformers", "openai")


def resolve_engine(name: str) -> str:
    """``auto`` is vLLM when it is installed and a GPU is visible, transformers otherwise."""
    if name != "auto":
        return name
    return "vllm" if importlib.util.find_spec("vllm") and visible_gpus().count else "transformers"


def _check_local_model(model: str) -> None:
    """A model that is neither an existing path nor hub-id shaped is a typo'd path: say so now,
    not after vLLM has spent seconds starting."""
    if Path(model).expanduser().exists():
        return
    if is_hub_id(model):
        return
    raise UsageError(f"model {model!r}: no such directory, and not a Hugging Face hub id (ORG/NAME)")


def _require(module: str, engine: str, install: str) -> None:
    if importlib.util.find_spec(module) is None:
        others = " or ".join(f"the `{name}` engine" for name in ENGINES if name != engine)
        raise FipoError(
            f"the {engine} engine needs {module}, which is not installed", hint=f"{install}, or use {others}"
        )


def make_engine(
    name: str,
    model: str,
    *,
    use_chat_template: bool = True,
    tensor_parallel_size: int | None = None,
    data_parallel_size: int | None = None,
    dtype: str = "auto",
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    concurrency: int = 16,
    timeout_s: float = 600.0,
    retries: int = 3,
) -> Engine:
    """Load the engine ``name`` for ``model``.

    ``model`` is a local directory or hub id for ``vllm`` and ``transformers``, and the served
    model name for ``openai``. ``tensor_parallel_size`` / ``data_parallel_size`` (vllm only)
    default to all visible GPUs in one tensor-parallel group; ``base_url``, ``api_key_env``,
    ``concurrency``, ``timeout_s`` and ``retries`` are for ``openai`` only.
    """
    if name not in ENGINES:
        raise UsageError(f"unknown engine {name!r}; the engines are {', '.join(ENGINES)}")
    if name != "vllm" and (tensor_parallel_size or 1) * (data_parallel_size or 1) != 1:
        raise UsageError(f"the {name} engine does not shard a model; tensor/data parallel sizes are for vllm")
    if name == "openai":
        if base_url is None:
            raise UsageError("the openai engine needs a server URL", hint="pass --base-url http://HOST:PORT/v1")
        from fipo_cli.eval.engines.openai_engine import OpenAIEngine

        return OpenAIEngine(
            model,
            base_url=base_url,
            use_chat_template=use_chat_template,
            api_key_env=api_key_env,
            concurrency=concurrency,
            timeout_s=timeout_s,
            retries=retries,
        )
    _check_local_model(model)
    if name == "vllm":
        _require("vllm", "vllm", "pip install 'fipo[eval]'")
        from fipo_cli.eval.engines.vllm_engine import VLLMEngine

        return VLLMEngine(
            model,
            use_chat_template=use_chat_template,
            tensor_parallel_size=tensor_parallel_size,
            data_parallel_size=data_parallel_size,
            dtype=dtype,
        )
    for module in ("torch", "transformers"):
        _require(module, "transformers", "pip install torch transformers (both come with 'fipo[train]')")
    from fipo_cli.eval.engines.transformers_engine import TransformersEngine

    return TransformersEngine(model, use_chat_template=use_chat_template, dtype=dtype)
