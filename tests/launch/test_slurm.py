"""The SLURM launcher without a cluster: the rendered batch script (quoting, secrets, #SBATCH lines) and SLURM's states."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from fipo_cli.core.errors import UsageError
from fipo_cli.experiment import config
from fipo_cli.launch import slurm
from fipo_cli.launch.ray_head import head_cpus

from fipo_run import run_fipo

NASTY = "it's $HOME `touch pwned` \"q\" ; rm -rf x"


def render(tmp_path: Path, device: str = "cuda", **cluster) -> str:
    job = slurm.BatchJob(
        job_name="fipo-exp-run", run_dirs=[tmp_path / NASTY / "runs" / "a", tmp_path / "b"],
        cluster=config.ClusterConfig(launcher="slurm", **cluster), device=device,
        output=tmp_path / "logs" / "%A_%a.out", description="test", command="sweep", array=True, max_parallel=2,
    )
    return slurm.render(job, workdir=tmp_path / "work dir", python=sys.executable)


def test_values_are_quoted_so_that_bash_reads_them_back_verbatim(tmp_path):
    script = render(tmp_path, setup=["export FROM_SETUP=1"])
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    line = next(line for line in script.splitlines() if line.startswith("run_dirs=("))
    # bash itself expands the array: the nasty path comes back unchanged and nothing runs.
    printed = subprocess.run(["bash", "-c", f"{line}\nprintf '%s\\n' \"${{run_dirs[@]}}\""], capture_output=True,
                             text=True, cwd=tmp_path, check=True).stdout.splitlines()
    assert printed == [str(tmp_path / NASTY / "runs" / "a"), str(tmp_path / "b")]
    assert not (tmp_path / "pwned").exists()
    assert "#SBATCH --array=0-1%2" in script and "export FROM_SETUP=1" in script


def test_a_cpu_job_asks_slurm_for_no_gpu_and_ray_for_logical_ones(tmp_path):
    gpu = render(tmp_path, gpus_per_node=4)
    cpu = render(tmp_path, device="cpu", gpus_per_node=4)
    assert "#SBATCH --gpus-per-node=4" in gpu and "--num-cpus" not in gpu
    assert "#SBATCH --gpus-per-node" not in cpu
    assert f'ray_options=(--num-gpus="$gpus_per_node" --num-cpus={head_cpus("cpu")} ' in cpu and "gpus_per_node=4" in cpu
    subprocess.run(["bash", "-n"], input=cpu, text=True, check=True)


def test_sbatch_lines_carry_the_cluster_profile_and_refuse_what_sbatch_cannot_read(tmp_path):
    script = render(tmp_path, partition="gpu a100", account="proj", qos="high", time_limit="2-00:00:00",
                    constraint="h100", gpus_per_node=4, extra_sbatch=["--mem=0", "--exclusive"], requeue=False)
    for line in ('#SBATCH --partition="gpu a100"', "#SBATCH --account=proj", "#SBATCH --qos=high",
                 "#SBATCH --time=2-00:00:00", "#SBATCH --constraint=h100", "#SBATCH --gpus-per-node=4",
                 "#SBATCH --mem=0", "#SBATCH --exclusive", "#SBATCH --no-requeue",
                 f'#SBATCH --chdir="{tmp_path / "work dir"}"'):
        assert line in script.splitlines(), line
    with pytest.raises(UsageError, match="double quote or a line break"):
        render(tmp_path, account='a"b')
    with pytest.raises(UsageError, match="double quote or a line break"):
        render(tmp_path, extra_sbatch=["--mem=0\nrm -rf /"])


def test_no_secret_value_reaches_the_script_or_the_run_directory(tmp_path):
    secret = "wandb-secret-value-123"

    secrets = {"WANDB_API_KEY": secret, "HF_TOKEN": secret, "FIPO_CLUSTER_CONFIG": str(tmp_path / "none")}
    assert run_fipo(tmp_path, "init", "exp", "--model", "qwen2.5-32b", **secrets).returncode == 0
    result = run_fipo(tmp_path, "train", "exp", "--launcher", "slurm", "--dry-run", "--json", **secrets)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert secret not in result.stdout and plan["env"]["WANDB_API_KEY"] == "***"
    assert "WANDB_API_KEY" in plan["sbatch"] and "#SBATCH --nodes=16" in plan["sbatch"]
    assert not (tmp_path / "experiments" / "exp" / "runs").exists()


@pytest.mark.parametrize("text, state, code", [
    ("COMPLETED", "succeeded", None), ("CANCELLED by 0", "cancelled", None), ("CANCELLED+", "cancelled", None),
    ("TIMEOUT", "timeout", None), ("NODE_FAIL", "failed", None), ("REQUEUED", "pending", None),
    ("COMPLETING", "running", None),
])
def test_slurm_states_map_to_run_states(text, state, code):
    parsed = slurm._job_state(text)
    assert parsed.state == state and parsed.exit_code == code


def test_exit_codes_are_read_as_slurm_writes_them():
    assert slurm._job_state("FAILED", "3:0").exit_code == 3
    assert slurm._job_state("CANCELLED", "0:15").exit_code == 143
    assert slurm._job_state("BOGUS") is None


def test_the_script_round_trips_python_and_ray_paths(tmp_path):
    script = render(tmp_path)
    python_line = next(line for line in script.splitlines() if line.startswith("fipo_python="))
    assert shlex.split(python_line.split("=", 1)[1]) == [sys.executable]


def test_a_cpu_job_asks_slurm_for_two_cpus_per_worker_unless_told(tmp_path):
    def cpus(script: str) -> list[str]:
        return [line for line in script.splitlines() if line.startswith("#SBATCH --cpus-per-task")]

    assert cpus(render(tmp_path, device="cpu", gpus_per_node=4)) == [f"#SBATCH --cpus-per-task={2 * 4}"]
    assert cpus(render(tmp_path, device="cpu", gpus_per_node=4, cpus_per_task=3)) == ["#SBATCH --cpus-per-task=3"]
    assert cpus(render(tmp_path, gpus_per_node=4)) == []  # a GPU job: the cluster's default
    assert cpus(render(tmp_path, gpus_per_node=4, cpus_per_task=32)) == ["#SBATCH --cpus-per-task=32"]


def test_a_job_that_lost_a_node_waits_for_slurms_requeue_only_when_requeue_is_on(tmp_path):
    requeued, not_requeued = render(tmp_path), render(tmp_path, requeue=False)
    for script in (requeued, not_requeued):
        subprocess.run(["bash", "-n"], input=script, text=True, check=True)
        assert f'if [ "$trainer_exit" = {slurm.NODE_LOST_EXIT} ]; then' in script
        assert "SlurmdTimeout" in script and '--run-dir "$run_dir"' in script
    assert 'scontrol requeue "$SLURM_JOB_ID"' in requeued and "scontrol requeue" not in not_requeued
