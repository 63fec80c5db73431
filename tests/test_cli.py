"""The command-line frame: fast help, version, one error path with exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from fipo_cli import __version__

from fipo_run import heavy_imports


def fipo(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fipo_cli", *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, "FIPO_DEBUG": "", **env},
    )


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["knobs", "--help"], []])
def test_help_and_version_import_no_heavy_library(argv, tmp_path):
    assert heavy_imports(tmp_path, *argv) == []


def test_version_and_help():
    assert fipo("--version").stdout.strip() == f"fipo {__version__}"
    help_text = fipo("--help").stdout
    assert "knobs" in help_text and "FIPO" in help_text


@pytest.mark.parametrize("command", [["train"], ["sweep"], ["knobs"], ["status"], ["doctor"], ["report"],
                                     ["data", "prepare"], ["logs"], ["cancel"], ["init"]])
def test_help_names_values_in_words_not_python_types(command):
    result = fipo(*command, "--help", COLUMNS="200")
    assert result.returncode == 0, result.stderr
    usage = next(line for line in result.stdout.splitlines() if "Usage:" in line)
    assert "[[" not in usage and "...]..." not in usage and "...}..." not in usage, usage
    assert "<bool>" not in result.stdout and "<list[" not in result.stdout
    if command == ["train"]:
        assert usage.split("train ", 1)[1].strip() == "[OPTIONS] [EXP] [KEY=VALUE]..."
        assert "<int>" not in result.stdout and "<str>  Train straight from this model's recipe." in result.stdout


def test_console_script_is_installed():
    script = shutil.which("fipo", path=os.path.dirname(sys.executable)) or shutil.which("fipo")
    assert script is not None
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == f"fipo {__version__}"


def test_knobs_json_resolves_official_names():
    result = fipo("knobs", "future_kl_clip_ratio=0.2", "future_kl_clip_high_only=false", "tau=16", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["settings"]["influence_weight_low"] == pytest.approx(0.8)
    assert payload["settings"]["gamma"] == pytest.approx(2 ** (-1 / 16))
    assert payload["overrides"] == [
        "actor_rollout_ref.actor.policy_loss.loss_mode=future_kl",
        "actor_rollout_ref.actor.policy_loss.future_kl_clip_ratio=0.2",
        "actor_rollout_ref.actor.policy_loss.future_kl_clip_high_only=false",
        "actor_rollout_ref.actor.policy_loss.decay_rate=16",
    ]


def test_bad_knobs_exit_2_with_every_problem_and_no_traceback():
    result = fipo("knobs", "gamma=1.5", "future_kl_window=0", "eps_f_low=-0.1")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "gamma=1.5: must lie in (0, 1]" in result.stderr
    assert "future_kl_window=0" in result.stderr
    assert "future_kl_clip_low=-0.1: must be ≥ 0" in result.stderr
    assert "hint:" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_knob_suggests_the_closest_name():
    result = fipo("knobs", "decay_rat=3")
    assert result.returncode == 2
    assert "'decay_rat' is not a FIPO knob; did you mean 'decay_rate'?" in result.stderr


def test_malformed_assignment_and_unknown_option_are_usage_errors():
    assert fipo("knobs", "gamma").returncode == 2
    assert "'gamma' is not an assignment" in fipo("knobs", "gamma").stderr
    assert fipo("knobs", "--no-such-option").returncode == 2
    assert fipo("no-such-command").returncode == 2


def test_fipo_debug_shows_the_traceback():
    result = fipo("knobs", "gamma=0", FIPO_DEBUG="1")
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "gamma=0: must lie in (0, 1]" in result.stderr


def test_runtime_failure_exits_1_with_the_message_once(monkeypatch, capsys):
    from fipo_cli.cli import app as cli
    from fipo_cli.core.errors import FipoError

    def failing_app() -> None:
        raise FipoError("the trainer exited with code 3", hint="see the run's log")

    monkeypatch.setattr(cli, "app", failing_app)
    monkeypatch.delenv("FIPO_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.count("the trainer exited with code 3") == 1
    assert "hint: see the run's log" in err and "Traceback" not in err


def test_core_install_pulls_no_gpu_stack():
    from pathlib import Path

    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    assert not any(heavy in core for heavy in ("torch", "verl", "vllm", "wandb", "ray"))
    assert any(dep.startswith("verl==0.9.1") for dep in project["optional-dependencies"]["train"])
    assert project["entry-points"]["verl.plugins"] == {"fipo": "fipo_cli.verl_plugin"}
