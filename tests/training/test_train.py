"""`fipo train` as a user runs it, in a temporary project, with the local launcher and a stand-in trainer."""

from __future__ import annotations

import importlib.util
import json
import re
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml

from fipo_run import heavy_imports, run_fipo, start_fipo
from stand_in import stand_in_project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """experiments/smoke from the one-GPU recipe, training with the stand-in (:mod:`stand_in`)."""
    return stand_in_project(tmp_path)


def runs(project: Path) -> list[Path]:
    runs_dir = project / "experiments" / "smoke" / "runs"
    return sorted(runs_dir.iterdir()) if runs_dir.exists() else []


def ray_processes_of(port: str) -> list[str]:
    """Command lines of the Ray processes of the head listening on ``port``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "ray" in command and port in command:
            found.append(command)
    return found


def test_dry_run_json_is_the_exact_plan_and_writes_nothing(project):
    result = run_fipo(project, "train", "smoke", "gamma=0.99", "lr=2e-6", "--dry-run", "--json", WANDB_API_KEY="sekrit-123")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert set(plan) == {"command", "overrides", "env", "run_dir", "sbatch", "ray_job", "warnings", "horizon",
                         "attention", "verl_keys"}
    assert plan["horizon"]["steps"] == 20 and plan["horizon"]["prompts"] == 20 * 32
    assert plan["warnings"] == []
    assert plan["sbatch"] is None and plan["ray_job"] is None  # the local launcher has no batch script, no Ray job
    assert plan["command"][-len(plan["overrides"]):] == plan["overrides"]
    assert "actor_rollout_ref.actor.policy_loss.gamma=0.99" in plan["overrides"]
    assert "actor_rollout_ref.actor.optim.lr=2e-06" in plan["overrides"]
    assert plan["env"]["WANDB_API_KEY"] == "***" and plan["env"]["WANDB_MODE"] == "online"
    assert plan["env"]["VERL_FILE_LOGGER_PATH"] == str(Path(plan["run_dir"]).absolute() / "metrics.jsonl")
    assert "sekrit-123" not in result.stdout + result.stderr
    assert runs(project) == []


def test_knobs_the_official_loss_ignores_are_named_once_in_train_and_sweep(project):
    result = run_fipo(project, "train", "smoke", "algorithm.future_kl_window=64", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    (warning,) = json.loads(result.stdout)["warnings"]
    assert warning.startswith("future_kl_window=64 changes fipo's loss, but the official FIPO loss ignores")
    assert result.stderr.count("warning: future_kl_window=64") == 1
    assert "actor_rollout_ref.actor.policy_loss.future_kl_window=64" in json.loads(result.stdout)["overrides"]
    sweep = run_fipo(project, "sweep", "smoke", "gamma=0.9,0.95", "algorithm.future_kl_average=true", "--dry-run")
    assert sweep.returncode == 0, sweep.stderr
    assert sweep.stderr.count("warning: future_kl_average=True") == 1
    quiet = run_fipo(project, "train", "smoke", "--dry-run")
    assert "warning" not in quiet.stderr


@pytest.mark.skipif(importlib.util.find_spec("verl") is None, reason="verl is not installed")
def test_dry_run_and_doctor_compose_verls_config_without_importing_a_heavy_library(project):
    # tests/verl_adapter/test_compose.py holds the in-process compose to verl's own `main_ppo --cfg job`.
    assert heavy_imports(project, "train", "smoke", "--dry-run") == []
    assert heavy_imports(project, "doctor", "smoke") == []


@pytest.mark.skipif(importlib.util.find_spec("verl") is None, reason="verl is not installed")
def test_dry_run_names_the_override_verls_config_rejects(project):
    # Without fipo's Hydra plugin, verl's config has no FIPO knobs, as with a verl fipo was not built for.
    result = run_fipo(project, "train", "smoke", "--dry-run", FIPO_VERL_KNOBS="0")
    assert result.returncode == 2 and result.stdout == ""
    assert "error: the installed verl's config rejects the override 'actor_rollout_ref.actor.policy_loss." in result.stderr
    assert "Traceback" not in result.stderr
    assert runs(project) == []


def test_dry_run_for_people_shows_command_and_masked_env(project):
    result = run_fipo(project, "train", "smoke", "--dry-run", HF_TOKEN="hf_secret")
    assert result.returncode == 0, result.stderr
    assert "HF_TOKEN=***" in result.stdout and "hf_secret" not in result.stdout
    assert "actor_rollout_ref.actor.policy_loss.loss_mode=future_kl" in result.stdout
    assert runs(project) == []


def test_json_without_dry_run_is_refused_not_ignored(project):
    result = run_fipo(project, "train", "smoke", "--json")
    assert result.returncode == 2 and "--json goes with --dry-run" in result.stderr
    assert runs(project) == []


def test_runs_trained_with_model_resume_under_the_recipes_name(tmp_path):
    from fipo_cli.experiment import config, recipes

    # What `fipo train --model tiny` leaves: experiments/tiny-fipo/runs/RUN with the config it trained.
    run_dir = tmp_path / "experiments" / "tiny-fipo" / "runs" / "20261122-013000"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(config.load(recipes.recipe_path("tiny")).to_yaml())
    result = run_fipo(tmp_path, "train", "tiny-fipo", "--resume", run_dir.name, "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["run_dir"] == str(run_dir)
    assert run_fipo(tmp_path, "train", "tiny-dapo", "--dry-run").returncode == 2  # no runs of it: no experiment


def test_too_few_gpus_stops_before_anything_is_created(project):
    result = run_fipo(project, "train", "smoke")
    assert result.returncode == 1
    assert "needs 1 GPU" in result.stderr and "found 0" in result.stderr
    assert runs(project) == []


def test_local_run_records_everything_and_exits_with_the_trainers_code(project):
    result = run_fipo(project, "train", "smoke", CUDA_VISIBLE_DEVICES="0", WANDB_API_KEY="sekrit-123")
    assert result.returncode == 3
    # Without a terminal: the run's view, a line per step; what the trainer printed is in train.log.
    assert "stand-in trainer started with" not in result.stdout
    steps = [line for line in result.stdout.splitlines() if line.startswith("fipo: step")]
    assert len(steps) == 1 and re.match(r"fipo: step 1/20 · elapsed \S+ · reward - · length 100 \(p90 -\)", steps[0])
    (run_dir,) = runs(project)
    log = (run_dir / "train.log").read_text()
    assert "stand-in trainer started with" in log
    status = json.loads((run_dir / "status.json").read_text())
    assert (status["state"], status["exit_code"], status["launcher"]) == ("failed", 3, "local")
    assert json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])["step"] == 1
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["name"] == "smoke"
    command = json.loads((run_dir / "command.json").read_text())["command"]
    assert command[:2] == [sys.executable, "stand_in.py"]
    assert json.loads((run_dir / "env.json").read_text())["WANDB_API_KEY"] == "***"
    assert (run_dir / "checkpoints").is_dir()
    everything = "".join(p.read_text() for p in run_dir.iterdir() if p.is_file())
    assert "sekrit-123" not in everything
    assert f"fipo: training failed: run smoke/{run_dir.name} exited with code 3 and is recorded as failed" in result.stderr
    assert str(run_dir / "train.log") in result.stderr


def test_verbose_prints_everything_the_trainer_prints(project):
    result = run_fipo(project, "train", "smoke", "--verbose", CUDA_VISIBLE_DEVICES="0", STAND_IN_MODE="ok")
    assert result.returncode == 0, result.stderr
    assert "stand-in trainer started with" in result.stdout and "fipo: step" not in result.stdout


def test_a_failed_run_ends_with_the_error_from_the_log(project):
    result = run_fipo(project, "train", "smoke", CUDA_VISIBLE_DEVICES="0", STAND_IN_MODE="crash")
    assert result.returncode == 1
    # The view shows the trainer's error as it comes, whole; fipo's report repeats its end.
    assert "Traceback (most recent call last):\nValueError: the stand-in broke\n" in result.stdout
    report = result.stderr[result.stderr.index("fipo: training failed"):]
    # The excerpt ends at the error, not at whatever the trainer printed while it shut down.
    assert report.rstrip().endswith("ValueError: the stand-in broke")
    assert "Traceback (most recent call last):" in report and "(shutting down)" not in report


def test_resume_continues_the_same_run_with_the_same_wandb_id(project):
    first = run_fipo(project, "train", "smoke", CUDA_VISIBLE_DEVICES="0", STAND_IN_MODE="ok")
    assert first.returncode == 0, first.stderr
    (run_dir,) = runs(project)
    first_id = json.loads((run_dir / "status.json").read_text())["wandb_run_id"]
    assert f"WANDB_RUN_ID={first_id}" in (run_dir / "train.log").read_text()
    # No credentials in this HOME: W&B ran offline, and fipo says how to upload it.
    assert f"wandb sync {run_dir.absolute() / 'wandb'}/offline-run-*" in first.stderr
    env = json.loads((run_dir / "env.json").read_text())
    assert (env["WANDB_MODE"], env["WANDB_JOB_TYPE"], env["WANDB_TAGS"]) == ("offline", "train", "fipo,Qwen2.5-0.5B-Instruct")
    tracking_config = json.loads((run_dir / "tracking_config.json").read_text())
    assert tracking_config["fipo"]["name"] == "smoke"
    assert tracking_config["fipo_verl_overrides"] == json.loads((run_dir / "command.json").read_text())["command"][2:]

    again = run_fipo(project, "train", "smoke", "--resume", run_dir.name, CUDA_VISIBLE_DEVICES="0", STAND_IN_MODE="ok")
    assert again.returncode == 0, again.stderr
    assert runs(project) == [run_dir]
    assert (run_dir / "train.log").read_text().count(f"WANDB_RUN_ID={first_id}") == 2  # appended to
    # verl's logger truncates metrics.jsonl when it starts: the first attempt's steps were kept aside.
    assert (run_dir / "metrics.earlier.jsonl").read_text().count('"step": 1') == 1
    assert (run_dir / "metrics.jsonl").read_text().count('"step": 1') == 1
    assert json.loads((run_dir / "status.json").read_text())["state"] == "succeeded"

    missing = run_fipo(project, "train", "smoke", "--resume", "19990101-000000")
    assert missing.returncode == 2 and run_dir.name in missing.stderr


def test_ctrl_c_reaches_the_trainer_and_the_run_is_marked_cancelled(project):
    ready = project / "ready"
    process = start_fipo(project, "train", "smoke", CUDA_VISIBLE_DEVICES="0", STAND_IN_MODE="wait",
                         STAND_IN_READY=str(ready))
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert ready.exists(), process.communicate(timeout=30)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    (run_dir,) = runs(project)
    out = (run_dir / "train.log").read_text()
    assert "got SIGINT" in out
    assert json.loads((run_dir / "status.json").read_text())["state"] == "cancelled"
    assert f"continue it: fipo train smoke --resume {run_dir.name}" in err
    # The run's private Ray head was up, and nothing of it is left.
    port = re.search(r"^RAY_ADDRESS=127\.0\.0\.1:(\d+)$", out, re.M).group(1)
    assert ray_processes_of(port) == []
