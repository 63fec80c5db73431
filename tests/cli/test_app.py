"""The command-line frame: fast help, version, one error path with exit codes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from fipo_cli import __version__

from fipo_run import heavy_imports, run_fipo


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["knobs", "--help"], []])
def test_help_and_version_import_no_heavy_library(argv, tmp_path):
    assert heavy_imports(tmp_path, *argv) == []


def test_version_and_help(tmp_path):
    assert run_fipo(tmp_path, "--version").stdout.strip() == f"fipo {__version__}"
    help_text = run_fipo(tmp_path, "--help").stdout
    assert "knobs" in help_text and "FIPO" in help_text


@pytest.mark.parametrize("command", [["train"], ["sweep"], ["knobs"], ["status"], ["doctor"], ["report"],
                                     ["data", "prepare"], ["logs"], ["cancel"], ["init"]])
def test_help_names_values_in_words_not_python_types(command, tmp_path):
    result = run_fipo(tmp_path, *command, "--help", COLUMNS="200")
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


def test_malformed_assignment_and_unknown_option_are_usage_errors(tmp_path):
    assert run_fipo(tmp_path, "knobs", "gamma").returncode == 2
    assert "'gamma' is not an assignment" in run_fipo(tmp_path, "knobs", "gamma").stderr
    assert run_fipo(tmp_path, "knobs", "--no-such-option").returncode == 2
    assert run_fipo(tmp_path, "no-such-command").returncode == 2


def test_fipo_debug_shows_the_traceback(tmp_path):
    result = run_fipo(tmp_path, "knobs", "gamma=0", FIPO_DEBUG="1")
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

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    assert not any(heavy in core for heavy in ("torch", "verl", "vllm", "wandb", "ray"))
    assert any(dep.startswith("verl==0.9.1") for dep in project["optional-dependencies"]["train"])
    assert project["entry-points"]["verl.plugins"] == {"fipo": "fipo_cli.verl_plugin"}
