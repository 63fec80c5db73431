"""What fipo hands verl: the runs' variables reach every Ray worker exactly (verl_adapter/overrides.py)."""

from __future__ import annotations

import os
from pathlib import Path

from fipo_cli.experiment import config, recipes
from fipo_cli.verl_adapter import overrides as verl_overrides


def test_the_runs_variables_reach_ray_workers_exactly_whatever_the_paths_hold():
    # Ray runs os.path.expandvars over runtime-env values: "$HOME" in a path would become another path.
    env = {"VERL_FILE_LOGGER_PATH": "/tmp/it's $HOME `x` \"q\"/metrics.jsonl", "VLLM_CPU_KVCACHE_SPACE": "1",
           "WANDB_TAGS": "fipo,ünïcode"}
    experiment = config.load(recipes.recipe_path("tiny"))
    lines = verl_overrides.experiment_overrides(experiment, experiment_name="e", checkpoint_dir=Path("/c"),
                                                hydra_dir=Path("/h"), wandb=True, worker_env=env)
    (line,) = [line for line in lines if line.startswith(f"{verl_overrides.RUNTIME_ENV_VARS}.")]
    encoded = line.split("=", 1)[1].strip("'")
    assert "$" not in encoded and os.path.expandvars(encoded) == encoded
    worker = {"HOME": "/root", verl_overrides.WORKER_ENV: encoded}
    verl_overrides.apply_worker_env(worker)
    assert {name: worker[name] for name in env} == env
