"""A run's view without a terminal, fed by a real trainer process (a stand-in replaying a real tiny run's
metrics file) or by a run directory as it grows: one line per step, the real warnings and errors, nothing else."""

from __future__ import annotations

import io
import json
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import tiny_run

from fipo_cli.launch.watch import FileFeed, PlainScreen, RunWatch, follow, run_watched
from fipo_cli.runs.progress import StepNumbers, plain_line, progress

#: A trainer that prints what verl prints (a config line, harmless warnings, a real one), logs the real
#: run's records one by one as verl's file logger does, then exits as STAND_IN_EXIT says, a traceback first
#: when it fails.
TRAINER = textwrap.dedent(
    """
    import json, os, sys, time
    records = open(sys.argv[1]).read().splitlines()
    print("(TaskRunnerV1 pid=1) {'actor_rollout_ref': {'actor': {'clip_ratio': 0.2}}}", flush=True)
    print("(TaskRunnerV1 pid=1) INFO:2026-12-01 22:27:53,084:all initialize finished, ready to fit", flush=True)
    print("(TaskRunnerV1 pid=1) WARNING:2026-12-01 22:25:15,708:data.gen_batch_size=16 is overridden to 1.", flush=True)
    with open(os.environ["VERL_FILE_LOGGER_PATH"], "a") as metrics:
        for line in records:
            print("(SimpleStorageUnit pid=2) 2026-12-01 22:29:33,957 - WARNING - transfer_queue.utils.common - "
                  "target_num_threads 8 should not exceed total physical CPU cores 2. Setting to 2.", flush=True)
            metrics.write(line + "\\n")
            metrics.flush()
            time.sleep(0.02)
    if os.environ["STAND_IN_EXIT"] != "0":
        print("(TaskRunnerV1 pid=1) Traceback (most recent call last):", flush=True)
        print('(TaskRunnerV1 pid=1)   File "main_ppo.py", line 151, in run', flush=True)
        print("(TaskRunnerV1 pid=1) RuntimeError: the optimizer diverged", flush=True)
    sys.exit(int(os.environ["STAND_IN_EXIT"]))
    """
)


def watched_run(tmp_path: Path, exit_code: int) -> tuple[int, list[str], Path]:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (tmp_path / "trainer.py").write_text(TRAINER)
    out = io.StringIO()
    watch = RunWatch(PlainScreen(out), run="tiny/run", wandb="fipo/runs/tiny-run (offline)", log=run_dir / "train.log",
                     total=tiny_run.STEPS, elapsed=lambda: 1.0)
    env = {"PATH": "/usr/bin:/bin", "VERL_FILE_LOGGER_PATH": str(run_dir / "metrics.jsonl"),
           "STAND_IN_EXIT": str(exit_code)}
    code = run_watched([sys.executable, str(tmp_path / "trainer.py"), str(tiny_run.METRICS)], env=env,
                       log_path=run_dir / "train.log", watch=watch)
    return code, out.getvalue().splitlines(), run_dir


def test_without_a_terminal_a_run_is_one_line_per_step_and_its_real_warning(tmp_path, tiny_run_records):
    code, lines, run_dir = watched_run(tmp_path, 0)
    assert code == 0
    step_lines = [line for line in lines if line.startswith("fipo: step ")]
    assert [line.split()[2] for line in step_lines] == [f"{k}/20" for k in range(1, 21)]
    assert lines[0] == ("fipo: run tiny/run · W&B fipo/runs/tiny-run (offline) · everything the trainer prints: "
                        f"{run_dir / 'train.log'}")
    assert "(TaskRunnerV1 pid=1) WARNING:2026-12-01 22:25:15,708:data.gen_batch_size=16 is overridden to 1." in lines
    assert lines[-1].startswith("fipo: counted, not shown: 20 known-harmless warnings (TransferQueue thread cap 20)")
    # Nothing else of the trainer's: its config, its INFO lines, TransferQueue's 20 warnings.
    assert len(lines) == 1 + 1 + 1 + 20 + 1 and not any("clip_ratio" in line or "target_num" in line for line in lines)
    assert "target_num_threads" in (run_dir / "train.log").read_text()  # train.log keeps everything
    # Each line as the pure view computes it from the real file.
    numbers = [StepNumbers.of(record["step"], record["data"]) for record in tiny_run_records]
    for k, line in enumerate(step_lines, 1):
        expected = plain_line(progress(numbers[:k], 20, 1.0))
        assert line.split(" · ", 2)[2] == expected.split(" · ", 2)[2]  # all but the elapsed time


