"""`fipo sweep` planning without a scheduler: names, the plan, the dry run, and bad input.

Submitting to a real SLURM is in test_slurm_launch.py; here nothing reaches a scheduler.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from fipo_cli.training import sweep

from fipo_run import run_fipo


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    assert run_fipo(root, "init", "exp", "--model", "qwen2.5-32b").returncode == 0
    return root


def dry_run(project: Path, *args: str) -> dict:
    result = run_fipo(project, "sweep", "exp", *args, "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_grid_plans_one_run_per_point_with_its_overrides_and_the_array_script(project):
    plan = dry_run(project, "gamma=0.95,0.99", "eps_f_high=choice(0.1,0.2)", "--launcher", "slurm",
                   "--max-parallel", "3")
    points = list(itertools.product((0.95, 0.99), (0.1, 0.2)))
    assert [(r["params"]["gamma"], r["params"]["eps_f_high"]) for r in plan["runs"]] == points
    for run, (gamma, high) in zip(plan["runs"], points, strict=True):
        # The 32B recipe's tau is replaced by the swept gamma, and the bound reaches verl.
        assert any(o.endswith(f"policy_loss.gamma={gamma}") for o in run["overrides"]), run["overrides"]
        assert any(o.endswith(f"policy_loss.future_kl_clip_high={high}") for o in run["overrides"])
        assert run["name"].startswith(plan["sweep"]) and f"gamma{gamma}" in run["name"] and run["action"] == "submit"
    assert len({r["name"] for r in plan["runs"]}) == 4
    script = plan["sbatch"]
    assert "#SBATCH --array=0-3%3" in script and "#SBATCH --nodes=16" in script
    for run in plan["runs"]:
        assert f"/runs/{run['name']}" in script
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert not (project / "experiments" / "exp" / "sweeps").exists()
    assert not (project / "experiments" / "exp" / "runs").exists()


def test_the_same_definition_gets_the_same_names_and_another_gets_others(project):
    first = dry_run(project, "gamma=0.95,0.99")
    assert dry_run(project, "gamma=0.95,0.99") == first
    other = dry_run(project, "gamma=0.95,0.98")
    assert other["sweep"] != first["sweep"]
    named = dry_run(project, "gamma=0.95,0.99", "--name", "g")
    assert [r["name"] for r in named["runs"]] == ["g-000-gamma0.95", "g-001-gamma0.99"]


def test_random_strategy_draws_seeded_distinct_points(project):
    args = ("tau=range(16,65,16)", "eps_f_high=0.1,0.2,0.3", "--strategy", "random", "--samples", "5")
    first = dry_run(project, *args, "--seed", "1")
    assert dry_run(project, *args, "--seed", "1") == first
    params = [tuple(r["params"].values()) for r in first["runs"]]
    assert len(params) == 5 == len(set(params))
    assert all(tau in (16, 32, 48, 64) and high in (0.1, 0.2, 0.3) for tau, high in params)
    assert dry_run(project, *args, "--seed", "2")["runs"] != first["runs"]


def test_random_draws_get_short_unique_names_and_wandb_names_do_not_repeat_the_experiment(project):
    plan = dry_run(project, "lr=interval(1e-6,3e-6)", "gamma=0.95,0.99", "--strategy", "random", "--samples", "4")
    names = [run["name"] for run in plan["runs"]]
    assert len(set(names)) == 4
    for index, run in enumerate(plan["runs"]):
        lr = run["params"]["lr"]
        assert run["name"] == f"{plan['sweep']}-{index:03d}-lr{lr:.3g}-gamma{run['params']['gamma']}"
        assert len(repr(lr)) > 12  # the draw itself keeps every digit, and reaches verl with them
        assert f"actor_rollout_ref.actor.optim.lr={lr}" in run["overrides"]
        # The sweep's run names start with the experiment's: W&B shows them as they are.
        assert plan["sweep"].startswith("exp-") and f"trainer.experiment_name={run['name']}" in run["overrides"]
    single = run_fipo(project, "train", "exp", "--dry-run", "--json")
    run_name = Path(json.loads(single.stdout)["run_dir"]).name
    assert f"trainer.experiment_name=exp-{run_name}" in json.loads(single.stdout)["overrides"]


def test_the_plan_table_shows_runs_and_the_gpu_hours_reserved(project):
    result = run_fipo(project, "sweep", "exp", "gamma=0.95,0.99", "cluster.time_limit=1-00:00:00", "--dry-run")
    assert result.returncode == 0, result.stderr
    # 2 runs × 16 nodes × 8 GPUs × 24 h
    assert "6,144 GPU-hours" in result.stdout and "gamma0.95" in result.stdout
    assert "2 runs" in result.stdout and "× 128 GPUs" in result.stdout
    one = run_fipo(project, "sweep", "exp", "gamma=0.95", "nodes=1", "cluster.gpus_per_node=1", "--dry-run")
    assert "1 run," in one.stdout and "× 1 GPU;" in one.stdout, one.stdout + one.stderr


def test_the_plan_table_writes_values_as_yaml_does(project):
    result = run_fipo(project, "sweep", "exp", "trainer.val_before_train=true,false", "algorithm.gamma=null,0.9",
                  "--launcher", "local", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "True" not in result.stdout and "None" not in result.stdout
    assert " true " in result.stdout and " false " in result.stdout and " - " in result.stdout
    names = [run["name"] for run in dry_run(project, "trainer.val_before_train=true,false", "algorithm.gamma=null,0.9",
                                            "--launcher", "local")["runs"]]
    assert names[0].endswith("-000-val_before_traintrue-gammanull")
    assert names[3].endswith("-003-val_before_trainfalse-gamma0.9")


def test_more_than_a_hundred_runs_need_yes(project):
    result = run_fipo(project, "sweep", "exp", "trainer.seed=range(0,101)", "--launcher", "slurm")
    assert result.returncode == 2 and "101 runs, more than 100" in result.stderr and "--yes" in result.stderr
    assert not (project / "experiments" / "exp" / "sweeps").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["gamma=0.95,,0.99"], "empty value"),
        (["tau=range(5,1)"], "empty"),
        (["gama=0.9"], "did you mean 'gamma'"),
        (["nodes=0,1"], "cluster.nodes=0"),
        (["gamma=1.5"], "algorithm.gamma"),
        (["lr=interval(1e-6,1e-5)"], "--strategy random"),
        (["cluster.nodes=1,2", "--launcher", "slurm"], "cluster.nodes differs between runs"),
        (["gamma=0.9", "--strategy", "random"], "--samples"),
        (["gamma=0.9", "--max-parallel", "0"], "--max-parallel 0"),
    ],
)
def test_bad_sweeps_exit_2_with_the_reason_and_write_nothing(project, args, message):
    result = run_fipo(project, "sweep", "exp", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "experiments" / "exp" / "sweeps").exists()
    assert not (project / "experiments" / "exp" / "runs").exists()


def test_a_slurm_sweep_without_sbatch_leaves_nothing_behind(project, tmp_path):
    bin_dir = tmp_path / "bin"  # a PATH with bash (the script's syntax check) and no SLURM
    bin_dir.mkdir()
    (bin_dir / "bash").symlink_to(shutil.which("bash"))
    assert shutil.which("sbatch", path=str(bin_dir)) is None
    result = run_fipo(project, "sweep", "exp", "gamma=0.95,0.99", "--launcher", "slurm", PATH=str(bin_dir))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "sbatch" in result.stderr
    assert not (project / "experiments" / "exp" / "sweeps").exists()
    assert not (project / "experiments" / "exp" / "runs").exists()
    assert "0 runs" in run_fipo(project, "status").stdout


def test_wandb_ids_do_not_repeat_the_experiment_and_a_run_keeps_the_id_it_started_with(tmp_path):
    from fipo_cli.experiment import config
    from fipo_cli.runs.experiments import ExperimentDir
    from fipo_cli.runs.status import RunStatus, write_status
    from fipo_cli.tracking import identity as wandb_identity
    from fipo_cli.training import train

    assert wandb_identity.wandb_run_id("exp", "exp-swd41c8a-000-gamma0.9") == "exp-swd41c8a-000-gamma0-9"
    assert wandb_identity.wandb_run_id("exp", "20261122-013000") == "exp-20261122-013000"
    experiment = config.build({"name": "exp", "model": {"path": "m"}, "tracking": {"mode": "offline"}})
    where = ExperimentDir(tmp_path / "exp", tmp_path / "exp" / "fipo.yaml")
    run_dir = where.runs / "exp-swd41c8a-000-gamma0.9"
    assert train.plan_run(experiment, where, run_dir.name).env["WANDB_RUN_ID"] == "exp-swd41c8a-000-gamma0-9"
    run_dir.mkdir(parents=True)  # a run an older fipo started, with the id it named it by
    write_status(run_dir, RunStatus(state="failed", launcher="slurm", wandb_run_id="exp-exp-swd41c8a-000-gamma0-9"))
    assert train.plan_run(experiment, where, run_dir.name).env["WANDB_RUN_ID"] == "exp-exp-swd41c8a-000-gamma0-9"


def test_run_names_are_safe_and_fit_sixty_four_characters():
    from fipo_cli.experiment.config import SAFE_NAME

    name = sweep.run_name("s" * 60, 7, {"data.train_files": "/a b/c,d", "algorithm.gamma": 0.95})
    assert len(name) <= 64 and SAFE_NAME.match(name) and "-007" in name


@pytest.mark.skipif(importlib.util.find_spec("verl") is None, reason="verl is not installed")
@pytest.mark.parametrize("dry", [True, False])
def test_every_point_is_composed_in_verl_and_the_bad_one_is_named(project, dry):
    # Without fipo's Hydra plugin verl's config has no FIPO knobs: the DAPO point composes, the FIPO one does not.
    args = ("sweep", "exp", "algorithm.name=dapo,fipo", "--launcher", "slurm", *(["--dry-run"] if dry else []))
    result = run_fipo(project, *args, timeout=120, FIPO_VERL_KNOBS="0")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: run #1 " in result.stderr and "(algorithm.name=fipo): the installed verl's config rejects the " \
        "override 'actor_rollout_ref.actor.policy_loss." in result.stderr
    assert "run #0" not in result.stderr
    assert not (project / "experiments" / "exp" / "sweeps").exists()
    assert not (project / "experiments" / "exp" / "runs").exists()
