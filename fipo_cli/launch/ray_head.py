"""A private Ray head for one local run: started before the trainer, stopped after it.

verl's trainer connects to it through ``RAY_ADDRESS`` instead of starting Ray itself, so the run
gets the resources it needs (logical GPUs for CPU worker slots; Ray counts no GPU on a CPU
machine), its own ports and temp dir (two runs on one machine do not meet), and an end that does
not depend on how the trainer ended: after a crash, a Ctrl-C or a kill, fipo stops the head and
with it every Ray worker it started. The head's output goes to the run's ``ray.log``.

Inside a SLURM job the batch script starts the job's Ray cluster instead (the same options).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from fipo_cli.core.errors import FipoError
from fipo_cli.launch.process import stop_group

#: Logical CPUs a CPU-mode head offers: verl's resource pools ask several per worker bundle, and
#: TransferQueue's actors one each. They are scheduling slots, not cores.
CPU_MODE_CPUS = 16
#: What ``ray start --block`` prints once the node runs.
STARTED = b"Ray runtime started."
_PORTS = 7
_HEAD_POLL_S = 0.1
_STOP_GRACE_S = 30.0
_PR_SET_PDEATHSIG = 1


def head_cpus(device: str) -> int | None:
    """The ``--num-cpus`` of a head for ``device``: None lets Ray count the cores."""
    return max(CPU_MODE_CPUS, os.cpu_count() or 1) if device == "cpu" else None


def ray_executable(python: str) -> str:
    """The ``ray`` command of ``python``'s environment, else whichever ``ray`` is on the PATH."""
    ray = Path(python).with_name("ray")
    return str(ray) if ray.exists() else "ray"


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _stop_with_parent() -> None:
    """In the head's process: get SIGTERM when fipo dies, even by SIGKILL (Linux), so no head outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@contextlib.contextmanager
def private_ray_head(
    *, gpus: int, cpus: int | None, env: Mapping[str, str], log_path: Path, timeout_s: float = 120.0,
    dashboard: bool = False,
) -> Iterator[dict[str, str]]:
    """Run a Ray head on this machine for the duration of the block.

    Args:
        gpus: the GPUs it offers (logical ones on CPU).
        cpus: the CPUs it offers; None lets Ray count them.
        env: its environment (the trainer's).
        log_path: where its output goes (appended).
        timeout_s: how long to wait for it to answer.
        dashboard: also serve Ray's dashboard, and with it the job submission API.

    Yields:
        The variables that point a Ray client at it (``RAY_ADDRESS``, ``RAY_AUTH_MODE``; with
        ``dashboard``, ``RAY_API_SERVER_ADDRESS``, the job API's ``http://`` address).

    Raises:
        FipoError: the head did not start or did not answer in time (its log says why).
    """
    gcs, client, agent, agent_grpc, runtime_env_agent, metrics, dashboard_port = _free_ports(_PORTS)
    address = f"127.0.0.1:{gcs}"
    # Ray's socket paths must stay under ~100 characters: a short temp dir, not the run's.
    temp_dir = tempfile.mkdtemp(prefix="ray-fipo-")
    command = [
        ray_executable(sys.executable), "start", "--head", "--block", "--disable-usage-stats",
        f"--include-dashboard={str(dashboard).lower()}", "--node-ip-address=127.0.0.1", f"--port={gcs}", f"--num-gpus={gpus}",
        *([f"--num-cpus={cpus}"] if cpus is not None else []), f"--temp-dir={temp_dir}",
        f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={runtime_env_agent}",
        f"--metrics-export-port={metrics}",
        *([f"--dashboard-port={dashboard_port}", "--dashboard-host=127.0.0.1"] if dashboard else []),
    ]
    # One auth mode for the head and its clients (a stray ~/.ray/auth_token turns it on for the head only).
    client_env = {"RAY_ADDRESS": address, "RAY_AUTH_MODE": env.get("RAY_AUTH_MODE", "disabled"),
                  **({"RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{dashboard_port}"} if dashboard else {})}
    head_env = {
        **env,
        "RAY_AUTH_MODE": client_env["RAY_AUTH_MODE"],
        "RAY_USAGE_STATS_ENABLED": "0",
        # On SIGTERM a head first drains for 30 s (for Serve replicas on Kubernetes); this one's
        # trainer has exited by then: stop at once.
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
    }
    head_env.pop("RAY_ADDRESS", None)
    head_env.pop("RAY_API_SERVER_ADDRESS", None)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log_start = log.tell()
        try:
            head = subprocess.Popen(command, env=head_env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=_stop_with_parent)
        except OSError as error:
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise FipoError(f"cannot start Ray ({command[0]}): {error.strerror or error}",
                            hint="install the training dependencies: fipo doctor names what is missing") from error
    try:
        _wait_until_started(head, log_path, log_start, timeout_s)
        yield client_env
    finally:
        # SIGTERM to the head's process group (``ray start --block`` then stops its node); SIGKILL if it lingers.
        stop_group(head, grace_s=_STOP_GRACE_S)
        head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _wait_until_started(head: subprocess.Popen, log_path: Path, log_start: int, timeout_s: float) -> None:
    """Until ``ray start --block`` says the node is up (its head and its resources are then registered)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with open(log_path, "rb") as log:
            log.seek(log_start)
            if STARTED in log.read():
                return
        if head.poll() is not None:
            raise FipoError(f"the run's Ray head exited with code {head.returncode} before it started",
                            hint=f"Ray's own output is in {log_path}")
        time.sleep(_HEAD_POLL_S)
    raise FipoError(f"the run's Ray head did not start within {timeout_s:g} s", hint=f"Ray's own output is in {log_path}")

