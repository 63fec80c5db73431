"""The run registry on disk: finding runs, reading their last step, `fipo status`, `fipo logs`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fipo_cli.core.errors import UsageError
from fipo_cli.runs import registry

from fipo_run import run_fipo


@pytest.fixture
def root(tmp_path: Path, make_run) -> Path:
    root = tmp_path / "experiments"
    make_run(root, "a", "r1", steps=3, job_id="11", started_at="2026-11-22T01:00:00+00:00",
             finished_at="2026-11-22T02:30:05+00:00", wandb_url="https://wandb.ai/me/fipo/runs/a-r1")
    make_run(root, "a", "s-000", sweep="s", state="failed", exit_code=3, job_id="12_0", array_index=0)
    make_run(root, "b", "r1", state="cancelled")
    (root / "a" / "sweeps" / "s").mkdir(parents=True)
    (root / "a" / "sweeps" / "s" / "sweep.json").write_text(json.dumps({"runs": ["s-000", "s-001"]}))
    return root


def names(entries) -> list[str]:
    return [entry.reference for entry in entries]


def test_targets_name_all_runs_an_experiment_a_run_or_a_sweep(root):
    assert names(registry.find_runs(None, root)) == ["a/r1", "a/s-000", "b/r1"]
    assert names(registry.find_runs("a", root)) == ["a/r1", "a/s-000"]
    assert names(registry.find_runs("b/r1", root)) == ["b/r1"]
    assert names(registry.find_runs("s", root)) == ["a/s-000"]  # s-001 was never created
    assert names(registry.find_runs("a/s", root)) == ["a/s-000"]
    with pytest.raises(UsageError, match="'nope' is not an experiment, run"):
        registry.find_runs("nope", root)
    with pytest.raises(UsageError, match="exists in several experiments"):
        registry.find_run("r1", root)
    assert registry.find_run("s-000", root).reference == "a/s-000"


def test_status_lists_runs_with_job_state_elapsed_step_and_wandb(root):
    (root / "b" / "runs" / "broken").mkdir()
    (root / "b" / "runs" / "broken" / "status.json").write_text("{not json")
    rows = json.loads(run_fipo(root.parent, "status", "--json").stdout)
    by_run = {f"{row['experiment']}/{row['run']}": row for row in rows}
    assert by_run["a/r1"]["elapsed_s"] == 5405 and by_run["a/r1"]["last_step"] == 3
    assert by_run["a/s-000"]["job_id"] == "12_0" and by_run["a/s-000"]["exit_code"] == 3
    assert by_run["b/broken"]["state"] == "unreadable" and "status.json" in by_run["b/broken"]["problem"]
    table = run_fipo(root.parent, "status", "a").stdout.splitlines()
    assert table[0].split() == ["RUN", "JOB", "STATE", "ELAPSED", "STEP", "W&B"]
    assert table[1].split() == ["a/r1", "11", "succeeded", "01:30:05", "3", "https://wandb.ai/me/fipo/runs/a-r1"]
    assert table[2].split()[:4] == ["a/s-000", "12_0", "failed", "(3)"]
    assert table[-1] == "2 runs, 1 failed, 1 succeeded"
    table = run_fipo(root.parent, "status", "b").stdout.splitlines()
    broken = next(line for line in table if line.startswith("b/broken is unreadable: "))
    assert "status.json" in broken and broken.endswith(by_run["b/broken"]["problem"])
    assert table[-1].startswith("2 runs, ") and "1 unreadable" in table[-1]
    assert run_fipo(root.parent, "status", "a/r1").stdout.splitlines()[-1] == "1 run, 1 succeeded"


def test_status_of_an_unknown_target_exits_2(root):
    result = run_fipo(root.parent, "status", "nope")
    assert result.returncode == 2 and "'nope' is not an experiment, run (EXP/RUN) or sweep" in result.stderr


def test_logs_print_the_trainer_log_and_say_when_there_is_none(root):
    (root / "a" / "runs" / "r1" / "train.log").write_text("step 1\nstep 2\n")
    assert run_fipo(root.parent, "logs", "a/r1").stdout == "step 1\nstep 2\n"
    missing = run_fipo(root.parent, "logs", "b/r1")
    assert missing.returncode == 1 and "error: b/r1 is cancelled" in missing.stderr
    assert "does not exist" in missing.stderr
    assert missing.stdout == "" and "Traceback" not in missing.stderr
    no_job_log = run_fipo(root.parent, "logs", "b/r1", "--job")
    assert no_job_log.returncode == 2 and "has no SLURM job log" in no_job_log.stderr
