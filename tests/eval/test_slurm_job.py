"""`fipo eval --slurm`: the batch script, its command line, and a real job on the running SLURM.

The script's pieces are checked without SLURM; the dry run and a real submission (the tiny
model on the transformers engine, on the CPU of the one-node cluster that .ci/slurm-up.sh
starts) need the daemons and skip without them (fail under FIPO_REQUIRE_SLURM=1).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fipo_cli.core.errors import ConfigError
from fipo_cli.eval import slurm_job
from fipo_cli.eval.request import EvalRequest
from fipo_cli.experiment.config import ClusterConfig
from fipo_cli.runs.layout import RESULTS_FILE

from fipo_run import run_fipo

NASTY = "models/tiny $HOME `touch pwned` \"dq\" 'sq' ; echo x"


SECRET = "secret-value"


FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "PREEMPTED"}


def exec_words(script: str) -> list[str]:
    (line,) = [line for line in script.splitlines() if line.startswith("exec ")]
    return shlex.split(line)[1:]


def bash_n(script: str) -> None:
    result = subprocess.run(["bash", "-n"], check=False, input=script, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def eval_env(project: Path) -> dict[str, str]:
    """No cluster profile, W&B disabled though credentials are set (the script must not carry them), no hub."""
    return {"FIPO_CLUSTER_CONFIG": str(project / "no-such-profile.yaml"), "WANDB_API_KEY": SECRET,
            "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def jobs_in(directory: Path) -> list[str]:
    """The ids of the jobs (any state) whose working directory is ``directory``."""
    out = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i|%Z"], capture_output=True, text=True, check=True)
    return [job for job, _, workdir in (line.partition("|") for line in out.stdout.splitlines())
            if workdir == str(directory)]


def job_state(job_id: str) -> str:
    out = subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"], check=False, capture_output=True, text=True)
    return out.stdout.strip()


def test_script_parses_quotes_every_word_and_holds_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    monkeypatch.chdir(tmp_path)
    options = EvalRequest(benchmark="aime24", model=NASTY, engine="transformers", samples=2, limit=1,
                                    max_tokens=4, chat_template=False, wandb=False)
    cluster = ClusterConfig(
        partition="gpu a", account="acct", qos="high", time_limit="01:00:00", constraint="h100",
        extra_sbatch=["--mem=0", "--exclusive"], setup=["module load cuda/12.4", "export FOO='bar baz'"],
    )
    job = slurm_job.plan_eval_job(options, tmp_path / "out dir $x", cluster)
    bash_n(job.script)
    assert SECRET not in job.script
    assert "WANDB_API_KEY" in job.script  # named, as forwarded by sbatch
    assert exec_words(job.script) == job.argv
    assert job.argv[:4] == [sys.executable, "-m", "fipo_cli", "eval"]
    assert f"--model={NASTY}" in job.argv
    assert f"--out={tmp_path / 'out dir $x'}" in job.argv
    assert "--no-chat-template" in job.argv and "--no-wandb" in job.argv
    assert "--slurm" not in job.argv and "--dry-run" not in job.argv
    lines = job.script.splitlines()
    assert lines[0] == "#!/bin/bash"
    for expected in ("#SBATCH --nodes=1", "#SBATCH --ntasks=1", "#SBATCH --gpus-per-node=1",
                     '#SBATCH --partition="gpu a"', "#SBATCH --account=acct", "#SBATCH --qos=high",
                     "#SBATCH --time=01:00:00", "#SBATCH --constraint=h100", "#SBATCH --mem=0",
                     "#SBATCH --exclusive", "#SBATCH --open-mode=append", "#SBATCH --export=ALL",
                     f"#SBATCH --chdir={tmp_path}", "set -euo pipefail", "module load cuda/12.4",
                     "export FOO='bar baz'"):
        assert expected in lines, expected
    assert f'#SBATCH --output="{tmp_path / "out dir $x" / "slurm-%j.out"}"' in lines
    # Every #SBATCH line comes before the first command, or sbatch ignores it.
    first_command = lines.index("set -euo pipefail")
    assert all(i < first_command for i, line in enumerate(lines) if line.startswith("#SBATCH"))
    # The exec'd words reach the program unchanged, and nothing in them runs.
    exec_line = next(line for line in lines if line.startswith("exec "))
    echoed = subprocess.run(["bash", "-c", "printf '%s\\n'" + exec_line[len("exec"):]],
                            check=False, cwd=tmp_path, capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    assert echoed.stdout.splitlines() == job.argv
    assert not (tmp_path / "pwned").exists()


def test_argv_parses_back_to_the_same_options(tmp_path: Path) -> None:
    import typer.main

    from fipo_cli.cli.app import app

    options = EvalRequest(
        dataset="-odd name.jsonl", problem_key="q", answer_key="a", model="-m/x", engine="vllm",
        tensor_parallel=2, data_parallel=4, samples=8, temperature=0.6, top_p=0.95, max_tokens=128, seed=7, limit=3,
        prompt_format="boxed", chat_template=False, workers=2, time_limit=30.0, wandb=True, wandb_project="p q",
        wandb_entity="e",
    )
    argv = slurm_job.eval_argv(options, tmp_path / "o", python="/py")
    group = typer.main.get_command(app)
    command = group.get_command(group.make_context("fipo", ["eval"]), "eval")
    params = command.make_context("eval", argv[4:]).params
    assert params["dataset"] == "-odd name.jsonl" and params["model"] == "-m/x"
    assert (params["problem_key"], params["answer_key"]) == ("q", "a")
    assert (params["engine"], params["tensor_parallel"], params["data_parallel"]) == ("vllm", 2, 4)
    assert (params["samples"], params["temperature"], params["top_p"], params["max_tokens"]) == (8, 0.6, 0.95, 128)
    assert (params["seed"], params["limit"], params["prompt_format"], params["workers"]) == (7, 3, "boxed", 2)
    assert params["time_limit"] == 30.0  # the job grades with the same limit
    assert params["no_chat_template"] is True and params["wandb"] is True
    assert (params["wandb_project"], params["wandb_entity"]) == ("p q", "e")
    assert params["out"] == tmp_path / "o"
    assert params["slurm"] is False and params["dry_run"] is False and params["target"] is None
    run_argv = slurm_job.eval_argv(EvalRequest(benchmark="aime25", run="exp/r1", step="all"), tmp_path)
    run_params = command.make_context("eval", run_argv[4:]).params
    assert (run_params["target"], run_params["run"], run_params["step"], run_params["model"]) == (
        "aime25", "exp/r1", "all", None)


def test_gpus_follow_the_engine_and_the_parallel_sizes() -> None:
    cluster = ClusterConfig(gpus_per_node=4)

    def gpus(**options) -> int:
        return slurm_job.job_gpus(EvalRequest(benchmark="aime24", model="m", **options), cluster)

    assert gpus() == 4 and gpus(engine="vllm", tensor_parallel=2) == 4
    assert gpus(engine="vllm", tensor_parallel=2, data_parallel=3) == 6
    assert gpus(engine="transformers") == 1
    assert gpus(engine="openai", base_url="http://h/v1") == 0
    job = slurm_job.plan_eval_job(EvalRequest(benchmark="aime24", model="m", engine="openai",
                                                        base_url="http://h/v1"), Path("/tmp/x"), cluster)
    assert "--gpus-per-node" not in job.script


def test_model_uses_the_local_default_directory_and_the_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    profile = tmp_path / "cluster.yaml"
    profile.write_text("partition: gpu\ngpus_per_node: 4\nsetup: ['module load x']\n")
    monkeypatch.setenv("FIPO_CLUSTER_CONFIG", str(profile))
    job = slurm_job.plan(EvalRequest(benchmark="math500", model="Qwen/Qwen2.5-Math-7B"), None)

    assert job.directory == (tmp_path / "evals" / "Qwen_Qwen2.5-Math-7B" / "math500")
    assert job.results == str(job.directory / RESULTS_FILE)
    assert "#SBATCH --partition=gpu" in job.script and "#SBATCH --gpus-per-node=4" in job.script
    assert "\nmodule load x\n" in job.script
    assert not (tmp_path / "evals").exists()  # planning writes nothing
    profile.write_text("gpus_per_node: eight\n")
    with pytest.raises(ConfigError) as error:
        slurm_job.plan(EvalRequest(benchmark="math500", model="m"), None)
    assert "gpus_per_node" in error.value.message and str(profile) in error.value.hint


def test_run_uses_its_config_cluster_and_eval_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "experiments" / "exp" / "runs" / "r1"
    (run_dir / "checkpoints" / "global_step_5" / "actor").mkdir(parents=True)
    (run_dir / "checkpoints" / "global_step_5" / "actor" / "fsdp_config.json").write_text('{"world_size": 1}')
    (run_dir / "config.yaml").write_text(json.dumps(
        {"name": "exp", "model": {"path": "m"}, "cluster": {"partition": "big", "gpus_per_node": 2, "account": "a"}}
    ))
    job = slurm_job.plan(EvalRequest(benchmark="aime24", run="exp/r1"), None)
    assert job.directory == run_dir / "eval" / "aime24"
    assert job.results == str(run_dir / "eval" / "aime24" / "step_5" / "results.json")
    assert "#SBATCH --partition=big" in job.script and "#SBATCH --account=a" in job.script
    assert "#SBATCH --gpus-per-node=2" in job.script
    assert "--run=exp/r1" in job.argv and "--step=latest" in job.argv


def test_dry_run_json_writes_nothing(tmp_path: Path) -> None:
    result = run_fipo(tmp_path, "eval", "aime24", "--model", NASTY, "--engine", "transformers", "--slurm", "--dry-run",
                  "--json", **eval_env(tmp_path))
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["dry_run"] is True and exec_words(plan["sbatch"]) == plan["argv"]
    assert SECRET not in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_bad_slurm_usage_is_refused(tmp_path: Path) -> None:
    assert run_fipo(tmp_path, "eval", "aime24", "--model", "m", "--dry-run", **eval_env(tmp_path)).returncode == 2
    assert run_fipo(tmp_path, "eval", "score", "x.jsonl", "--slurm", **eval_env(tmp_path)).returncode == 2
    missing = run_fipo(tmp_path, "eval", "--dataset", "nope.jsonl", "--model", "m", "--slurm", "--dry-run", **eval_env(tmp_path))
    assert missing.returncode == 2 and "nope.jsonl" in missing.stderr
    top_p = run_fipo(tmp_path, "eval", "aime24", "--model", "m", "--top-p", "0", "--slurm", "--dry-run", **eval_env(tmp_path))
    assert top_p.returncode == 2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slurm
@pytest.mark.slurm
def test_dry_run_prints_the_script_and_submits_nothing(tmp_path: Path) -> None:
    result = run_fipo(tmp_path, "eval", "aime24", "--model", NASTY, "--engine", "transformers", "--samples", "1",
                  "--slurm", "--dry-run", **eval_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("#!/bin/bash\n") and "#SBATCH --job-name=fipo-eval-aime24" in result.stdout
    bash_n(result.stdout)
    assert SECRET not in result.stdout
    assert f"--model={NASTY}" in exec_words(result.stdout)
    assert jobs_in(tmp_path) == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slurm
@pytest.mark.slurm
def test_a_real_job_evaluates_the_tiny_model(tmp_path: Path, tiny_model: Path) -> None:
    model = tmp_path / NASTY  # spaces, $, quotes, backticks and ; in the path the job must load
    shutil.copytree(tiny_model, model)
    result = run_fipo(tmp_path, "eval", "aime24", "--model", NASTY, "--engine", "transformers", "--samples", "1",
                  "--limit", "1", "--max-tokens", "4", "--slurm", **eval_env(tmp_path))
    assert result.returncode == 0, result.stderr
    job_id = re.search(r"SLURM job (\d+)", result.stdout).group(1)
    directory = tmp_path / "evals" / "models_tiny_HOME_touch_pwned_dq_sq_echo_x" / "aime24"  # as a local run's
    log = directory / f"slurm-{job_id}.out"
    results = directory / "results.json"
    assert f"job log:  {log}" in result.stdout and f"results:  {results}" in result.stdout
    (script,) = directory.glob("eval-*.sbatch")
    assert SECRET not in script.read_text()

    deadline = time.monotonic() + 180
    while (state := job_state(job_id)) not in FINAL:
        assert time.monotonic() < deadline, f"job {job_id} still {state or 'unknown'} after 180 s"
        time.sleep(1)
    output = log.read_text() if log.exists() else "(no job log)"
    assert state == "COMPLETED", output
    assert f"fipo: job {job_id}" in output
    assert SECRET not in output
    scores = json.loads(results.read_text())
    assert scores  # the job wrote the evaluation where a local run would have
    samples = [json.loads(line) for line in (directory / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 1
    settings = json.loads((directory / "eval_settings.json").read_text())
    assert settings["model"] == NASTY and settings["max_tokens"] == 4
    assert not (tmp_path / "pwned").exists()
