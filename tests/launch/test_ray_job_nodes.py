"""`fipo train --launcher ray` to a Ray cluster of two nodes: its head in one network namespace, a worker in the other.

The nodes are those of .ci/slurm-up.sh's cluster (:mod:`cluster_nodes`), used here without SLURM:
the Ray cluster is started by hand, as an administrator starts one on two machines, and fipo
submits to its job API from outside both. Where verl's workers ran is read from the processes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import cluster_nodes
from fipo_run import run_fipo

pytestmark = [pytest.mark.multinode, pytest.mark.ray]

GCS_PORT, DASHBOARD_PORT = 6379, 8265  # each node has its own ports: Ray's defaults


@pytest.fixture(scope="module")
def two_node_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A Ray head on n1 (with the job API) and a worker on n2, one logical GPU each; yields the job API's address."""
    home = tmp_path_factory.mktemp("ray-home")  # no ~/.ray/auth_token: one auth mode, off
    env = {**os.environ, "HOME": str(home), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           # The job's `python3` is this environment's, as on a cluster whose image has fipo installed.
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "FIPO_CACHE_DIR": os.environ.get("FIPO_TEST_CACHE") or str(tmp_path_factory.mktemp("cluster-cache")),
           "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    env.pop("RAY_ADDRESS", None)
    ray = str(Path(sys.executable).with_name("ray"))
    log = tmp_path_factory.mktemp("ray-logs")
    with open(log / "head.log", "wb") as head_log, open(log / "worker.log", "wb") as worker_log:
        yield from _run_cluster(env, ray, head_log, worker_log, log)


def _run_cluster(env, ray, head_log, worker_log, log):
    head_ip, worker_ip = cluster_nodes.address("n1"), cluster_nodes.address("n2")
    common = ["--block", "--disable-usage-stats", "--num-gpus=1", "--num-cpus=16"]
    head = subprocess.Popen(
        cluster_nodes.on_node("n1", ray, "start", "--head", f"--node-ip-address={head_ip}", f"--port={GCS_PORT}",
                              "--include-dashboard=true", f"--dashboard-host={head_ip}",
                              f"--dashboard-port={DASHBOARD_PORT}", *common),
        env=env, stdout=head_log, stderr=subprocess.STDOUT, start_new_session=True)
    worker = subprocess.Popen(
        cluster_nodes.on_node("n2", ray, "start", f"--address={head_ip}:{GCS_PORT}", f"--node-ip-address={worker_ip}",
                              *common),
        env=env, stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # Asked from the head node: a Ray driver must run on a node of the cluster.
        ready = subprocess.run(cluster_nodes.on_node("n1", sys.executable, "-m", "fipo_cli.launch.ray_wait",
                                                     f"--address={head_ip}:{GCS_PORT}", "--gpus-per-node=1",
                                                     "--timeout=240", "n1", "n2"),
                               env=env, capture_output=True, text=True, timeout=300, check=False)
        assert ready.returncode == 0, ready.stderr + (log / "head.log").read_text()[-2000:]
        yield f"http://{head_ip}:{DASHBOARD_PORT}"
    finally:
        for process in (worker, head):  # SIGTERM to `ray start --block` stops its node
            os.killpg(process.pid, signal.SIGTERM)
        for process in (worker, head):
            process.wait(timeout=90)


@pytest.mark.verl
@pytest.mark.training
def test_a_ray_job_trains_the_tiny_recipe_across_both_nodes(tmp_path, two_node_cluster):
    def fipo(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return run_fipo(tmp_path, *args, timeout=timeout, unset=("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "WANDB_*"),
                        WANDB_MODE="offline", RAY_AUTH_MODE="disabled")

    assert fipo("init", "tiny", "--model", "tiny").returncode == 0
    with cluster_nodes.Sampler() as seen:
        submitted = fipo("train", "tiny", "--launcher", "ray", f"cluster.ray_address={two_node_cluster}", "nodes=2",
                         "trainer.total_training_steps=2", "trainer.save_freq=2")
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        job_id = re.search(r"as Ray job (\S+) to ", submitted.stdout).group(1)
        (run_dir,) = (tmp_path / "experiments" / "tiny" / "runs").iterdir()
        followed = fipo("logs", f"tiny/{run_dir.name}", "-f", timeout=1500)
    result = fipo("status", "tiny", "--json")
    (row,) = json.loads(result.stdout)
    assert row["state"] == "succeeded", followed.stdout[-3000:]
    cluster_nodes.assert_trained_on_both_nodes(seen)
    assert re.search(r"step:2 - ", followed.stdout)
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2] and row["last_step"] == 2 and row["job_id"] == job_id
    assert (run_dir / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip() == "2"
    report = fipo("report", "tiny", "--json")
    assert report.returncode == 0, report.stderr
    assert run_dir.name in (tmp_path / json.loads(report.stdout)["html"]).read_text()
