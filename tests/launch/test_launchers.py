"""One suite every launcher must pass: local, SLURM and Ray, each for real.

The launcher interface (fipo_cli/launch/base.py) promises the same six things whatever runs the
trainer, and a user sees them through the same commands: ``--dry-run`` plans a submission and
writes nothing; ``fipo train`` / ``fipo sweep`` submit; ``fipo status`` refreshes each run's state
from whoever runs it; ``fipo logs`` prints and follows a run's output; ``fipo watch`` shows its
progress view; ``fipo cancel`` stops a run or says why it cannot. The local launcher runs here (a
private Ray head per run), the SLURM one on the running cluster (.ci/slurm-up.sh), the Ray one on a
Ray head the tests start
(tests/launch/conftest.py). The trainer is a stand-in that joins the run's Ray cluster, counts its
GPUs, logs a step and exits as its seed says: 2 fails (exit 3), 3 waits to be stopped, else 0.
"""

from __future__ import annotations

import json
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from fipo_run import run_fipo, start_fipo, wait_for

STAND_IN = textwrap.dedent(
    """
    import json, os, sys, time
    import ray
    ray.init(log_to_driver=False)
    gpus = ray.cluster_resources().get("GPU", 0)
    ray.shutdown()
    print(f"stand-in joined Ray with {gpus:g} GPUs", flush=True)
    run_dir = os.path.dirname(os.environ["VERL_FILE_LOGGER_PATH"])
    with open(os.environ["VERL_FILE_LOGGER_PATH"], "a") as metrics:
        metrics.write(json.dumps({"step": 7, "data": {"response_length/mean": 100.0}}) + "\\n")
    if "data.seed=3" in sys.argv:
        open(os.path.join(run_dir, "stand-in.ready"), "w").close()
        time.sleep(300)
    sys.exit(3 if "data.seed=2" in sys.argv else 0)
    """
)
LAUNCHERS = ["local", pytest.param("slurm", marks=pytest.mark.slurm), pytest.param("ray", marks=pytest.mark.ray)]
FINAL = ("succeeded", "failed", "cancelled", "timeout")
#: The local launcher's runs see one GPU here (the stand-in needs none; the check before a run does).
ONE_GPU = {"CUDA_VISIBLE_DEVICES": "0"}


