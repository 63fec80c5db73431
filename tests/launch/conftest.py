"""What the launcher tests share: one Ray cluster with the job API for the whole session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import pieces


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A Ray head with the job API, offering one (logical) GPU; yields its dashboard address.

    Its nodes hold a secret of their own (``HF_TOKEN``), as a cluster's would.
    """
    pieces.require("ray")
    from fipo_cli.launch.ray_head import private_ray_head

    log = tmp_path_factory.mktemp("ray-cluster") / "ray.log"
    # The jobs' `python3` is this environment's, as on a cluster whose image has fipo installed.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "FIPO_CACHE_DIR": str(tmp_path_factory.mktemp("cluster-fipo-cache")),
           "HF_TOKEN": "cluster-side-token"}
    with private_ray_head(gpus=1, cpus=16, env=env, log_path=log, dashboard=True) as client_env:
        yield client_env["RAY_API_SERVER_ADDRESS"]
