"""Inside a SLURM job or a Ray job: run one run's trainer from its directory.

``python -m fipo_cli.run_task RUN_DIR`` loads the run's resolved ``config.yaml``, plans
its trainer command as ``fipo train`` does, and runs it on this node (the Ray head), with the
output in the run's ``train.log`` and the run's view in the job log (a line per step, the real
warnings and errors; a Ray job's log gets everything, see ``RayLauncher.run_trainer``). A requeued
job runs this again: the same W&B run id, and verl resumes from the run's last checkpoint
(``trainer.resume_mode=auto``).

It is the job's half of ``fipo train``, not a launcher: launchers (``fipo_cli.launch``) start
processes and talk to schedulers, and do not import :mod:`fipo_cli.training.train`.

A Ray job adds ``--record DIR``: the run's record as the job's working directory carries it,
copied into RUN_DIR first when the cluster does not see the run directory fipo wrote.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from fipo_cli.runs.layout import EXPERIMENT_FILE, RUN_CONFIG_FILE

USAGE = "usage: python -m fipo_cli.run_task [--record DIR] RUN_DIR"


def slurm_job_id(env: Mapping[str, str]) -> str | None:
    """The job's id as squeue writes it: ``123``, or ``123_4`` for task 4 of array job 123."""
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


def place_record(record: Path, run_dir: Path) -> None:
    """Copy the run's record into ``run_dir`` unless it holds one (the cluster shares fipo's filesystem)."""
    if (run_dir / RUN_CONFIG_FILE).is_file():
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    for item in record.iterdir():
        if item.is_file():
            shutil.copy2(item, run_dir / item.name)


def run_task(run_dir: Path, env: Mapping[str, str]) -> int:
    from fipo_cli.experiment import config
    from fipo_cli.launch.watch import PlainScreen
    from fipo_cli.runs.experiments import ExperimentDir
    from fipo_cli.runs.status import read_status
    from fipo_cli.training import train

    run_dir = run_dir.absolute()
    experiment_path = run_dir.parent.parent
    experiment = config.load(run_dir / RUN_CONFIG_FILE)
    plan = train.plan_run(experiment, ExperimentDir(experiment_path, experiment_path / EXPERIMENT_FILE), run_dir.name,
                          inherited=env)
    status = read_status(run_dir)
    status.job_id = slurm_job_id(env) or status.job_id
    status.restarts = int(env.get("SLURM_RESTART_COUNT") or 0)
    # The job's log gets the run's view, a line per step; train.log everything the trainer prints.
    exit_code = train.execute_run(plan, status, env, PlainScreen())
    if exit_code == 0:  # the job's log says it too when verl's count of the data ended the run early
        from fipo_cli.runs.metrics import last_step

        early = train.ended_early(plan, last_step(run_dir))
        if early:
            print(f"fipo: run {run_dir.name} {early}", file=sys.stderr, flush=True)
    return exit_code


def main(argv: Sequence[str] | None = None) -> int:
    from fipo_cli.core.errors import FipoError

    args = list(sys.argv[1:] if argv is None else argv)
    record = None
    if args[:1] == ["--record"] and len(args) == 3:
        record, args = Path(args[1]), args[2:]
    if len(args) != 1:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        if record is not None:
            place_record(record, Path(args[0]))
        return run_task(Path(args[0]), dict(os.environ))
    except FipoError as error:
        print(f"fipo: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as error:
        print(f"fipo: cannot prepare the run directory {args[0]}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
