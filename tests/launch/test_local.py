"""The local launcher's record of who runs a run: a `fipo train` that died no longer leaves it `running`.

`fipo train` runs for real (the stand-in trainer of :mod:`stand_in`, inside the run's own Ray head)
and is killed for real, with SIGKILL, as the kernel's OOM killer or a closed session would.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from fipo_run import run_fipo, start_fipo, wait_for
from stand_in import stand_in_project

pytestmark = pytest.mark.ray  # the local launcher starts a Ray head of the run's own


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return stand_in_project(tmp_path)


def start_training(project: Path, mode: str) -> tuple[subprocess.Popen, int, Path]:
    """`fipo train smoke` in the background until its stand-in trainer waits; (fipo, the trainer's pid, the run)."""
    ready = project / f"ready-{mode}"
    fipo = start_fipo(project, "train", "smoke", CUDA_VISIBLE_DEVICES="0", STAND_IN_MODE=mode,
                      STAND_IN_READY=str(ready))
    trainer = int(wait_for(lambda: ready.is_file() and ready.read_text(), timeout=240, what="the trainer to start"))
    (run_dir,) = [path.parent for path in (project / "experiments" / "smoke" / "runs").glob("*/status.json")
                  if json.loads(path.read_text())["state"] == "running"]
    return fipo, trainer, run_dir


def kill_group(pid: int) -> None:
    """The trainer leads its own process group (fipo starts it in a session of its own)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def status_of(project: Path, run_dir: Path) -> dict:
    result = run_fipo(project, "status", f"smoke/{run_dir.name}", "--json")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    return row


def test_a_killed_launchers_run_is_failed_on_its_host_unknown_elsewhere_and_resumes(project):
    fipo, trainer, run_dir = start_training(project, "wait")
    try:
        record = json.loads((run_dir / "status.json").read_text())
        assert (record["runner_host"], record["runner_pid"]) == (socket.gethostname(), fipo.pid)
        assert status_of(project, run_dir)["state"] == "running"  # alive: nothing changes
        fipo.kill()
        fipo.communicate()
    finally:
        kill_group(trainer)
    assert json.loads((run_dir / "status.json").read_text())["state"] == "running"  # nobody recorded the end

    # Seen from another host (the record as fipo there wrote it): nobody here can tell; nothing is written.
    elsewhere = {**record, "runner_host": "gpu-box-7"}
    (run_dir / "status.json").write_text(json.dumps(elsewhere))
    row = status_of(project, run_dir)
    assert row["state"] == "unknown" and "gpu-box-7" in row["reason"]
    assert json.loads((run_dir / "status.json").read_text()) == elsewhere
    shown = run_fipo(project, "status", "smoke")
    assert f"smoke/{run_dir.name} unknown: fipo runs it on gpu-box-7 (pid {fipo.pid})" in shown.stdout
    refused = run_fipo(project, "train", "smoke", "--resume", run_dir.name, CUDA_VISIBLE_DEVICES="0")
    assert refused.returncode == 2 and "is running" in refused.stderr and "gpu-box-7" in refused.stderr

    # On its own host: the launcher is gone, so the run failed, and says why.
    (run_dir / "status.json").write_text(json.dumps(record))
    row = status_of(project, run_dir)
    assert row["state"] == "failed"
    assert row["reason"] == (f"launcher died (fipo, pid {fipo.pid} on {socket.gethostname()}): "
                             "killed or crashed, no exit recorded")
    assert json.loads((run_dir / "status.json").read_text())["state"] == "failed"  # recorded this time
    assert "launcher died" in run_fipo(project, "status", "smoke").stdout

    resumed = run_fipo(project, "train", "smoke", "--resume", run_dir.name, CUDA_VISIBLE_DEVICES="0",
                       STAND_IN_MODE="ok")
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads((run_dir / "status.json").read_text())
    assert record["state"] == "succeeded" and record["reason"] is None and record["resumed_from"] == run_dir.name
    assert (run_dir / "metrics.earlier.jsonl").read_text().count('"step": 1') == 1


def test_a_signal_the_launcher_received_before_it_died_is_named(project):
    """SIGTERM reaches a trainer that does not stop; the user then kills fipo outright."""
    fipo, trainer, run_dir = start_training(project, "stubborn")
    try:
        fipo.send_signal(signal.SIGTERM)
        wait_for(lambda: json.loads((run_dir / "status.json").read_text())["stop_signal"] == "SIGTERM",
                 timeout=30, what="fipo to record the signal")
        time.sleep(0.5)
        assert fipo.poll() is None  # still waiting for its trainer
        fipo.kill()
        fipo.communicate()
    finally:
        kill_group(trainer)
    row = status_of(project, run_dir)
    assert row["state"] == "failed"
    assert row["reason"] == f"launcher died (fipo, pid {fipo.pid} on {socket.gethostname()}); it had received SIGTERM"

