"""The batch script's questions to its Ray cluster, asked of a real Ray head here: are all nodes in, which left."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pieces

pieces.require('ray')


# A fresh HOME: a ~/.ray/auth_token left by other Ray use would switch the head to token auth.
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "HOME": "/tmp/fipo-ray-wait-home"}


def wait(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fipo_cli.launch.ray_wait", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **RAY_ENV})


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory) -> str:
    """A Ray head with 2 GPUs, started the way the batch script starts it."""
    port = 39000 + os.getpid() % 500 * 10
    ray = Path(sys.executable).with_name("ray")
    temp = tmp_path_factory.mktemp("ray")
    head = subprocess.Popen(
        [str(ray), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-gpus=2", "--num-cpus=1",
         "--include-dashboard=false", f"--ray-client-server-port={port + 1}", f"--dashboard-agent-listen-port={port + 2}",
         f"--dashboard-agent-grpc-port={port + 3}", f"--runtime-env-agent-port={port + 4}",
         f"--metrics-export-port={port + 5}", f"--temp-dir={temp}", "--disable-usage-stats", "--block"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **RAY_ENV, "HOME": str(temp)},
    )
    yield f"127.0.0.1:{port}"
    head.terminate()
    head.wait(timeout=60)


def test_a_complete_cluster_is_reported_ready(ray_head):
    result = wait("--address", ray_head, "--gpus-per-node", "2", "--timeout", "90", socket.gethostname())
    assert result.returncode == 0, result.stderr
    assert "Ray cluster ready" in result.stdout and "1 node × 2 GPUs each" in result.stdout


def test_nodes_that_never_join_are_named_after_the_timeout(ray_head):
    started = time.monotonic()
    result = wait("--address", ray_head, "--gpus-per-node", "2", "--timeout", "8", socket.gethostname(), "gpu-node-17")
    assert result.returncode == 1
    assert "nodes that did not join: gpu-node-17" in result.stderr
    assert f"joined: {socket.gethostname()} (2 GPUs)" in result.stderr
    assert time.monotonic() - started < 60


def test_missing_gpus_are_reported_when_every_node_joined(ray_head):
    result = wait("--address", ray_head, "--gpus-per-node", "8", "--timeout", "5", socket.gethostname())
    assert result.returncode == 1 and "2 of 8 GPUs" in result.stderr


def test_a_head_that_died_is_not_waited_for():
    dead = subprocess.Popen(["true"])
    dead.wait()
    started = time.monotonic()
    result = wait("--address", "127.0.0.1:1", "--gpus-per-node", "1", "--timeout", "300", "--head-pid", str(dead.pid),
                  "node-a")
    assert result.returncode == 1 and f"the Ray head (process {dead.pid}) exited" in result.stderr
    assert time.monotonic() - started < 30


def test_a_cluster_that_never_came_up_is_recorded_in_the_run(ray_head, tmp_path):
    from fipo_cli.runs.status import RunStatus, read_status, write_status

    write_status(tmp_path, RunStatus(state="running", launcher="slurm", job_id="17"))
    result = wait("--address", ray_head, "--gpus-per-node", "2", "--timeout", "3", "--run-dir", str(tmp_path),
                  socket.gethostname(), "gpu-node-17")
    assert result.returncode == 1
    status = read_status(tmp_path)
    assert (status.state, status.exit_code, status.job_id) == ("failed", 1, "17") and status.finished_at
    assert status.reason == (f"the Ray cluster is incomplete after 3 s: nodes that did not join: gpu-node-17; "
                             f"joined: {socket.gethostname()} (2 GPUs)")


def lost(address: str, nodes: list[str], settle_s: float) -> tuple[int, str, float]:
    """``--lost-within`` as the job's task asks it: exit code, output, and how long it took."""
    started = time.monotonic()
    result = wait("--address", address, "--lost-within", str(settle_s), *nodes)
    return result.returncode, result.stdout.strip(), time.monotonic() - started


def test_lost_nodes_names_a_node_gone_at_once_and_waits_out_a_cluster_that_is_whole(ray_head):
    assert wait("--address", ray_head, "--gpus-per-node", "2", "--timeout", "120", socket.gethostname()).returncode == 0
    code, said, took = lost(ray_head, [socket.gethostname(), "gpu-node-17"], settle_s=60)
    assert (code, said) == (3, "lost: gpu-node-17") and took < 60  # it did not wait the settle time out
    code, said, took = lost(ray_head, [socket.gethostname()], settle_s=3)
    assert (code, said) == (0, "") and took >= 3
    assert lost("127.0.0.1:1", ["node-a"], settle_s=2)[:2] == (1, "")  # nothing answers: nothing to tell


def test_a_worker_whose_ray_start_exited_is_named_at_once(ray_head):
    dead = subprocess.Popen(["true"])
    dead.wait()
    started = time.monotonic()
    result = wait("--address", ray_head, "--gpus-per-node", "2", "--timeout", "300", "--worker-pid",
                  f"gpu-node-17={dead.pid}", socket.gethostname(), "gpu-node-17")
    assert result.returncode == 1
    assert "the Ray worker of gpu-node-17 exited before it joined" in result.stderr
    assert time.monotonic() - started < 150  # not the 300 s timeout
