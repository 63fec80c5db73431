"""The batch script's wait for Ray: a real Ray head on this machine, and nodes that never join."""

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
    assert "Ray cluster ready" in result.stdout and "1 node(s) × 2 GPUs" in result.stdout


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
