"""`fipo train --launcher ray`, `fipo sweep --launcher ray`, `status`, `logs` and `cancel` against a real Ray cluster.

The cluster is a Ray head started here with its dashboard, which serves Ray's job submission
API. Every job runs fipo's entrypoint (``python3 -m fipo_cli.run_task``) on it; the trainer is
a stand-in set through the experiment's `trainer.entrypoint` that joins the job's Ray cluster,
counts its GPUs and exits with a code chosen by its overrides (the job's environment is the
cluster's, not the test's). verl's real trainer trains as a Ray job in test_ray_job_nodes.py, on a
cluster of two nodes.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pieces

pieces.require('ray')

from fipo_run import run_fipo, wait_for

STAND_IN = textwrap.dedent(
    """
    import json, os, sys, time
    import ray
    ray.init(log_to_driver=False)
    gpus = ray.cluster_resources().get("GPU", 0)
    ray.shutdown()
    print(f"stand-in joined Ray with {gpus:g} GPUs", flush=True)
    print("WANDB_PROJECT=" + os.environ.get("WANDB_PROJECT", ""), flush=True)
    token = os.environ.get("HF_TOKEN")
    print("HF_TOKEN:", "the cluster's" if token == "cluster-side-token" else "unset" if not token else "another", flush=True)
    with open(os.environ["VERL_FILE_LOGGER_PATH"], "a") as metrics:
        metrics.write(json.dumps({"step": 7, "data": {"response_length/mean": 100.0}}) + "\\n")
    if "data.seed=3" in sys.argv:
        time.sleep(300)
    sys.exit(3 if "data.seed=2" in sys.argv or gpus != 1 else 0)
    """
)


@pytest.fixture
def cluster(ray_cluster: str) -> str:
    """The session's Ray cluster (tests/launch/conftest.py)."""
    return ray_cluster


@pytest.fixture
def project(tmp_path: Path, cluster: str) -> Path:
    """experiments/smoke from the one-GPU recipe, launched on the cluster, training with the stand-in."""
    assert run_fipo(tmp_path, "init", "smoke", "--model", "qwen2.5-0.5b").returncode == 0
    (tmp_path / "stand_in.py").write_text(STAND_IN)
    config_file = tmp_path / "experiments" / "smoke" / "fipo.yaml"
    text = config_file.read_text().replace("  seed: 42", f"  seed: 42\n  entrypoint: [{sys.executable}, stand_in.py]")
    text = text.replace("  launcher: local ", f"  launcher: ray\n  ray_address: {cluster}\n  # ", 1)
    assert "launcher: ray" in text
    config_file.write_text(text)
    return tmp_path


