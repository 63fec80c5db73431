"""What only the SLURM launcher does, against a real SLURM (what every launcher does: tests/launch/test_launchers.py).

The cluster is Debian's slurmctld + slurmd on this machine (.ci/slurm-up.sh: two nodes of 2 GPUs
each, network namespaces; these jobs take one node, test_slurm_nodes.py both, and trains verl's
real trainer there). Every job runs the real batch script: a Ray head on the node,
fipo's wait for the node's GPUs, then the run's trainer, here a stand-in set through the
experiment's `trainer.entrypoint` that joins the job's Ray cluster, checks its GPUs and
exits with a code chosen by the test.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fipo_run import run_fipo, wait_for

pytestmark = pytest.mark.slurm


STAND_IN = textwrap.dedent(
    """
    import json, os, sys, time
    import ray
    ray.init(log_to_driver=False)
    gpus = ray.cluster_resources().get("GPU", 0)
    ray.shutdown()
    print(f"stand-in joined Ray at {os.environ['RAY_ADDRESS']} with {gpus:g} GPUs", flush=True)
    print("WANDB_RUN_ID=" + os.environ.get("WANDB_RUN_ID", ""), flush=True)
    with open(os.environ["VERL_FILE_LOGGER_PATH"], "a") as metrics:
        metrics.write(json.dumps({"step": 7, "data": {"response_length/mean": 100.0}}) + "\\n")
    mode = os.environ.get("STAND_IN_MODE", "ok")
    first_attempt = not os.environ.get("SLURM_RESTART_COUNT")
    if mode == "wait" or (mode == "requeue" and first_attempt):
        open(os.environ["STAND_IN_READY"], "w").close()
        time.sleep(120)
    failing = mode == "fail" or "data.seed=2" in sys.argv
    sys.exit(3 if failing or gpus != 2 else 0)
    """
)


def slurm_state(job_id: str) -> str:
    out = subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id.split("_")[0], "-r", "-o", "%i %T"],
                         capture_output=True, text=True).stdout
    states = dict(line.split() for line in out.splitlines())
    return states.get(job_id, "")


def status_rows(project: Path, target: str) -> list[dict]:
    result = run_fipo(project, "status", target, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def final_rows(project: Path, target: str, count: int, timeout: float = 150.0) -> list[dict]:
    """Poll `fipo status --json` (which refreshes from SLURM) until ``count`` runs are finished."""
    def finished():
        rows = status_rows(project, target)
        done = [r for r in rows if r["state"] in ("succeeded", "failed", "cancelled", "timeout")]
        return rows if len(done) == count else None
    return wait_for(finished, timeout=timeout, what=f"{count} runs of {target} to finish")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """experiments/smoke from the one-GPU recipe, on SLURM with 2 GPUs per node, training with the stand-in.

    The directory's name holds a space, a quote, `$` and a backtick: the batch script must quote them.
    """
    root = tmp_path / "it's $HOME `x`"
    root.mkdir()
    # A token left by an earlier local ray.init (HOME is the project): it must not break the job's Ray.
    (root / ".ray").mkdir()
    (root / ".ray" / "auth_token").write_text(secrets.token_hex(32))
    assert run_fipo(root, "init", "smoke", "--model", "qwen2.5-0.5b").returncode == 0
    (root / "stand_in.py").write_text(STAND_IN)
    config_file = root / "experiments" / "smoke" / "fipo.yaml"
    text = config_file.read_text().replace("  seed: 42", f"  seed: 42\n  entrypoint: [{sys.executable}, stand_in.py]")
    text = text.replace("  launcher: local ", "  launcher: slurm ", 1)
    text = re.sub(r"^  gpus_per_node: 1 ", "  ray_start_timeout: 60\n  gpus_per_node: 2 ", text, count=1, flags=re.M)
    assert "launcher: slurm" in text and "gpus_per_node: 2" in text
    config_file.write_text(text)
    return root


def submitted_job(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    match = re.search(r"as SLURM job (\d+)", result.stdout)
    assert match, result.stdout
    return match.group(1)


def only_run(project: Path) -> Path:
    (run_dir,) = (project / "experiments" / "smoke" / "runs").iterdir()
    return run_dir


def test_a_run_starts_ray_on_its_node_trains_and_is_recorded_as_succeeded(project):
    result = run_fipo(project, "train", "smoke")
    job_id = submitted_job(result)
    run_dir = only_run(project)
    assert f"slurm-{job_id}.out" in result.stdout and f"fipo logs smoke/{run_dir.name} -f" in result.stdout
    status = json.loads((run_dir / "status.json").read_text())
    assert status["job_id"] == job_id and status["launcher"] == "slurm"
    assert status["state"] in ("pending", "running")
    assert subprocess.run(["bash", "-n", str(run_dir / "job.sbatch")]).returncode == 0

    (row,) = final_rows(project, "smoke", 1)
    assert row["state"] == "succeeded" and row["exit_code"] == 0 and row["last_step"] == 7
    log = run_fipo(project, "logs", f"smoke/{run_dir.name}")
    assert "stand-in joined Ray" in log.stdout and "with 2 GPUs" in log.stdout
    job_log = run_fipo(project, "logs", run_dir.name, "--job").stdout
    assert "Ray cluster ready" in job_log and "1 node × 2 GPUs each" in job_log
    # Ray was stopped with the job: no process of this job's Ray temp dir is left.
    wait_for(lambda: slurm_state(job_id) == "COMPLETED", what="SLURM to see the job complete")
    leftovers = subprocess.run(["pgrep", "-f", f"ray-fipo-{job_id}"], capture_output=True, text=True).stdout
    assert leftovers == ""


def test_status_follows_the_scheduler_from_pending_to_running_to_cancelled(project):
    ready = project / "ready"
    subprocess.run(["scontrol", "update", "PartitionName=debug", "State=DOWN"], check=True)
    try:
        job_id = submitted_job(run_fipo(project, "train", "smoke", STAND_IN_MODE="wait", STAND_IN_READY=str(ready)))
        (row,) = status_rows(project, "smoke")
        assert row["state"] == "pending" and slurm_state(job_id) == "PENDING"
    finally:
        subprocess.run(["scontrol", "update", "PartitionName=debug", "State=UP"], check=True)
    wait_for(ready.exists, what="the trainer to start")
    (row,) = status_rows(project, "smoke")
    assert row["state"] == "running" and row["job_id"] == job_id and row["elapsed_s"] is not None
    result = run_fipo(project, "cancel", f"smoke/{row['run']}")
    assert result.returncode == 0 and f"cancelling smoke/{row['run']} (job {job_id})" in result.stdout
    (row,) = final_rows(project, "smoke", 1)
    assert row["state"] == "cancelled"
    wait_for(lambda: slurm_state(job_id) == "CANCELLED", what="SLURM to cancel the job")
    again = run_fipo(project, "cancel", "smoke")
    assert again.returncode == 0 and "nothing to cancel" in again.stdout


def test_a_requeued_job_resumes_the_same_run_and_wandb_run(project):
    ready = project / "ready"
    job_id = submitted_job(run_fipo(project, "train", "smoke", STAND_IN_MODE="requeue", STAND_IN_READY=str(ready)))
    wait_for(ready.exists, what="the first attempt to start")
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    # SLURM holds a requeued batch job back for a while before it is eligible again; skip the wait.
    wait_for(lambda: slurm_state(job_id) == "PENDING", what="the job to be requeued")
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)
    (row,) = final_rows(project, "smoke", 1)
    run_dir = only_run(project)
    status = json.loads((run_dir / "status.json").read_text())
    assert row["state"] == "succeeded" and status["restarts"] == 1 and status["job_id"] == job_id
    ids = re.findall(r"WANDB_RUN_ID=(\S+)", (run_dir / "train.log").read_text())
    assert len(ids) == 2 and ids[0] == ids[1] == status["wandb_run_id"]


def test_a_sweep_is_one_job_array_rerun_idempotently_and_retried_for_its_failures(project):
    args = ("sweep", "smoke", "trainer.seed=1,2,3", "--max-parallel", "2", "--name", "seeds")
    result = run_fipo(project, *args)
    assert result.returncode == 0, result.stderr
    job_id = re.search(r"job array (\d+)", result.stdout).group(1)
    throttle = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    assert "ArrayTaskThrottle=2" in throttle

    rows = {row["run"]: row for row in final_rows(project, "seeds", 3)}
    assert [row["job_id"] for row in rows.values()] == [f"{job_id}_{i}" for i in range(3)]
    by_seed = {name.split("-")[2]: row["state"] for name, row in rows.items()}
    assert by_seed == {"seed1": "succeeded", "seed2": "failed", "seed3": "succeeded"}
    for name in rows:  # each array task trained its own run's config
        config = (project / "experiments" / "smoke" / "runs" / name / "config.yaml").read_text()
        assert f"seed: {name.split('-')[2][4:]}" in config and "group: seeds" in config

    again = run_fipo(project, *args)
    assert again.returncode == 0 and "nothing to launch" in again.stdout
    retry = run_fipo(project, *args, "--retry-failed")
    assert retry.returncode == 0, retry.stderr
    retry_job = re.search(r"submitted 1 run as SLURM job array (\d+)", retry.stdout).group(1)
    failed_run = next(name for name in rows if "seed2" in name)
    status = json.loads((project / "experiments" / "smoke" / "runs" / failed_run / "status.json").read_text())
    assert status["job_id"] == f"{retry_job}_0" and status["state"] in ("pending", "running", "failed")
    manifest = json.loads((project / "experiments" / "smoke" / "sweeps" / "seeds" / "sweep.json").read_text())
    assert [s["job_id"] for s in manifest["submissions"]] == [job_id, retry_job]


def test_sbatch_refusals_reach_the_user_verbatim_and_leave_nothing_behind(project):
    result = run_fipo(project, "train", "smoke", "cluster.partition=no-such-partition")
    assert result.returncode == 1
    assert "invalid partition" in result.stderr.lower() and "sinfo" in result.stderr
    assert not (project / "experiments" / "smoke" / "runs").exists() or not any(
        (project / "experiments" / "smoke" / "runs").iterdir())
