"""The paths outside fipo names, kept where they were when the package moved into layers (ARCHITECTURE.md):
users' fipo.yaml files, installed entry-point metadata, batch scripts and Ray jobs already queued name them."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

from fipo_run import run_fipo


def test_the_reward_function_experiments_name_scores_the_toy_task():
    from fipo_cli.toy_task import compute_score

    assert compute_score("fipo_toy_addition", "so Answer: 123", "123") == 1.0
    assert compute_score("fipo_toy_addition", "Answer: 100", "123") < 1.0


def test_verls_entry_point_is_the_plugin_and_registers_the_loss_in_a_fresh_process():
    (point,) = [point for point in entry_points(group="verl.plugins") if point.name == "fipo"]
    assert point.value == "fipo_cli.verl_plugin"
    import pieces

    pieces.require("verl")
    probe = ("import fipo_cli.verl_plugin as plugin\n"
             "from verl.trainer.ppo.core_algos import get_policy_loss_fn\n"
             "assert get_policy_loss_fn(plugin.LOSS_NAME) is plugin.compute_policy_loss_future_kl\n"
             "import hydra.utils\n"
             "assert hydra.utils.get_class(plugin.CONFIG_TARGET) is plugin.FutureKLPolicyLossConfig\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_job_side_task_runs_as_python_m_fipo_cli_run_task(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fipo_cli.run_task"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "usage: python -m fipo_cli.run_task [--record DIR] RUN_DIR" in result.stderr
    missing = subprocess.run([sys.executable, "-m", "fipo_cli.run_task", str(tmp_path / "no-run")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and f"{tmp_path / 'no-run' / 'config.yaml'}: no such file" in missing.stderr


def test_the_wait_for_a_jobs_ray_cluster_runs_as_python_m_fipo_cli_launch_ray_wait():
    result = subprocess.run([sys.executable, "-m", "fipo_cli.launch.ray_wait", "--help"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "--gpus-per-node" in result.stdout


def test_hydra_finds_the_fipo_knobs_at_pkg_fipo_cli_verl_conf():
    from importlib import resources

    actor = resources.files("fipo_cli.verl_conf") / "actor" / "dp_actor.yaml"
    assert "future_kl_clip_high" in actor.read_text()


def test_the_console_script_and_python_m_fipo_cli_are_one_command(tmp_path):
    from fipo_cli.cli import main

    assert callable(main)
    assert run_fipo(tmp_path, "--version").stdout.startswith("fipo ")
