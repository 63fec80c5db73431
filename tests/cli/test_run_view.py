"""The live view of a run on a terminal, and `fipo watch`, from the metrics file of a real tiny run: the
view shows the right step, ETA and numbers (checked against values computed here from the file), a
pseudo-terminal gets the live view, anything else a line per step."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys

import pytest
import tiny_run
from rich.console import Console

from fipo_cli.cli.run_view import LiveScreen, render
from fipo_cli.runs.progress import StepNumbers, progress

from fipo_run import run_fipo

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def shown(renderable, width: int = 200) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(renderable)
    return console.export_text()


@pytest.mark.parametrize("k", [1, 7, 12, 20])
def test_the_view_shows_the_step_eta_and_numbers_of_the_real_run(tiny_run_records, k):
    steps = [StepNumbers.of(record["step"], record["data"]) for record in tiny_run_records]
    text = shown(render("tiny/r", progress(steps[:k], 20, 4000.0), phase=None, wandb="fipo/runs/tiny-r (offline)",
                        log=None))
    data = tiny_run_records[k - 1]["data"]
    # Independently of fipo's code: the ETA is the steps left times the mean of the last five step times.
    recent = [record["data"]["timing_s/step"] + record["data"].get("timing_s/testing", 0.0)
              for record in tiny_run_records[max(0, k - 5):k]]
    eta = (20 - k) * sum(recent) / len(recent)
    head, numbers, footer = text.splitlines()
    assert f"step {k}/20" in head and f"{100 * k / 20:3.0f}%" in head
    assert f"elapsed {hms(4000)}" in head and f"ETA {hms(eta)}" in head
    assert f"reward {data['critic/rewards/mean']:.3g}" in numbers
    assert f"length {data['response_length/mean']:.3g} (p90 {data['response_length/p90']:.3g})" in numbers
    assert f"policy loss {data['actor/pg_loss']:.3g}" in numbers
    assert f"Future-KL {data['actor/fipo_future_kl_mean']:.3g}" in numbers
    assert (f"clipped weights {100 * data['actor/fipo_clipfrac_lower']:.0f}% low, "
            f"{100 * data['actor/fipo_clipfrac_upper']:.0f}% high") in numbers
    assert f"step time {data['timing_s/step'] + data.get('timing_s/testing', 0.0):.1f} s" in numbers
    checkpoint = max((r["step"] for r in tiny_run_records[:k] if "timing_s/save_checkpoint" in r["data"]), default=None)
    assert footer.strip().startswith(f"checkpoint step {checkpoint}" if checkpoint else "no checkpoint yet")
    assert "W&B fipo/runs/tiny-r (offline)" in footer


def test_before_the_first_step_the_view_says_which_phase_the_run_is_in():
    text = shown(render("tiny/r", progress([], 20, 75.0), phase="starting vLLM", wandb=None, log=None))
    assert "tiny/r starting vLLM elapsed 00:01:15" in text and "step" not in text


def test_on_a_narrow_terminal_the_head_line_still_fits():
    steps = [StepNumbers.of(3, {"critic/rewards/mean": 0.1, "timing_s/step": 20.0})]
    head = shown(render("tiny/20261201-222345", progress(steps, 20, 60.0), phase=None, wandb=None, log=None),
                 width=80).splitlines()[0]
    assert len(head) <= 80 and "step 3/20" in head and "ETA 00:05:40" in head


def test_notices_print_above_the_live_view_whole(tmp_path):
    from fipo_cli.launch.console import Notice

    console = Console(record=True, width=120, color_system=None, force_terminal=True)
    screen = LiveScreen(console)
    screen.begin("tiny/r", None, tmp_path / "train.log")
    screen.notice(Notice("error", ("Traceback (most recent call last):", "ValueError: broke")))
    screen.close(["fipo: counted, not shown: 3 known-harmless warnings"])
    text = ANSI.sub("", console.export_text())
    assert "Traceback (most recent call last):\nValueError: broke" in text
    assert text.rstrip().endswith("fipo: counted, not shown: 3 known-harmless warnings")


def test_fipo_watch_in_a_pipe_prints_a_line_per_step_and_ends_with_the_summary(tmp_path, tiny_run_records):
    run = tiny_run.run_dir(tmp_path)
    result = run_fipo(tmp_path, "watch", f"tiny/{run.name}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(" · ")[0] for line in lines if line.startswith("fipo: step")] == [
        f"fipo: step {k}/20" for k in range(1, 21)]
    assert f"fipo: run tiny/{run.name} succeeded (last step 20)" in result.stderr
    failed = tiny_run.run_dir(tmp_path, "20261202-000000", state="failed", exit_code=1)
    (failed / "train.log").write_text("ValueError: the data file is gone\n")
    result = run_fipo(tmp_path, "watch", f"tiny/{failed.name}")
    assert result.returncode == 1
    assert "ValueError: the data file is gone" in result.stdout  # the error, in the view
    assert f"fipo: training failed: run tiny/{failed.name} exited with code 1 and is recorded as failed" in result.stderr


def test_fipo_watch_on_a_terminal_draws_the_live_view(tmp_path, tiny_run_records):
    run = tiny_run.run_dir(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")} | {
        "HOME": str(tmp_path), "COLUMNS": "150", "LINES": "40", "TERM": "xterm"}
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "fipo_cli", "watch", f"tiny/{run.name}"], cwd=tmp_path, env=env,
                               stdin=follower, stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    output = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the pty closes when the process exits
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(timeout=60) == 0
    os.close(leader)
    text = ANSI.sub("", output.decode(errors="replace")).replace("\r", "")
    last = tiny_run_records[-1]["data"]
    assert "\x1b[" in output.decode(errors="replace")  # rich drew it for a terminal
    assert f"tiny/{run.name}" in text and "step 20/20" in text and "100%" in text and "ETA 00:00:00" in text
    assert f"reward {last['critic/rewards/mean']:.3g}" in text and "checkpoint step 20" in text
    assert "fipo: step 1/20" not in text  # not the log lines
    assert f"fipo: run tiny/{run.name} succeeded (last step 20)" in text
