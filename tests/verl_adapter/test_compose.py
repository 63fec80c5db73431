"""verl's config composed in-process (fipo_cli.verl_adapter.compose) against the real `main_ppo --cfg job`.

`fipo train --dry-run`, `fipo doctor` and `fipo sweep` compose with Hydra in-process so as not to
import verl; these tests hold them to what verl's own entry point composes and rejects.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from fipo_cli.core.errors import ConfigError
from fipo_cli.experiment import config, recipes
from fipo_cli.verl_adapter import compose as verl_compose
from fipo_cli.verl_adapter import overrides as verl_overrides

# Found, not imported here (tests/training/test_train.py checks that a dry run imports no verl, in a fresh process).
pytestmark = pytest.mark.skipif(importlib.util.find_spec("verl") is None, reason="verl is not installed")


DEVICES = ("cuda", "cpu")


#: Every shipped recipe, on each device (``trainer.device: cpu`` adds its own overrides).
CASES = [f"{model}-{algo}@{device}" for model in recipes.MODELS for algo in recipes.ALGORITHMS for device in DEVICES]


BAD_KEY = "actor_rollout_ref.actor.no_such_knob"


#: verl's own entry point, run as ``python -m verl.trainer.main_ppo --cfg job ARGS`` runs it (runpy is
#: what ``-m`` uses), once per case in one process: importing verl once, not once per case.
MAIN_PPO_PER_CASE = textwrap.dedent(
    """
    import contextlib, io, json, runpy, sys
    printed = {}
    for case, overrides in json.load(sys.stdin).items():
        sys.argv = ["main_ppo.py", "--cfg", "job", *overrides]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            runpy.run_module("verl.trainer.main_ppo", run_name="__main__", alter_sys=True)
        printed[case] = out.getvalue()
    print(json.dumps(printed))
    """
)


def recipe_overrides(case: str) -> list[str]:
    recipe, device = case.split("@")
    model, algo = recipe.rsplit("-", 1)
    experiment = config.build(config.read_experiment(recipes.recipe_path(model, algo)), {"trainer.device": device})
    return verl_overrides.experiment_overrides(
        experiment, experiment_name="check", checkpoint_dir=Path("/tmp/with space/ckpt"),
        hydra_dir=Path("/tmp/with space/hydra"), wandb=True,
        worker_env={"VERL_FILE_LOGGER_PATH": "/tmp/it's $HOME/metrics.jsonl", "VLLM_CPU_KVCACHE_SPACE": "1"},
    )


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("VERL_USE_EXTERNAL", "FIPO_VERL"))}


@pytest.fixture(scope="module")
def printed_by_main_ppo(tmp_path_factory) -> dict[str, str]:
    cases = {case: recipe_overrides(case) for case in CASES}
    result = subprocess.run(
        [sys.executable, "-c", MAIN_PPO_PER_CASE], input=json.dumps(cases), cwd=tmp_path_factory.mktemp("main_ppo"),
        env=clean_env(), capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", CASES)
def test_every_recipe_composes_in_process_exactly_as_main_ppo_prints_it(case, printed_by_main_ppo, monkeypatch):
    for name in clean_env().keys() ^ os.environ.keys():
        monkeypatch.delenv(name)
    composed = verl_compose.compose(recipe_overrides(case))
    assert OmegaConf.to_yaml(composed) == printed_by_main_ppo[case]
    # The composed config is verl's and fipo's: the loss the recipe names, with fipo's knobs section.
    assert composed.actor_rollout_ref.actor.policy_loss.loss_mode == ("future_kl" if "-fipo@" in case else "vanilla")
    assert composed.trainer.device == case.split("@")[1]


def test_a_key_verl_does_not_know_is_rejected_by_both_and_named(tmp_path):
    overrides = [*recipe_overrides("tiny-fipo@cpu"), f"{BAD_KEY}=1"]
    real = subprocess.run(
        [sys.executable, "-m", verl_overrides.TRAINER_MODULE, "--cfg", "job", *overrides],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=300, check=False,
    )
    assert real.returncode != 0 and f"'{BAD_KEY}'" in real.stderr, real.stderr[-3000:]
    with pytest.raises(ConfigError) as caught:
        verl_compose.compose(overrides)
    assert caught.value.problems == [
        (f"the installed verl's config rejects the override '{BAD_KEY}=1': Could not override '{BAD_KEY}'. "
         "(Key 'no_such_knob' is not in struct)")
    ]


def test_an_override_that_does_not_parse_is_named():
    with pytest.raises(ConfigError) as caught:
        verl_compose.compose(["trainer.nnodes=2", "trainer.logger=[console"])
    assert "rejects the override 'trainer.logger=[console'" in str(caught.value)


def test_every_bad_point_is_named_at_once(monkeypatch):
    # Without fipo's Hydra plugin, verl's config lacks the FIPO knobs: only the FIPO points fail.
    monkeypatch.setenv("FIPO_VERL_KNOBS", "0")
    points = {f"point {case}": recipe_overrides(case) for case in ("tiny-fipo@cpu", "tiny-dapo@cpu", "tiny-fipo@cuda")}
    with pytest.raises(ConfigError) as caught:
        verl_compose.compose_all(points)
    assert [problem.split(":")[0] for problem in caught.value.problems] == ["point tiny-fipo@cpu", "point tiny-fipo@cuda"]
    assert all("'actor_rollout_ref.actor.policy_loss.decay_rate=" in problem for problem in caught.value.problems)
