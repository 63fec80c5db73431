"""`fipo eval` end to end with the transformers engine on a tiny local model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fipo_run import run_fipo, start_fipo


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def finished(tiny_model, tmp_path_factory) -> Path:
    """One complete evaluation: 3 AIME problems × 4 samples."""
    work = tmp_path_factory.mktemp("eval")
    result = run_fipo(work, "eval", "aime24", "--model", str(tiny_model), "--engine", "transformers", "--samples", "4",
                       "--max-tokens", "12", "--limit", "3", "--seed", "7", "--out", "full", "--json")
    assert result.returncode == 0, result.stderr
    return work


def test_results_and_samples_hold_what_the_paper_reports(finished):
    samples = lines(finished / "full" / "samples.jsonl")
    assert len(samples) == 12
    assert {(s["prompt_id"], s["sample_index"]) for s in samples} == {
        (pid, i) for pid in ("2024-I-1", "2024-I-2", "2024-I-3") for i in range(4)
    }
    first = samples[0]
    assert first["answer"] == "204" and first["finish_reason"] in ("stop", "length")
    assert 'Remember to put your answer on its own line after "Answer:".' in first["prompt"]
    assert set(first["verdicts"]) == {"dapo", "math-verify"}
    results = json.loads((finished / "full" / "results.json").read_text())
    assert results["settings"]["samples"] == 4 and results["primary_grader"] == "dapo"
    dapo = results["graders"]["dapo"]
    assert (dapo["n"], dapo["problems"]) == (4, 3)
    assert set(dapo["pass@k"]) == {"1", "2", "4"}
    assert results["lengths"]["samples"] == 12 and results["lengths"]["max"] <= 12


def test_an_interrupted_evaluation_resumes_and_ends_with_the_same_samples(finished, tiny_model):
    full = finished / "full"
    cut = finished / "cut"
    cut.mkdir()
    shutil.copy(full / "eval_settings.json", cut)
    kept = (full / "samples.jsonl").read_text().splitlines()[:5]
    # A killed run: 5 samples on disk, the 6th cut mid-line.
    (cut / "samples.jsonl").write_text("\n".join(kept) + "\n" + kept[0][:25])
    result = run_fipo(finished, "eval", "aime24", "--model", str(tiny_model), "--engine", "transformers", "--samples", "4",
                       "--max-tokens", "12", "--limit", "3", "--seed", "7", "--out", "cut", "--json")
    assert result.returncode == 0, result.stderr
    def by_key(rows):
        return {(r["prompt_id"], r["sample_index"]): r["response"] for r in rows}
    assert by_key(lines(cut / "samples.jsonl")) == by_key(lines(full / "samples.jsonl"))
    assert json.loads(result.stdout)["graders"]["dapo"]["problems"] == 3


def test_nothing_is_regenerated_and_other_settings_are_refused(finished, tiny_model):
    before = (finished / "full" / "samples.jsonl").read_text()
    again = run_fipo(finished, "eval", "aime24", "--model", "no/such-model-is-loaded", "--engine", "transformers",
                      "--samples", "4", "--max-tokens", "12", "--limit", "3", "--seed", "7", "--out", "full")
    assert again.returncode == 2 and "model:" in again.stderr  # settings differ: refused before loading anything
    same = run_fipo(finished, "eval", "aime24", "--model", str(tiny_model), "--engine", "transformers", "--samples", "4",
                     "--max-tokens", "12", "--limit", "3", "--seed", "7", "--out", "full", "--json")
    assert same.returncode == 0, same.stderr
    assert (finished / "full" / "samples.jsonl").read_text() == before
    hotter = run_fipo(finished, "eval", "aime24", "--model", str(tiny_model), "--engine", "transformers", "--samples", "4",
                       "--max-tokens", "12", "--limit", "3", "--seed", "7", "--temperature", "0.5", "--out", "full")
    assert hotter.returncode == 2 and "temperature: 1.0 → 0.5" in hotter.stderr


def test_score_regrades_a_file_from_another_tool(tmp_path):
    foreign = tmp_path / "other-tool.jsonl"
    rows = [
        {"prompt_id": "2024-I-1", "sample_index": 0, "response": "so the walk takes\nAnswer: 204"},
        {"prompt_id": "2024-I-1", "sample_index": 1, "response": "Answer: 0204"},
        {"prompt_id": "2024-I-2", "sample_index": 0, "response": "the answer is \\boxed{25}"},
        {"prompt_id": "2024-I-2", "sample_index": 1, "response": "no idea"},
    ]
    foreign.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = run_fipo(tmp_path, "eval", "score", str(foreign), "--bench", "aime24", "--json")
    assert result.returncode == 0, result.stderr
    dapo = json.loads(result.stdout)["graders"]["dapo"]
    # 2024-I-1: both "Answer:" lines are 204 (0204 = 204 on an integer benchmark): 2/2.
    # 2024-I-2 (answer 25): verl's rule falls back to a \boxed{} in the last 100 characters: 1/2.
    # avg@2 = (1 + 0.5)/2 = 0.75; pass@2 = (1 + (1 − C(1,2)/C(2,2)))/2 = 1; cons@2: "25" is the only vote.
    assert dapo["avg@2"]["value"] == pytest.approx(0.75)
    assert dapo["pass@k"]["2"]["value"] == pytest.approx(1.0)
    assert dapo["cons@2"]["value"] == pytest.approx(1.0)
    math_verify = json.loads(result.stdout)["graders"]["math-verify"]
    assert math_verify["per_problem"][1]["correct"] == 1  # \boxed{25}
    assert foreign.read_text() == "".join(json.dumps(row) + "\n" for row in rows)  # the input is untouched
    assert (tmp_path / "other-tool.results.json").is_file() and (tmp_path / "other-tool.graded.jsonl").is_file()


def test_fipo_eval_end_to_end_with_the_vllm_engine(tiny_model, tmp_path):
    from vllm_env import vllm_env, vllm_python

    python = vllm_python()
    # All 30 problems: their prompts overflow one scheduler step's token budget, which once made
    # vLLM's CPU backend rewind a seeded generator and crash.
    args = ["-m", "fipo_cli", "eval", "aime24", "--model", str(tiny_model), "--engine", "vllm", "--samples", "2",
            "--max-tokens", "8", "--seed", "3", "--json"]
    runs = [
        subprocess.run([python, *args, "--out", name], check=False, cwd=tmp_path, env=vllm_env(), capture_output=True,
                       text=True, timeout=600)
        for name in ("first", "second")
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(runs[0].stdout)
    assert (results["graders"]["dapo"]["n"], results["graders"]["dapo"]["problems"]) == (2, 30)
    responses = [{(r["prompt_id"], r["sample_index"]): r["response"] for r in lines(tmp_path / name / "samples.jsonl")}
                 for name in ("first", "second")]
    assert len(responses[0]) == 60 and responses[0] == responses[1]  # same seed, same samples
    assert all(r["token_count"] <= 8 for r in lines(tmp_path / "first" / "samples.jsonl"))


def test_a_second_evaluation_into_the_same_directory_is_refused(tmp_path, tiny_model):
    from fipo_cli.eval.pipeline import writer_lock

    with writer_lock(tmp_path / "busy"):
        result = run_fipo(tmp_path, "eval", "aime24", "--model", str(tiny_model), "--engine", "transformers", "--samples",
                           "1", "--max-tokens", "4", "--limit", "1", "--out", "busy")
    assert result.returncode == 2, result.stderr
    assert f"is being written by process {os.getpid()}" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "busy" / "samples.jsonl").exists()


def test_max_tokens_is_capped_by_the_models_context_with_a_note(tmp_path, tiny_model):
    result = run_fipo(tmp_path, "eval", "aime24", "--model", str(tiny_model), "--engine", "transformers", "--samples", "1",
                       "--limit", "1", "--max-tokens", "5000", "--out", "capped")
    assert result.returncode == 0, result.stderr
    assert "--max-tokens 5000 exceeds" in result.stderr and "context of 1024 positions; capped to 1024" in result.stderr
    assert json.loads((tmp_path / "capped" / "eval_settings.json").read_text())["max_tokens"] == 1024
    assert all(row["token_count"] <= 1024 for row in lines(tmp_path / "capped" / "samples.jsonl"))
    # transformers' own loading bar stays out of fipo eval's output (fipo's bars are on stderr).
    assert "Loading weights" not in result.stderr + result.stdout


def test_ctrl_c_keeps_the_samples_says_so_and_rerunning_resumes(tmp_path, tiny_model):
    # All 30 problems, long responses: the signal comes after the first problem's samples and must find the
    # evaluation still running (10 problems of 64 tokens were all done before it on an idle machine).
    problems, samples_each = 30, 8
    args = ["eval", "aime24", "--model", str(tiny_model), "--engine", "transformers", "--samples", str(samples_each),
            "--max-tokens", "128", "--limit", str(problems), "--out", "cut", "--json"]
    process = start_fipo(tmp_path, *args)
    samples = tmp_path / "cut" / "samples.jsonl"
    while process.poll() is None and not (samples.exists() and samples.read_text().count("\n") >= samples_each):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    kept = len(lines(samples))
    assert process.returncode == 130, stderr
    assert f"interrupted: {kept} samples kept in cut/samples.jsonl; run the same command again to resume" in stderr
    assert "Traceback" not in stderr and samples_each <= kept < problems * samples_each
    assert not (tmp_path / "cut" / ".fipo-eval.lock").exists()
    again = run_fipo(tmp_path, *args)
    assert again.returncode == 0, again.stderr
    assert len(lines(samples)) == problems * samples_each


def test_score_votes_by_equivalence_for_math_verify_and_says_how(tmp_path):
    rows = [{"prompt_id": "p", "sample_index": i, "response": f"Answer: {text}", "answer": "3/4"}
            for i, text in enumerate(["\\frac{3}{4}"] * 5 + ["0.75"] * 4 + ["\\frac14"] * 6)]
    path = tmp_path / "votes.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = run_fipo(tmp_path, "eval", "score", str(path), "--grader", "math-verify", "--time-limit", "20", "--json")
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)
    math_verify = results["graders"]["math-verify"]
    assert math_verify["avg@15"]["value"] == pytest.approx(0.6) and math_verify["cons@15"]["value"] == 1.0
    assert math_verify["per_problem"][0]["majority_answer"] == "3/4"
    assert math_verify["per_problem"][0]["majority_votes"] == 9
    assert results["graders"]["dapo"]["cons@15"]["value"] == 0.0  # dapo: verl's string rule
    assert "verifies as equal" in results["cons_rule"]["math-verify"] and "string" in results["cons_rule"]["dapo"]


def test_grading_progress_counts_samples_then_the_problems_vote_classes():
    from fipo_cli.eval.pipeline import score
    from fipo_cli.eval.samples import Sample

    samples = [Sample(pid, i, f"Answer: {i}", answer="1") for pid in ("a", "b") for i in range(3)]
    progress = []
    scores = score(samples, primary_grader="dapo", integer_answers=True, on_graded=lambda d, t: progress.append((d, t)))
    assert progress[0] == (0, 8) and progress[-1] == (8, 8)  # 6 samples graded, then 2 problems classed
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    assert scores.accuracy["math-verify"].avg.value == pytest.approx(1 / 3)
