"""A training run's W&B run as verl's Tracking makes it in fipo's environment: group, job type, tags, config.

Real wandb in offline mode (conftest's ``offline_wandb``), read back from its ``.wandb`` file.
"""

from __future__ import annotations

import logging
import os

import pytest

import pieces

pieces.require('verl')

from fipo_cli.experiment import config
from fipo_cli.runs.experiments import ExperimentDir
from fipo_cli.tracking import identity as wandb_identity
from fipo_cli.training import train

import wandb_records

PROJECT = "fipo-test"


def start_training_run(plan: train.TrainPlan, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the trainer does in the environment fipo gives it: verl's Tracking logs one step."""
    import wandb
    from verl.utils.tracking import Tracking

    with monkeypatch.context() as trainer_env:
        for name, value in plan.env.items():
            trainer_env.setenv(name, value)
        tracking = Tracking(PROJECT, f"exp-{plan.run_name}", default_backend=["wandb"],
                            config={"trainer": {"project_name": PROJECT}})
        tracking.log(data={"response_length/mean": 10.0}, step=1)
        tracking.finish()
    wandb.teardown()  # waits until the .wandb file is complete


def test_the_run_has_group_job_type_tags_and_the_fipo_config(tmp_path, offline_wandb, monkeypatch):
    experiment = config.build({
        "name": "exp", "model": {"path": "/models/Qwen/Qwen2.5-32B/"}, "algorithm": {"gamma": 0.99},
        "tracking": {"project": PROJECT, "mode": "offline", "group": "sweep-gamma", "tags": ["paper", "a,b", "fipo"]},
    })
    where = ExperimentDir(tmp_path / "exp", tmp_path / "exp" / "fipo.yaml")
    plan = train.plan_run(experiment, where, "20261122-013000", inherited=dict(os.environ))
    plan = train.prepare_run(plan, dict(os.environ))

    start_training_run(plan, monkeypatch)

    (path,) = wandb_records.run_files(plan.run_dir / "wandb")
    record = wandb_records.run_record(path)
    assert record.run_id == wandb_identity.wandb_run_id("exp", plan.run_name) and record.project == PROJECT
    assert (record.run_group, record.job_type) == ("sweep-gamma", "train")
    assert list(record.tags) == ["fipo", "Qwen2.5-32B", "paper", "ab"]
    logged = wandb_records.config(path)
    assert logged["fipo"] == experiment.to_dict() and logged["fipo"]["algorithm"]["gamma"] == 0.99
    assert logged["fipo_verl_overrides"] == plan.overrides
    assert logged["trainer"] == {"project_name": PROJECT}  # verl's own config is kept
    sync = wandb_identity.wandb_sync_command(plan.run_dir)
    assert sync == f"wandb sync {plan.run_dir.absolute() / 'wandb'}/offline-run-*"


def test_without_a_group_or_readable_config_file_the_run_still_starts(tmp_path, offline_wandb, monkeypatch, caplog):
    experiment = config.build({"name": "exp", "model": {"path": "m"}, "tracking": {"project": PROJECT}})
    where = ExperimentDir(tmp_path / "exp", tmp_path / "exp" / "fipo.yaml")
    plan = train.plan_run(experiment, where, "20261122-013000", inherited=dict(os.environ))
    assert "WANDB_RUN_GROUP" not in plan.env
    (plan.run_dir / "wandb").mkdir(parents=True)  # the run directory without tracking_config.json

    with caplog.at_level(logging.WARNING, logger="fipo_cli.verl_plugin"):
        start_training_run(plan, monkeypatch)

    assert "not added to the tracking config" in caplog.text
    (path,) = wandb_records.run_files(plan.run_dir / "wandb")
    assert wandb_records.run_record(path).run_group == ""
    assert "fipo" not in wandb_records.config(path)


def test_disabled_tracking_sets_no_wandb_variable(tmp_path):
    experiment = config.build({"name": "exp", "model": {"path": "m"}, "tracking": {"mode": "disabled"}})
    plan = train.plan_run(experiment, ExperimentDir(tmp_path, tmp_path / "fipo.yaml"), "r", inherited={})
    assert not [name for name in plan.env if name.startswith("WANDB_") or name == wandb_identity.TRACKING_CONFIG_ENV]
    assert "trainer.logger=[console,file]" in plan.overrides
