"""What the progress view of a run shows, computed from its metrics records alone (pure: no clock, no terminal).

verl's file logger writes one ``{"step": N, "data": {...}}`` record per step to ``metrics.jsonl``
(:mod:`fipo_cli.runs.metrics`, whose :class:`~fipo_cli.runs.metrics.MetricsTail` reads what a growing
file gained). :class:`StepNumbers` holds the numbers of one step a person follows a run by
(the reward, the response length, the policy loss, Future-KL and the clipped influence weights of
FIPO, the step time, whether it saved a checkpoint); :func:`progress` turns the steps seen so far
into a :class:`Progress`: the step of the total, the time it has run and an ETA from the recent
step times. :func:`plain_line` writes one step as the line a log without a terminal gets.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fipo_cli.core.text import format_elapsed

#: The metrics the view reads (verl 0.9.1's names; ``actor/fipo_*`` and the percentiles are fipo's plugin's).
REWARD = "critic/rewards/mean"
LENGTH_MEAN = "response_length/mean"
LENGTH_P90 = "response_length/p90"
PG_LOSS = "actor/pg_loss"
FUTURE_KL = "actor/fipo_future_kl_mean"
#: Shares of the tokens whose influence weight sits at its lower bound 1 − ε_f,low / upper bound 1 + ε_f,high.
WEIGHTS_AT_LOW = "actor/fipo_clipfrac_lower"
WEIGHTS_AT_HIGH = "actor/fipo_clipfrac_upper"
#: verl's timer of a step (generation, the updates, a checkpoint) and of the validation that follows it.
STEP_SECONDS = "timing_s/step"
VALIDATION_SECONDS = "timing_s/testing"
#: verl logs this timer in the record of every step that saved a checkpoint.
CHECKPOINT_SECONDS = "timing_s/save_checkpoint"
#: Every metric the view reads: what a record must carry to be shown.
VIEW_METRICS = (REWARD, LENGTH_MEAN, LENGTH_P90, PG_LOSS, FUTURE_KL, WEIGHTS_AT_LOW, WEIGHTS_AT_HIGH,
                STEP_SECONDS, VALIDATION_SECONDS, CHECKPOINT_SECONDS)
#: The ETA is the steps left times the mean time of this many latest steps: the first step, which
#: warms generation up (80 s against 20 s for the later steps of a tiny run), soon drops out of it.
RECENT_STEPS = 5


@dataclass(frozen=True)
class StepNumbers:
    """The numbers of one training step that the view shows; None where the run does not log one."""

    step: int
    reward: float | None = None
    length_mean: float | None = None
    length_p90: float | None = None
    policy_loss: float | None = None
    future_kl: float | None = None
    """FIPO runs only, as the two shares below."""
    weights_at_low: float | None = None
    weights_at_high: float | None = None
    seconds: float | None = None
    """Wall time of the step: verl's step timer plus the validation run after it."""
    checkpoint: bool = False

    @classmethod
    def of(cls, step: int, data: Mapping[str, float]) -> StepNumbers:
        """The numbers of a step's record (its ``data``)."""
        seconds = data.get(STEP_SECONDS)
        if seconds is not None:
            seconds += data.get(VALIDATION_SECONDS, 0.0)
        return cls(step=step, reward=data.get(REWARD), length_mean=data.get(LENGTH_MEAN),
                   length_p90=data.get(LENGTH_P90), policy_loss=data.get(PG_LOSS), future_kl=data.get(FUTURE_KL),
                   weights_at_low=data.get(WEIGHTS_AT_LOW), weights_at_high=data.get(WEIGHTS_AT_HIGH),
                   seconds=seconds, checkpoint=CHECKPOINT_SECONDS in data)


@dataclass(frozen=True)
class Progress:
    """Where a run stands, as its view shows it."""

    step: int | None
    """The last step logged; None before the first."""
    total: int | None
    """The steps the run trains for; None when unknown (verl counts them from the data and the epochs)."""
    elapsed_s: float | None
    eta_s: float | None
    """Seconds to the last step at the recent pace; None without a total or a step time."""
    last: StepNumbers | None
    checkpoint: int | None
    """The last step that saved a checkpoint."""

    @property
    def fraction(self) -> float | None:
        if self.step is None or not self.total:
            return None
        return min(1.0, self.step / self.total)


def progress(steps: Sequence[StepNumbers], total: int | None, elapsed_s: float | None) -> Progress:
    """The progress after ``steps`` (by step, ascending) of a run of ``total`` steps that has run ``elapsed_s``."""
    if not steps:
        return Progress(None, total, elapsed_s, None, None, None)
    last = steps[-1]
    times = [step.seconds for step in steps[-RECENT_STEPS:] if step.seconds is not None]
    eta = None
    if total is not None and times:
        eta = max(0, total - last.step) * statistics.fmean(times)
    checkpoint = next((step.step for step in reversed(steps) if step.checkpoint), None)
    return Progress(last.step, total, elapsed_s, eta, last, checkpoint)


def progress_at(steps: Sequence[StepNumbers], total: int | None, elapsed_s: float | None = None) -> list[Progress]:
    """The progress as it stood after each of ``steps``: what a log gets, one line per step."""
    return [progress(steps[: index + 1], total, elapsed_s) for index in range(len(steps))]


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def step_of_total(state: Progress) -> str:
    """``12/20`` (``12`` when the total is unknown)."""
    return f"{state.step}/{state.total}" if state.total else str(state.step)


def numbers(last: StepNumbers) -> list[tuple[str, str]]:
    """The last step's numbers as (label, value), in the view's order; FIPO's only where logged."""
    shown = [("reward", _number(last.reward)),
             ("length", f"{_number(last.length_mean)} (p90 {_number(last.length_p90)})"),
             ("policy loss", _number(last.policy_loss))]
    if last.future_kl is not None:
        shown.append(("Future-KL", _number(last.future_kl)))
    if last.weights_at_low is not None or last.weights_at_high is not None:
        shown.append(("clipped weights", f"{_share(last.weights_at_low)} low, {_share(last.weights_at_high)} high"))
    shown.append(("step time", "-" if last.seconds is None else f"{last.seconds:.1f} s"))
    return shown


def plain_line(state: Progress) -> str:
    """One step for a log without a terminal (CI, a pipe, a batch job): everything on one line."""
    parts = [f"step {step_of_total(state)}", f"elapsed {format_elapsed(state.elapsed_s)}"]
    if state.eta_s is not None:
        parts.append(f"ETA {format_elapsed(state.eta_s)}")
    if state.last is not None:
        parts += [f"{label} {value}" for label, value in numbers(state.last)]
    if state.checkpoint is not None:
        parts.append(f"checkpoint {state.checkpoint}")
    return "fipo: " + " · ".join(parts)