@pytest.fixture(params=LAUNCHERS)
def launcher(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def project(tmp_path: Path, launcher: str, request: pytest.FixtureRequest) -> Path:
    """experiments/smoke from the one-GPU recipe, launched by ``launcher``, training with the stand-in."""
    assert run_fipo(tmp_path, "init", "smoke", "--model", "qwen2.5-0.5b").returncode == 0
    (tmp_path / "stand_in.py").write_text(STAND_IN)
    config_file = tmp_path / "experiments" / "smoke" / "fipo.yaml"
    text = config_file.read_text().replace("  seed: 42", f"  seed: 42\n  entrypoint: [{sys.executable}, stand_in.py]")
    cluster = f"  launcher: {launcher}\n"
    if launcher == "ray":
        cluster += f"  ray_address: {request.getfixturevalue('ray_cluster')}\n"
    if launcher == "slurm":
        cluster += "  ray_start_timeout: 60\n"
    text = text.replace("  launcher: local ", cluster + "  # ", 1)
    assert f"launcher: {launcher}" in text
    config_file.write_text(text)
    return tmp_path


def rows(project: Path, target: str = "smoke") -> list[dict]:
    result = run_fipo(project, "status", target, "--json", **ONE_GPU)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def finished(project: Path, target: str, count: int) -> list[dict]:
    """The runs of ``target`` once ``count`` of them are finished, as `fipo status` refreshes them."""
    def done():
        found = rows(project, target)
        return found if sum(row["state"] in FINAL for row in found) == count else None
    return wait_for(done, timeout=240, what=f"{count} runs of {target} to finish")


def test_a_dry_run_plans_the_submission_and_writes_nothing(project, launcher):
    result = run_fipo(project, "train", "smoke", "--dry-run", "--json", **ONE_GPU)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["run_dir"].startswith(str(project / "experiments" / "smoke" / "runs"))
    assert (plan["sbatch"] is not None) == (launcher == "slurm")  # the batch script it would sbatch
    assert (plan["ray_job"] is not None) == (launcher == "ray")  # the Ray job it would submit
    if plan["sbatch"]:
        assert f"{plan['run_dir']}" in plan["sbatch"] and "fipo_cli.run_task" in plan["sbatch"]
    if plan["ray_job"]:
        assert plan["ray_job"]["entrypoint"].endswith(plan["run_dir"])
    assert not (project / "experiments" / "smoke" / "runs").exists()


def test_runs_are_submitted_refreshed_and_their_logs_printed(project, launcher):
    """A sweep of two runs, one trainer succeeding and one failing: each launcher records both as they ended."""
    result = run_fipo(project, "sweep", "smoke", "trainer.seed=1,2", "--name", "pair", **ONE_GPU)
    runs_dir = project / "experiments" / "smoke" / "runs"
    # The local launcher runs them here and exits with the worst code; the others submit and return.
    assert result.returncode == (3 if launcher == "local" else 0), result.stderr
    done = {row["run"]: row for row in finished(project, "pair", 2)}
    assert sorted(done) == ["pair-000-seed1", "pair-001-seed2"]
    succeeded, failed = done["pair-000-seed1"], done["pair-001-seed2"]
    assert (succeeded["state"], succeeded["exit_code"], succeeded["last_step"]) == ("succeeded", 0, 7)
    assert (failed["state"], failed["exit_code"]) == ("failed", 3)
    for row in done.values():
        assert row["launcher"] == launcher and (row["job_id"] is None) == (launcher == "local")
        status = json.loads((runs_dir / row["run"] / "status.json").read_text())
        assert status["sweep"] == "pair" and status["launcher"] == launcher

    log = run_fipo(project, "logs", "smoke/pair-000-seed1", **ONE_GPU)
    assert log.returncode == 0, log.stderr
    assert "stand-in joined Ray with 1 GPUs" in log.stdout  # the run's own Ray cluster, with its GPU
    followed = run_fipo(project, "logs", "smoke/pair-001-seed2", "-f", **ONE_GPU)  # a finished run: printed, then done
    assert followed.returncode == 0 and "stand-in joined Ray" in followed.stdout
    # `fipo watch`: the run's view from its metrics file, then how it ended (exit code 1 for the failed one).
    for run, code, ended in (("pair-000-seed1", 0, "succeeded (last step 7)"), ("pair-001-seed2", 1, "exited with code 3")):
        watched = run_fipo(project, "watch", f"smoke/{run}", **ONE_GPU)
        assert watched.returncode == code, watched.stdout + watched.stderr
        (step,) = [line for line in watched.stdout.splitlines() if line.startswith("fipo: step")]
        assert step.startswith("fipo: step 7/20 · ") and "length 100 (p90 -)" in step
        assert ended in watched.stderr
    again = run_fipo(project, "cancel", "pair", **ONE_GPU)
    assert again.returncode == 0 and "nothing to cancel" in again.stdout


def test_a_running_run_is_cancelled_or_told_why_not(project, launcher):
    runs_dir = project / "experiments" / "smoke" / "runs"
    # The local launcher trains in the foreground, as a user's terminal would hold it.
    training = start_fipo(project, "train", "smoke", "trainer.seed=3", **ONE_GPU)
    try:
        run_dir = wait_for(lambda: next((path for path in runs_dir.glob("*/stand-in.ready")), None),
                           timeout=240, what="the trainer to start").parent
        (row,) = rows(project)
        assert row["state"] == "running"
        cancelled = run_fipo(project, "cancel", f"smoke/{run_dir.name}", **ONE_GPU)
        assert cancelled.returncode == 0, cancelled.stderr
        if launcher == "local":
            assert "a local run; stop it with Ctrl-C in its terminal" in cancelled.stderr
            assert rows(project)[0]["state"] == "running"
            training.send_signal(signal.SIGINT)  # what Ctrl-C in that terminal does
        else:
            assert f"cancelling smoke/{run_dir.name} (job {row['job_id']})" in cancelled.stdout
        (row,) = finished(project, "smoke", 1)
        assert row["state"] == "cancelled"
        training.wait(timeout=120)
    finally:
        if training.poll() is None:
            training.kill()
            training.wait()
