"""What the progress view shows of a run, computed from the metrics file of a real tiny run: the step of
the total, the ETA from the recent step times, the last step's numbers, the last checkpoint; and reading
a metrics file as it grows."""

from __future__ import annotations

import json
import os
import statistics

import pytest
import tiny_run

from fipo_cli.runs.metrics import MetricsTail
from fipo_cli.runs.progress import RECENT_STEPS, StepNumbers, plain_line, progress, progress_at

TOTAL = 20  # the tiny recipe's trainer.total_training_steps


@pytest.fixture
def steps(tiny_run_records) -> list[StepNumbers]:
    return [StepNumbers.of(record["step"], record["data"]) for record in tiny_run_records]


def test_the_eta_is_the_steps_left_times_the_mean_of_the_recent_step_times(tiny_run_records, steps):
    states = progress_at(steps, TOTAL, elapsed_s=100.0)
    assert [state.step for state in states] == list(range(1, TOTAL + 1))
    for k, state in enumerate(states, 1):
        # Independently: verl's step timer, plus the validation run after the step when there was one.
        seconds = [record["data"]["timing_s/step"] + record["data"].get("timing_s/testing", 0.0)
                   for record in tiny_run_records[:k]]
        recent = seconds[-RECENT_STEPS:]
        assert state.eta_s == pytest.approx((TOTAL - k) * sum(recent) / len(recent))
        assert state.fraction == pytest.approx(k / TOTAL)
    assert states[-1].eta_s == 0
    # The first step warms generation up: once it leaves the window the ETA follows the later pace.
    assert tiny_run_records[0]["data"]["timing_s/step"] > 2 * statistics.median(
        record["data"]["timing_s/step"] for record in tiny_run_records[1:])


def test_the_last_steps_numbers_and_the_last_checkpoint(tiny_run_records, steps):
    for k in (1, 9, 10, 14, 20):
        state = progress(steps[:k], TOTAL, None)
        data = tiny_run_records[k - 1]["data"]
        last = state.last
        assert (last.step, last.reward, last.length_mean, last.length_p90, last.policy_loss) == (
            k, data["critic/rewards/mean"], data["response_length/mean"], data["response_length/p90"],
            data["actor/pg_loss"])
        assert (last.future_kl, last.weights_at_low, last.weights_at_high) == (
            data["actor/fipo_future_kl_mean"], data["actor/fipo_clipfrac_lower"], data["actor/fipo_clipfrac_upper"])
        saved = [record["step"] for record in tiny_run_records[:k] if "timing_s/save_checkpoint" in record["data"]]
        assert state.checkpoint == (saved[-1] if saved else None)
    assert progress(steps, TOTAL, None).checkpoint == 20 and progress(steps[:15], TOTAL, None).checkpoint == 10


def test_the_plain_line_of_a_step_holds_everything_on_one_line(tiny_run_records, steps):
    k = 12
    state = progress(steps[:k], TOTAL, elapsed_s=3725.0)
    data = tiny_run_records[k - 1]["data"]
    line = plain_line(state)
    assert "\n" not in line and line.startswith(f"fipo: step {k}/{TOTAL} · elapsed 01:02:05 · ETA ")
    eta = int(state.eta_s)
    assert f"ETA {eta // 3600:02d}:{eta % 3600 // 60:02d}:{eta % 60:02d}" in line
    assert f"reward {data['critic/rewards/mean']:.3g}" in line
    assert f"length {data['response_length/mean']:.3g} (p90 {data['response_length/p90']:.3g})" in line
    assert f"policy loss {data['actor/pg_loss']:.3g}" in line
    assert f"Future-KL {data['actor/fipo_future_kl_mean']:.3g}" in line
    assert (f"clipped weights {100 * data['actor/fipo_clipfrac_lower']:.0f}% low, "
            f"{100 * data['actor/fipo_clipfrac_upper']:.0f}% high") in line
    assert f"step time {data['timing_s/step']:.1f} s" in line and line.endswith("checkpoint 10")


def test_a_dapo_step_shows_no_fipo_numbers_and_an_unknown_total_no_eta():
    state = progress([StepNumbers.of(3, {"critic/rewards/mean": 0.5, "timing_s/step": 2.0})], None, None)
    line = plain_line(state)
    assert line.startswith("fipo: step 3 · elapsed - · reward 0.5")
    assert "ETA" not in line and "Future-KL" not in line and "clipped" not in line
    assert progress([], 20, 5.0).step is None


def test_the_tail_reads_whole_lines_as_they_come_and_starts_over_on_a_new_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail(path)
    assert tail.read() == []  # no file yet
    lines = tiny_run.METRICS.read_text().splitlines(keepends=True)
    with open(path, "w") as file:
        file.write(lines[0] + lines[1][:100])  # verl is writing the second line
        file.flush()
        assert [step for step, _ in tail.read()] == [1]
        file.write(lines[1][100:] + "not json\n" + lines[2])
        file.flush()
        assert [step for step, _ in tail.read()] == [2, 3]  # the line that is not a record is skipped
        assert tail.read() == []
    _, data = MetricsTail(path).read()[0]
    assert data == {key: float(value) for key, value in json.loads(lines[0])["data"].items()
                    if isinstance(value, int | float) and not isinstance(value, bool)}
    # A resumed run: the file moved aside and a new one started at step 21.
    os.replace(path, tmp_path / "metrics.earlier.jsonl")
    path.write_text(json.dumps({"step": 21, "data": {"critic/rewards/mean": 0.4}}) + "\n")
    assert tail.read() == [(21, {"critic/rewards/mean": 0.4})]
