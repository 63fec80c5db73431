"""`model.attn_implementation`: the attention every GPU recipe builds its model with, on a machine without flash_attn.

verl 0.9.1 builds the actor and reference with flash-attention 2 unless told otherwise, and a GPU run
without `flash_attn` crashed at model load. These tests build the model as verl does, from the config
fipo composes (verl's own `HFModelConfig` and the auto class its FSDP engine loads with), on CPU, from
a tiny local Qwen2: with flash_attn not importable every GPU recipe either builds, or is refused
before any work with what to do (Ulysses sequence parallelism needs flash-attention 2 in verl 0.9.1).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fipo_cli.core.errors import ConfigError
from fipo_cli.experiment import config, recipes
from fipo_cli.verl_adapter import attention
from fipo_cli.verl_adapter import overrides as verl_overrides

from fipo_run import run_fipo

GPU_MODELS = [model for model in recipes.MODELS if model != "tiny"]
needs_verl = pytest.mark.skipif(importlib.util.find_spec("verl") is None, reason="verl is not installed")

#: In a fresh process with flash_attn hidden: compose each case with fipo's in-process compose, then do
#: what verl's worker does: HFModelConfig from actor_rollout_ref.model (resolving the attention) and the
#: model from the auto class verl's FSDP engine uses. Prints {case: implementation | "error: ..."}.
BUILD_AS_VERL_DOES = textwrap.dedent(
    """
    import json, sys
    if HIDE_FLASH_ATTN:
        sys.modules["flash_attn"] = None  # `import flash_attn` raises ImportError, as where it is not installed
    import torch
    import verl  # loads fipo's plugin, which registers the resolver of `auto`
    from verl.utils.config import omega_conf_to_dataclass
    from verl.utils.model import get_hf_auto_model_class
    from fipo_cli.verl_adapter import compose as verl_compose
    built = {}
    for case, overrides in json.load(sys.stdin).items():
        composed = verl_compose.compose(overrides)
        try:
            model_config = omega_conf_to_dataclass(composed.actor_rollout_ref.model)
            module = get_hf_auto_model_class(hf_config=model_config.hf_config).from_pretrained(
                model_config.local_path, torch_dtype=torch.float32, config=model_config.hf_config)
            built[case] = module.config._attn_implementation
        except Exception as error:
            built[case] = f"error: {type(error).__name__}: {error}"
    print("BUILT " + json.dumps(built))
    """
)


def overrides(model: str, algo: str, tiny_model: Path, **assignments) -> list[str]:
    experiment = config.build(config.read_experiment(recipes.recipe_path(model, algo)),
                              {"model.path": str(tiny_model), **assignments})
    return verl_overrides.experiment_overrides(experiment, experiment_name="attention", checkpoint_dir=Path("/c"),
                                               hydra_dir=Path("/h"), wandb=False, worker_env={})


def build_as_verl_does(cases: dict[str, list[str]], hide_flash_attn: bool, extra_path: Path | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VERL_USE_EXTERNAL", "FIPO_VERL"))}
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    code = f"HIDE_FLASH_ATTN = {hide_flash_attn}\n" + BUILD_AS_VERL_DOES
    result = subprocess.run([sys.executable, "-c", code], input=json.dumps(cases), capture_output=True, text=True,
                            timeout=600, env=env, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("BUILT ")]
    return json.loads(line.removeprefix("BUILT "))


@needs_verl
def test_without_flash_attn_every_gpu_recipe_builds_its_model_or_says_what_to_do(tiny_model):
    cases = {f"{model}-{algo}": overrides(model, algo, tiny_model) for model in GPU_MODELS for algo in recipes.ALGORITHMS}
    # Sequence parallelism of 1 on every recipe: each then trains with sdpa, which builds on CPU.
    cases |= {f"{case}@sp1": overrides(*case.rsplit("-", 1), tiny_model, **{"trainer.sequence_parallel_size": 1})
              for case in list(cases)}
    # What verl does unless told otherwise, for contrast: flash-attention 2, and the crash of the issue.
    cases["verl's default"] = [line for line in cases["qwen2.5-0.5b-fipo"] if not line.startswith(attention.OVERRIDE)]
    built = build_as_verl_does(cases, hide_flash_attn=True)
    assert built.pop("verl's default").startswith("error: ImportError"), "verl's own default must fail here"
    for case, outcome in built.items():
        recipe = None if case.endswith("@sp1") else config.load(recipes.recipe_path(*case.rsplit("-", 1)))
        parallel = 1 if recipe is None else recipe.trainer.sequence_parallel_size
        if parallel == 1:
            assert outcome == "sdpa", (case, outcome)
        else:  # refused with the fix, before a model is built, never transformers' FlashAttention2 ImportError
            assert outcome.startswith("error:") and "flash_attn does not import here" in outcome, (case, outcome)
            assert f"trainer.sequence_parallel_size={parallel} needs flash-attention 2" in outcome
            assert "set trainer.sequence_parallel_size: 1" in outcome


@needs_verl
def test_auto_takes_flash_attention_where_flash_attn_imports(tmp_path, tiny_model):
    # A stand-in flash_attn package that imports: what `auto` decides there, in verl's own resolution.
    (tmp_path / "flash_attn").mkdir()
    (tmp_path / "flash_attn" / "__init__.py").write_text("__version__ = '0.0-test'\n")
    code = ("import verl\nfrom omegaconf import OmegaConf\n"
            "print('CHOICE', OmegaConf.create({'a': '${fipo_auto_attention:8}'}).a)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "CHOICE flash_attention_2" in result.stdout
    assert "fipo: model.attn_implementation auto -> flash_attention_2 in this process" in result.stderr


def test_auto_is_decided_by_the_trainer_on_gpus_and_is_sdpa_on_cpu():
    assert attention.verl_value("auto", "cuda", 8) == "${fipo_auto_attention:8}"
    assert attention.verl_value("auto", "cpu", 1) == "sdpa"
    assert attention.verl_value("eager", "cuda", 1) == "eager"
    assert attention.decide_auto(8, None) == "flash_attention_2"
    assert attention.decide_auto(1, "ModuleNotFoundError: No module named 'flash_attn'") == "sdpa"
    with pytest.raises(attention.AttentionError, match="sequence_parallel_size=4 needs flash-attention 2"):
        attention.decide_auto(4, "ModuleNotFoundError: No module named 'flash_attn'")


@pytest.mark.parametrize("assignments, message", [
    ({"model.attn_implementation": "sdpa"}, "model.attn_implementation='sdpa': trainer.sequence_parallel_size=8 needs"),
    ({"model.attn_implementation": "flash_attention_2", "trainer.device": "cpu", "trainer.sequence_parallel_size": 1},
     "flash-attention 2 runs on CUDA GPUs only"),
    ({"model.remove_padding": False}, "model.remove_padding=False: trainer.sequence_parallel_size=8 needs it"),
    ({"model.attn_implementation": "flash"}, "expected one of auto, flash_attention_2, sdpa, eager"),
    ({"trainer.dynamic_batch_size": False, "verl.actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": 2},
     "trainer.dynamic_batch_size=False: verl 0.9.1 then needs fixed micro-batch sizes; set "
     "verl.actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=N"),
])
def test_settings_verl_cannot_train_are_refused_when_loaded(assignments, message):
    with pytest.raises(ConfigError) as caught:
        config.load(recipes.recipe_path("qwen2.5-32b"), assignments)
    assert any(message in problem for problem in caught.value.problems), caught.value.problems


def test_dry_run_shows_the_attention_and_the_local_launcher_refuses_what_it_cannot_train(tmp_path):
    assert run_fipo(tmp_path, "init", "big", "--model", "qwen2.5-32b").returncode == 0
    shown = run_fipo(tmp_path, "train", "big", "--dry-run", "--json")
    assert shown.returncode == 0, shown.stderr
    planned = json.loads(shown.stdout)["attention"]
    assert planned["setting"] == "auto" and planned["verl_value"] == "${fipo_auto_attention:8}"
    assert planned["decided_by_trainer"] is True
    if importlib.util.find_spec("flash_attn") is None:
        assert planned["here"] is None and "flash_attn is not installed" in planned["flash_attn_here"]
        assert "the training nodes must have flash_attn" in shown.stderr  # a warning, the job decides on its node
        local = run_fipo(tmp_path, "train", "big", "cluster.launcher=local", "nodes=1",
                         CUDA_VISIBLE_DEVICES="0,1,2,3,4,5,6,7")
        assert local.returncode == 2 and "flash_attn does not import here" in local.stderr
        assert not (tmp_path / "experiments" / "big" / "runs").exists()
    text = run_fipo(tmp_path, "train", "big", "--dry-run").stdout
    assert "attention: model.attn_implementation auto: flash_attention_2 where flash_attn imports" in text


def test_the_official_worker_environment_reaches_every_worker_and_the_users_own_wins(tmp_path):
    experiment = config.load(recipes.recipe_path("qwen2.5-32b"))
    assert verl_overrides.device_env("cuda", {}) == {"TORCH_NCCL_AVOID_RECORD_STREAMS": "1",
                                                     "CUDA_DEVICE_MAX_CONNECTIONS": "1"}
    assert verl_overrides.device_env("cuda", {"CUDA_DEVICE_MAX_CONNECTIONS": "8"})["CUDA_DEVICE_MAX_CONNECTIONS"] == "8"
    # verl 0.9.1 warns against one hardware queue with FSDP2: not set there.
    assert "CUDA_DEVICE_MAX_CONNECTIONS" not in verl_overrides.device_env("cuda", {}, fsdp2=True)
    assert "TORCH_NCCL_AVOID_RECORD_STREAMS" not in verl_overrides.device_env("cpu", {})
    assert experiment.trainer.device == "cuda"
    assert run_fipo(tmp_path, "init", "big", "--model", "qwen2.5-32b").returncode == 0
    shown = run_fipo(tmp_path, "train", "big", "--dry-run", "--json", TORCH_NCCL_AVOID_RECORD_STREAMS="0")
    plan = json.loads(shown.stdout)
    assert plan["env"]["TORCH_NCCL_AVOID_RECORD_STREAMS"] == "0" and plan["env"]["CUDA_DEVICE_MAX_CONNECTIONS"] == "1"
    (line,) = [o for o in plan["overrides"] if o.startswith(f"{verl_overrides.RUNTIME_ENV_VARS}.")]
    workers = json.loads(base64.urlsafe_b64decode(line.split("=", 1)[1].strip("'")))
    assert workers["TORCH_NCCL_AVOID_RECORD_STREAMS"] == "0" and workers["CUDA_DEVICE_MAX_CONNECTIONS"] == "1"
    fsdp2 = json.loads(run_fipo(tmp_path, "train", "big", "verl.actor_rollout_ref.actor.strategy=fsdp2",
                                "--dry-run", "--json").stdout)
    assert "CUDA_DEVICE_MAX_CONNECTIONS" not in fsdp2["env"]