def test_a_failing_run_shows_its_error_whole_before_it_ends(tmp_path):
    code, lines, _ = watched_run(tmp_path, 1)
    assert code == 1
    error = lines.index("(TaskRunnerV1 pid=1) Traceback (most recent call last):")
    assert lines[error:error + 3] == ["(TaskRunnerV1 pid=1) Traceback (most recent call last):",
                                      '(TaskRunnerV1 pid=1)   File "main_ppo.py", line 151, in run',
                                      "(TaskRunnerV1 pid=1) RuntimeError: the optimizer diverged"]
    assert error > max(number for number, line in enumerate(lines) if line.startswith("fipo: step 20/20"))


def test_watching_a_run_directory_as_it_grows(tmp_path, tiny_run_records):
    run = tiny_run.run_dir(tmp_path, state="running")
    (run / "metrics.jsonl").write_text("")
    log = run / "train.log"
    log.write_text("INFO:2026-12-01 22:25:15,717:Total training steps: 20\n")
    done = threading.Event()

    def trainer() -> None:  # writes as verl does, from another process in real life
        with open(run / "metrics.jsonl", "a") as metrics, open(log, "a") as out:
            for record in tiny_run_records[:5]:
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
                out.write("(TaskRunnerV1 pid=1) RuntimeError: a worker died\n" if record["step"] == 3 else "info\n")
                out.flush()
                time.sleep(0.05)
        done.set()

    out = io.StringIO()
    watch = RunWatch(PlainScreen(out), run="tiny/r", wandb=None, log=log, total=None, elapsed=lambda: 10.0)
    writer = threading.Thread(target=trainer)
    writer.start()
    follow(FileFeed(run), watch, finished=done.is_set, poll_s=0.01)
    writer.join()
    lines = out.getvalue().splitlines()
    assert [line.split(" · ")[0] for line in lines if line.startswith("fipo: step")] == [
        f"fipo: step {k}/20" for k in range(1, 6)]  # the total read from the trainer's output
    assert "(TaskRunnerV1 pid=1) RuntimeError: a worker died" in lines


@pytest.mark.parametrize("earlier", [True, False])
def test_a_late_watch_gets_every_step_with_its_elapsed_time(tmp_path, tiny_run_records, earlier):
    run = tiny_run.run_dir(tmp_path)
    if earlier:  # a resumed run: the first attempt's steps moved aside, the second attempt logs 11 to 20
        lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
        (run / "metrics.earlier.jsonl").write_text("".join(lines[:12]))  # steps 11 and 12 logged twice
        (run / "metrics.jsonl").write_text("".join(lines[10:]))
    out = io.StringIO()
    follow(FileFeed(run), RunWatch(PlainScreen(out), run="tiny/r", wandb=None, log=run / "train.log", total=20,
                                   elapsed=lambda: 1000.0), finished=lambda: True)
    steps = [line for line in out.getvalue().splitlines() if line.startswith("fipo: step")]
    assert len(steps) == 20 and steps[-1].startswith("fipo: step 20/20 · elapsed 00:16:40 · ETA 00:00:00")
    # Each step's elapsed time is the end's less the times of the steps after it (validation included).
    def seconds(record: dict) -> float:
        return record["data"]["timing_s/step"] + record["data"].get("timing_s/testing", 0.0)

    for k in (1, 10, 19):
        hours, minutes, secs = map(int, steps[k - 1].split(" · ")[1].removeprefix("elapsed ").split(":"))
        assert 3600 * hours + 60 * minutes + secs == int(1000.0 - sum(seconds(r) for r in tiny_run_records[k:]))