def status_rows(project: Path, target: str) -> list[dict]:
    result = run_fipo(project, "status", target, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def final_rows(project: Path, target: str, count: int, timeout: float = 120.0) -> list[dict]:
    def finished():
        rows = status_rows(project, target)
        return rows if sum(r["state"] in ("succeeded", "failed", "cancelled") for r in rows) == count else None
    return wait_for(finished, timeout=timeout, what=f"{count} runs of {target} to finish")


def submitted_job(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    match = re.search(r"as Ray job (\S+) to ", result.stdout)
    assert match, result.stdout
    return match.group(1)


def runs(project: Path, experiment: str = "smoke") -> list[Path]:
    runs_dir = project / "experiments" / experiment / "runs"
    return sorted(runs_dir.iterdir()) if runs_dir.exists() else []


def ray_job_info(address: str, job_id: str):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address).get_job_info(job_id)


def test_a_run_is_submitted_followed_and_recorded_as_succeeded(project, cluster):
    secret = "hf-secret-" + os.urandom(4).hex()
    job_id = submitted_job(run_fipo(project, "train", "smoke", HF_TOKEN=secret, WANDB_PROJECT="ray-test"))
    (run_dir,) = runs(project)
    status = json.loads((run_dir / "status.json").read_text())
    assert status["launcher"] == "ray" and status["job_id"] == job_id and status["ray_address"] == cluster

    followed = run_fipo(project, "logs", f"smoke/{run_dir.name}", "-f")
    assert followed.returncode == 0, followed.stderr
    assert "stand-in joined Ray with 1 GPUs" in followed.stdout  # the trainer ran inside the job's cluster
    assert "WANDB_PROJECT=ray-test" in followed.stdout  # W&B settings travel with the job
    assert "HF_TOKEN: the cluster's" in followed.stdout  # a secret goes by name: the node's value
    (row,) = final_rows(project, "smoke", 1)
    assert row["state"] == "succeeded" and row["exit_code"] == 0 and row["last_step"] == 7
    assert ray_job_info(cluster, job_id).status == "SUCCEEDED"
    assert run_fipo(project, "logs", f"smoke/{run_dir.name}").stdout == followed.stdout
    # The local secret reached no file of the run, nor Ray's job table.
    assert all(secret not in path.read_text(errors="replace") for path in run_dir.rglob("*") if path.is_file())
    assert ray_job_info(cluster, job_id).runtime_env["env_vars"]["HF_TOKEN"] == "${HF_TOKEN}"


def test_dry_run_shows_the_exact_submission_and_writes_nothing(project, cluster):
    data = project / "data"
    data.mkdir()
    (data / "dapo-math-17k.parquet").write_bytes(b"x" * 1000)
    result = run_fipo(project, "train", "smoke", "--dry-run", "--json", WANDB_API_KEY="wandb-secret", HF_TOKEN="hf-secret",
                      HF_HOME="/data/hf", WANDB_MODE="offline")
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)["ray_job"]
    assert job["address"] == cluster
    assert job["entrypoint"].startswith("python3 -m fipo_cli.run_task --record run ")
    forwarded = job["runtime_env"]["env_vars"]
    assert forwarded.items() >= {"WANDB_MODE": "offline", "WANDB_API_KEY": "${WANDB_API_KEY}",
                                 "HF_TOKEN": "${HF_TOKEN}", "HF_HOME": "/data/hf"}.items()
    assert all(name.startswith(("WANDB_", "HF_", "HUGGING_FACE_")) for name in forwarded)
    by_value = run_fipo(project, "train", "smoke", "--dry-run", "--json", "cluster.ray_forward_secrets=true",
                        WANDB_API_KEY="wandb-secret")
    assert json.loads(by_value.stdout)["ray_job"]["runtime_env"]["env_vars"]["WANDB_API_KEY"] == "***"
    uploads = "\n".join(job["working_dir"])
    assert "data/dapo-math-17k.parquet (1000 bytes" in uploads and "stand_in.py" in uploads
    assert "secret" not in result.stdout + result.stderr
    assert runs(project) == []
    doctor = run_fipo(project, "doctor", "smoke", "--json")
    (check,) = [c for c in json.loads(doctor.stdout) if c["name"] == "Ray cluster"]
    assert check["outcome"] == "pass" and cluster in check["detail"]


def test_inputs_too_large_to_upload_are_refused_by_name(project):
    data = project / "data"
    data.mkdir()
    with open(data / "dapo-math-17k.parquet", "wb") as big:
        big.truncate(300 * 1024**2)  # sparse: 300 MiB to Ray, nothing on this disk
    for args in (("--dry-run",), ()):
        result = run_fipo(project, "train", "smoke", *args)
        assert result.returncode == 2, result.stderr
        assert "data/dapo-math-17k.parquet (300.0 MiB)" in result.stderr and "absolute" in result.stderr
    (project.parent / "outside.parquet").write_bytes(b"x")
    outside = run_fipo(project, "train", "smoke", "data.train_files=[../outside.parquet]")
    assert outside.returncode == 2 and "'../outside.parquet' leaves the project directory" in outside.stderr
    assert runs(project) == []


def test_an_unreachable_cluster_is_a_clear_error_and_leaves_no_run(project):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    result = run_fipo(project, "train", "smoke", f"cluster.ray_address=http://127.0.0.1:{closed}")
    assert result.returncode == 1
    assert f"cannot reach a Ray cluster at http://127.0.0.1:{closed}" in result.stderr
    assert "Traceback" not in result.stderr
    assert runs(project) == []
    swept = run_fipo(project, "sweep", "smoke", "seed=1,2", f"cluster.ray_address=http://127.0.0.1:{closed}")
    assert swept.returncode == 1 and "cannot reach a Ray cluster" in swept.stderr
    assert runs(project) == [] and not (project / "experiments" / "smoke" / "sweeps").exists()
    missing = run_fipo(project, "train", "smoke", "cluster.ray_address=null")
    assert missing.returncode == 2 and "needs the address of a Ray cluster" in missing.stderr


