"""A run's metrics files and their merge rule: the last step from the end, earlier attempts kept."""

from __future__ import annotations

import json

from fipo_cli.runs.metrics import keep_earlier_metrics, last_step, read_metrics


def test_the_last_step_comes_from_the_end_of_the_metrics_file(tmp_path, make_run):
    run_dir = make_run(tmp_path, "e", "r", steps=500)
    with open(run_dir / "metrics.jsonl", "a") as metrics:
        metrics.write('{"step": 501, "data": {"x": ')  # the trainer is writing this line
    assert last_step(run_dir) == 500
    keep_earlier_metrics(run_dir)  # what a requeued run does before verl truncates the file
    assert not (run_dir / "metrics.jsonl").exists()
    assert last_step(run_dir) == 500
    (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 501, "data": {"x": 1.0}}) + "\n")
    assert last_step(run_dir) == 501


def test_a_requeued_runs_report_keeps_the_steps_before_the_requeue(tmp_path, make_run):
    run_dir = make_run(tmp_path, "e", "r", steps=4)
    keep_earlier_metrics(run_dir)
    # verl resumes from the step-3 checkpoint and logs step 4 again, then 5.
    (run_dir / "metrics.jsonl").write_text("".join(
        json.dumps({"step": step, "data": {"response_length/mean": 1000.0 + step}}) + "\n" for step in (4, 5)))
    series = read_metrics(run_dir / "metrics.jsonl")["response_length/mean"]
    assert series == {1: 10.0, 2: 20.0, 3: 30.0, 4: 1004.0, 5: 1005.0}
