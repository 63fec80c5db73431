"""`fipo eval`'s request: every bad option refused at once, before a model or a problem set loads."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fipo_cli.core.errors import ConfigError
from fipo_cli.eval.request import EvalRequest

from fipo_run import run_fipo

# "no/such-model" would fail only once the engine tried to load it: each of these fails earlier.
EARLY = ["aime24", "--model", "no/such-model", "--engine", "transformers"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["aime26", "--model", "m"], "aime26"),
        (["aime24"], "pass --model"),
        (["aime24", "--model", "m", "--run", "exp/run"], "not both"),
        (["aime24", "--run", "no-such-exp/run"], "no-such-exp"),
        (["aime24", "--model", "/no/such/model", "--engine", "transformers"], "/no/such/model"),
        (["aime24", "--model", "m", "--samples", "0"], "--samples 0"),
        (["aime24", "--model", "m", "--prompt-format", "chatty"], "--prompt-format 'chatty'"),
        (["score"], "needs the samples FILE"),
    ],
)
def test_bad_input_is_a_clear_usage_error(tmp_path, args, message):
    result = run_fipo(tmp_path, "eval", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "evals").exists()


def test_missing_answer_column_is_named(tmp_path):
    data = tmp_path / "set.jsonl"
    data.write_text(json.dumps({"problem": "1+1?", "solution": "2"}) + "\n")
    result = run_fipo(tmp_path, "eval", "--dataset", str(data), "--model", "m", "--answer-key", "final")
    assert result.returncode == 2 and "--answer-key 'final': no such column" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--temperature", "nan"], "--temperature nan"),
        (["--temperature", "inf"], "--temperature inf"),
        (["--top-p", "nan"], "--top-p nan"),
        (["--max-tokens", "0"], "--max-tokens 0: must be ≥ 1"),
        (["--workers", "0"], "--workers 0"),
        (["--time-limit", "0"], "--time-limit 0.0"),
        (["--samples", "1000000000"], "--samples 1000000000: 30 problems × 1000000000 samples"),
        (["--step", "3"], "--step 3 goes with --run"),
        (["--bench", "aime24"], "--bench go with `fipo eval score FILE`"),
        (["--limit", "0"], "--limit 0"),
        (["--out", "a-file/eval"], "cannot create the evaluation directory"),
    ],
)
def test_bad_options_are_refused_before_the_model_loads(tmp_path, args, message):
    (tmp_path / "a-file").write_text("")
    result = run_fipo(tmp_path, "eval", *EARLY, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "no/such-model" not in result.stderr  # never got as far as the model
    assert not (tmp_path / "evals").exists()


def test_a_missing_grader_dependency_is_found_first_with_a_cpu_safe_hint(tmp_path):
    # sys.modules[name] = None is how Python marks a module as absent: find_spec and import agree.
    code = ("import sys; sys.modules['math_verify'] = None; from fipo_cli.cli.app import main; "
            "sys.argv = ['fipo', 'eval', *sys.argv[1:]]; main()")
    for args in (EARLY, ["score", "x.jsonl", "--grader", "dapo"]):
        (tmp_path / "x.jsonl").write_text(json.dumps({"prompt_id": "p", "sample_index": 0, "response": "r",
                                                      "answer": "1"}) + "\n")
        result = subprocess.run([sys.executable, "-c", code, *args], check=False, cwd=tmp_path, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 1, result.stderr
        assert "needs the math-verify package" in result.stderr and "no/such-model" not in result.stderr
        assert "pip install 'math-verify>=0.9,<0.10'" in result.stderr
        assert "pip install 'fipo[eval]'" not in result.stderr
        assert "Traceback" not in result.stderr


def test_score_help_is_the_score_subcommands_own(tmp_path):
    result = run_fipo(tmp_path, "eval", "score", "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: fipo eval score FILE" in result.stdout
    for option in ("--bench", "--grader", "--workers", "--time-limit", "--json"):
        assert option in result.stdout
    for option in ("--model", "--samples", "--temperature", "--slurm", "--engine"):
        assert option not in result.stdout
    assert "--model" in run_fipo(tmp_path, "eval", "--help").stdout  # eval's own help is whole


def test_a_step_that_is_no_number_latest_or_all_is_refused_naming_the_forms():
    with pytest.raises(ConfigError, match="--step 'last': expected a step number, latest or all"):
        EvalRequest(benchmark="aime24", run="exp/run", step="last")