def test_a_cancelled_job_is_recorded_as_cancelled_and_the_record_travels(project, cluster, tmp_path):
    """With cluster.ray_run_root the run writes elsewhere on the cluster: its record travels with the job."""
    storage = tmp_path / "cluster-storage"
    job_id = submitted_job(run_fipo(project, "train", "smoke", "seed=3", f"cluster.ray_run_root={storage}"))
    (run_dir,) = runs(project)
    on_cluster = storage / "smoke" / "runs" / run_dir.name
    wait_for(lambda: (on_cluster / "metrics.jsonl").is_file(), what="the stand-in to start on the cluster")
    assert (on_cluster / "config.yaml").read_text() == (run_dir / "config.yaml").read_text()
    assert status_rows(project, "smoke")[0]["state"] == "running"

    cancelled = run_fipo(project, "cancel", f"smoke/{run_dir.name}")
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"cancelling smoke/{run_dir.name} (job {job_id})" in cancelled.stdout
    wait_for(lambda: ray_job_info(cluster, job_id).status == "STOPPED", what="Ray to stop the job")
    (row,) = status_rows(project, "smoke")
    assert row["state"] == "cancelled"
    assert not (run_dir / "metrics.jsonl").exists()  # the run wrote under the root, not here


def test_a_run_written_elsewhere_is_watched_through_the_job_log(project, cluster, tmp_path):
    """With cluster.ray_run_root nothing of the run reaches this machine's run directory: `fipo watch` follows
    it through the job API, its metrics records carried in the job's log (and left out of `fipo logs`)."""
    storage = tmp_path / "cluster-storage"
    submitted_job(run_fipo(project, "train", "smoke", "seed=1", f"cluster.ray_run_root={storage}"))
    (run_dir,) = runs(project)
    watched = run_fipo(project, "watch", f"smoke/{run_dir.name}", timeout=300)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    (step,) = [line for line in watched.stdout.splitlines() if line.startswith("fipo: step")]
    assert step.startswith("fipo: step 7/20 · elapsed ") and "length 100 (p90 -)" in step
    assert f"fipo: run smoke/{run_dir.name} succeeded" in watched.stderr
    assert not (run_dir / "metrics.jsonl").exists()
    log = run_fipo(project, "logs", f"smoke/{run_dir.name}")
    assert "stand-in joined Ray with 1 GPUs" in log.stdout and "fipo-metrics" not in log.stdout
    assert '{"step": 7' in (storage / "smoke" / "runs" / run_dir.name / "metrics.jsonl").read_text()


def test_a_sweep_runs_one_job_per_run_at_most_max_parallel_at_once(project, cluster):
    result = run_fipo(project, "sweep", "smoke", "seed=1,2,4", "--max-parallel", "1", "--name", "sw", timeout=300)
    assert result.returncode == 0, result.stderr
    job_ids = re.findall(r"Ray job (\S+)", result.stdout)
    assert len(job_ids) == 3
    rows = final_rows(project, "sw", 3)
    assert sorted(r["state"] for r in rows) == ["failed", "succeeded", "succeeded"]
    infos = sorted((ray_job_info(cluster, job_id) for job_id in job_ids), key=lambda info: info.start_time)
    for earlier, later in itertools.pairwise(infos):
        assert later.start_time >= earlier.end_time  # never two at once

    again = run_fipo(project, "sweep", "smoke", "seed=1,2,4", "--max-parallel", "1", "--name", "sw")
    assert again.returncode == 0 and "nothing to launch" in again.stdout
    retried = run_fipo(project, "sweep", "smoke", "seed=1,2,4", "--name", "sw", "--retry-failed")
    assert retried.returncode == 0, retried.stderr
    assert len(re.findall(r"Ray job (\S+)", retried.stdout)) == 1
    manifest = json.loads((project / "experiments" / "smoke" / "sweeps" / "sw" / "sweep.json").read_text())
    assert [len(s["job_ids"]) for s in manifest["submissions"]] == [3, 1]

