"""How long a run trains: its planned steps, the prompts and responses they take, and what ends it.

verl 0.9.1's v1 trainer (``trainer/ppo/v1/trainer_base.py``, ``_init_dataloader`` and ``fit``) counts an
epoch as ``rows // data.train_batch_size`` steps and ends a run at ``trainer.total_training_steps`` or
after ``trainer.total_epochs`` such epochs, whichever comes first. Its data loader wraps around
whenever it runs dry, and with dynamic sampling a step takes as many prompts as it needs to keep
``train_batch_size`` groups, so an "epoch" is a count of steps, not a pass over the data. Each step
trains exactly ``train_batch_size`` prompts × ``rollout.n`` responses.

fipo's ``trainer.total_epochs: null`` (the recipes') means no epoch limit; a run that sets a limit
smaller than its steps ends early, when its data runs out by verl's count, and fipo says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fipo_cli.assets import builtin as local_assets
from fipo_cli.core.text import plural
from fipo_cli.experiment.config import Experiment
from fipo_cli.verl_adapter import overrides as verl_overrides


def training_rows(paths: Iterable[str]) -> int | None:
    """The rows of the training files (verl concatenates them), read from the parquet footers; None when a
    file is not here, not yet built (``builtin:``), or pyarrow is missing."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        return None
    total = 0
    for name in paths:
        path = Path(local_assets.resolve(name)).expanduser()
        try:
            total += pq.read_metadata(path).num_rows
        except Exception:  # missing or unreadable: doctor's data check says which
            return None
    return total


@dataclass(frozen=True)
class Horizon:
    """A run's length as planned (``rows`` None: the training data is not readable here)."""

    steps_setting: int | None  # trainer.total_training_steps
    epochs: int  # what verl gets as trainer.total_epochs
    epochs_setting: int | None  # trainer.total_epochs
    train_batch_size: int
    responses_per_prompt: int
    rows: int | None
    gpus: int
    time_limit: str | None

    @property
    def steps_per_epoch(self) -> int | None:
        return None if self.rows is None else self.rows // self.train_batch_size

    @property
    def epoch_limit(self) -> int | None:
        """The step at which verl's epoch count ends the run (None: unknown, or no limit was set)."""
        if self.steps_setting is not None and self.epochs_setting is None:
            return None  # fipo passes epochs = steps: never the first to end a run
        return None if self.steps_per_epoch is None else self.epochs * self.steps_per_epoch

    @property
    def steps(self) -> int | None:
        """The steps the run trains; None when that depends on data not readable here."""
        limits = [limit for limit in (self.steps_setting, self.epoch_limit) if limit is not None]
        if self.steps_setting is None and self.epoch_limit is None:
            return None
        return min(limits)

    @property
    def data_runs_out(self) -> bool:
        """Whether verl's epoch count ends the run before ``total_training_steps``."""
        return self.steps_setting is not None and self.epoch_limit is not None and self.epoch_limit < self.steps_setting

    @property
    def gpu_hours(self) -> float | None:
        """What one submission reserves at most: every GPU for the job's time limit."""
        from fipo_cli.core.clock import time_limit_hours

        hours = time_limit_hours(self.time_limit)
        return None if hours is None else self.gpus * hours

    def warnings(self) -> list[str]:
        found = []
        if self.rows is not None and self.rows < self.train_batch_size:
            found.append(f"the training data has {plural(self.rows, 'row')}, fewer than data.train_batch_size "
                         f"({self.train_batch_size}): verl 0.9.1 would train no step")
        elif self.data_runs_out:
            found.append(f"trainer.total_epochs {self.epochs_setting} ends the run after {self.epoch_limit} of the "
                         f"{self.steps_setting} steps of trainer.total_training_steps ({self.epochs_setting} × "
                         f"⌊{self.rows:,} rows / {self.train_batch_size}⌋): its data runs out by verl's count; leave "
                         "trainer.total_epochs null to train them all")
        return found

    def describe(self) -> str:
        if self.steps is None:
            what = (f"{self.epochs} × (training rows // {self.train_batch_size}) steps; the training data is not "
                    "readable here, so the count is unknown until the run reads it")
            return f"horizon: {what}"
        prompts = self.steps * self.train_batch_size
        source = "trainer.total_training_steps" if not self.data_runs_out and self.steps == self.steps_setting \
            else f"trainer.total_epochs {self.epochs} × ⌊{self.rows:,} rows / {self.train_batch_size}⌋"
        line = (f"horizon: {self.steps:,} steps ({source}) × {self.train_batch_size} prompts = {prompts:,} prompts, "
                f"{prompts * self.responses_per_prompt:,} responses")
        if self.rows:
            line += f"; {prompts / self.rows:.3g} passes over {self.rows:,} training rows"
        hours = self.gpu_hours
        line += f"; {plural(self.gpus, 'GPU')}" + (
            f" × cluster.time_limit {self.time_limit} = {hours:,.0f} GPU-hours reserved"
            f" ({hours * 60 / self.gpus / self.steps:.3g} min a step)" if hours is not None
            else " (set cluster.time_limit for the GPU-hours reserved)")
        return line

    def to_json(self) -> dict[str, object]:
        return {
            "steps": self.steps,
            "total_training_steps": self.steps_setting,
            "total_epochs": self.epochs_setting,
            "verl_total_epochs": self.epochs,
            "train_batch_size": self.train_batch_size,
            "prompts": None if self.steps is None else self.steps * self.train_batch_size,
            "responses": None if self.steps is None else self.steps * self.train_batch_size * self.responses_per_prompt,
            "training_rows": self.rows,
            "data_runs_out": self.data_runs_out,
            "gpus": self.gpus,
            "gpu_hours": self.gpu_hours,
        }

    def ended_early(self, last_step: int | None) -> str | None:
        """For a run that succeeded after ``last_step``: why it stopped before its planned steps, or None."""
        if last_step is None or self.steps_setting is None or last_step >= self.steps_setting:
            return None
        if self.data_runs_out:
            why = (f"its data ran out: verl 0.9.1 ends a run after trainer.total_epochs ({self.epochs}) × "
                   f"⌊{self.rows:,} rows / {self.train_batch_size}⌋ = {self.epoch_limit} steps; leave "
                   "trainer.total_epochs null to train all of them")
        else:
            why = ("its data ran out: verl's epoch count ended it (verl drops prompts longer than "
                   "data.max_prompt_length, so an epoch can be shorter than the rows fipo counted)")
        return f"ended after step {last_step}, short of trainer.total_training_steps ({self.steps_setting}): {why}"


def plan(experiment: Experiment, rows: int | None = None) -> Horizon:
    """The horizon of ``experiment``; ``rows`` read from its training files when not given."""
    trainer, cluster = experiment.trainer, experiment.cluster
    return Horizon(
        steps_setting=trainer.total_training_steps,
        epochs=verl_overrides.verl_total_epochs(trainer),
        epochs_setting=trainer.total_epochs,
        train_batch_size=experiment.data.train_batch_size,
        responses_per_prompt=experiment.rollout.n,
        rows=training_rows(experiment.data.train_files) if rows is None else rows,
        gpus=cluster.total_gpus,
        time_limit=cluster.time_limit,
    )
