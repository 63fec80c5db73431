"""The local launcher: the runs train one after another in this process's subprocesses, on this machine.

Each run gets a Ray head of its own (:mod:`fipo_cli.launch.ray_head`), started before its trainer
and stopped after it, and the trainer's output streams to the terminal and the run's ``train.log``
(:mod:`fipo_cli.launch.process`). Nothing here imports torch: GPUs are counted without it.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence

from fipo_cli.core.errors import UsageError
from fipo_cli.core.gpus import require_gpus
from fipo_cli.core.text import plural
from fipo_cli.launch.base import Batch, Hooks, JobState, Launcher, Outcome, RunJob, Submission, watch_of
from fipo_cli.launch.process import INTERRUPTED
from fipo_cli.launch.watch import Screen, run_watched
from fipo_cli.runs.layout import LOG_FILE, RAY_LOG_FILE
from fipo_cli.runs.status import RunStatus, read_status, write_status


class LocalSubmission(Submission):
    """The runs, run here one after another: nothing to show beyond the plan."""

    def manifest_record(self, submitted):
        """Nothing was submitted: the runs ran here."""
        return None


class LocalLauncher(Launcher):
    name = "local"
    remote = False

    def check(self, batch: Batch, inherited: Mapping[str, str]) -> None:
        """Stop before anything is written when this machine cannot run the batch's runs."""
        experiment = batch.jobs[0].experiment
        cluster = experiment.cluster
        if cluster.nodes > 1:
            raise UsageError(
                f"cluster.nodes={cluster.nodes}: the local launcher runs on this machine only",
                hint="use `--launcher slurm`, or set nodes=1",
            )
        if experiment.trainer.device == "cuda":
            layout = f"{plural(cluster.nodes, 'node')} × {plural(cluster.gpus_per_node, 'GPU')} per node"
            require_gpus(cluster.total_gpus, layout=layout)

    def plan(self, batch: Batch, inherited: Mapping[str, str]) -> Submission:
        return LocalSubmission(batch)

    def submit(self, submission: Submission, hooks: Hooks) -> Outcome:
        """Create every run, then run them in turn; the first Ctrl-C stops the batch."""
        jobs = submission.batch.jobs
        hooks.create(jobs)
        worst = 0
        for position, job in enumerate(jobs, 1):
            if submission.batch.is_sweep:
                hooks.say(f"[{position}/{len(jobs)}] {job.run_dir.name}")
            exit_code = hooks.execute(job)
            worst = max(worst, exit_code)
            if exit_code in INTERRUPTED:
                if submission.batch.is_sweep:
                    hooks.say("interrupted: the remaining runs stay created; run the sweep again to continue")
                break
        return Outcome(exit_code=worst)

    def run_trainer(self, job: RunJob, inherited: Mapping[str, str], screen: Screen | None = None) -> int:
        """The trainer inside a private Ray head of the run's own (its output in ``ray.log``)."""
        from fipo_cli.launch.ray_head import head_cpus, private_ray_head

        env = {**inherited, **job.env}
        device = job.experiment.trainer.device
        def heard(signum: signal.Signals) -> None:  # if fipo then dies before the trainer ends, status says so
            status = read_status(job.run_dir)
            status.stop_signal = signum.name
            write_status(job.run_dir, status)

        watch = watch_of(job, screen)
        if watch is not None:
            watch.phase("starting the run's Ray head")
        try:
            with private_ray_head(gpus=job.cluster.gpus_per_node, cpus=head_cpus(device), env=env,
                                  log_path=job.run_dir / RAY_LOG_FILE) as ray_env:
                if watch is not None:
                    watch.phase("starting verl's trainer")
                return run_watched(job.command, env={**env, **ray_env}, log_path=job.run_dir / LOG_FILE, watch=watch,
                                   on_signal=heard)
        finally:
            if watch is not None:  # also when the Ray head did not start: the view ends before the error is told
                watch.close()

    def refresh(self, statuses: Sequence[RunStatus]) -> list[JobState | None]:
        """A local run's record is written by the fipo process that runs it: while it says ``running``,
        that process must still run. One that died (killed, out of memory, its machine rebooted) is
        recorded as failed here; on another host nobody can tell, and the run shows as unknown."""
        return [_runner_state(status) if status.state == "running" else None for status in statuses]

    def cancel_refusal(self, status: RunStatus) -> str | None:
        if status.state == "running":
            return "a local run; stop it with Ctrl-C in its terminal"
        return None

    def cancel(self, statuses: Sequence[RunStatus]) -> None:
        """Runs not started yet have no process to stop: marking them cancelled is all."""


def _runner_state(status: RunStatus) -> JobState | None:
    runner = status.runner
    if runner is None:  # recorded by a fipo that did not record its runner
        return None
    alive = runner.running()
    if alive:
        return None
    if alive is None:
        return JobState("unknown", "elsewhere", reason=f"fipo runs it on {runner.host} (pid {runner.pid}): "
                                                        f"run `fipo status` there to check it")
    why = f"; it had received {status.stop_signal}" if status.stop_signal else ": killed or crashed, no exit recorded"
    return JobState("failed", "launcher died",
                    reason=f"launcher died (fipo, pid {runner.pid} on {runner.host}){why}")
