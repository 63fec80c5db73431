"""Every name of fipo's on-disk tree, in one place: whoever writes a file and whoever reads it import its name here.

::

    experiments/EXP/
        fipo.yaml                       the experiment (``fipo init``)
        runs/RUN/                       one run
            config.yaml                 the resolved experiment config the run trains with
            command.json                the exact trainer command and its working directory
            env.json                    the variables fipo sets and the relevant inherited ones, secrets masked
            status.json                 the run's state, written atomically
            train.log                   everything the trainer printed
            metrics.jsonl               verl's file logger (VERL_FILE_LOGGER_PATH): one {"step", "data"} per line
            metrics.earlier.jsonl       the steps of earlier attempts (before a resume or requeue)
            tracking_config.json        the resolved config and the verl overrides, for W&B's run config
            checkpoints/                verl's checkpoints (trainer.default_local_dir)
            hydra/                      verl's Hydra files (its resolved config, main_ppo.log)
            ray.log                     with the local launcher: the output of the run's private Ray head
            job.sbatch, slurm-JOB.out   with the slurm launcher: the batch script and its job log
            wandb/                      W&B's files (offline runs, the eval logging lock)
            eval/BENCH/step_N/          `fipo eval BENCH --run EXP/RUN` of checkpoint N (an evaluation directory)
        sweeps/SWEEP/                   one sweep
            sweep.json                  its definition, runs and submissions
            array-N.sbatch              the job array of its N-th submission
            logs/JOB_TASK.out           the array tasks' job logs
        report/                         `fipo report`: one PNG per chart and report.html
    evals/MODEL/BENCH/                  `fipo eval BENCH --model MODEL` (an evaluation directory)

An evaluation directory holds ``eval_settings.json``, ``samples.jsonl``, ``results.json``
(``curve.json`` beside the steps of ``--step all``), its writer lock, and with ``--slurm`` the
batch scripts ``eval-TIME.sbatch`` and their logs ``slurm-JOB.out``.
"""

from __future__ import annotations

import re
from pathlib import Path

EXPERIMENTS_DIR = Path("experiments")
EXPERIMENT_FILE = "fipo.yaml"
RUNS_DIR = "runs"
SWEEPS_DIR = "sweeps"
REPORT_DIR = "report"
REPORT_HTML = "report.html"

# One run's directory.
RUN_CONFIG_FILE = "config.yaml"
COMMAND_FILE = "command.json"
ENV_FILE = "env.json"
STATUS_FILE = "status.json"
LOG_FILE = "train.log"
METRICS_FILE = "metrics.jsonl"
#: verl's file logger truncates its file when it starts, so a resumed or requeued run first
#: moves the steps logged so far here (appended; readers let a step's later value win).
EARLIER_METRICS_FILE = "metrics.earlier.jsonl"
TRACKING_CONFIG_FILE = "tracking_config.json"
CHECKPOINT_DIR = "checkpoints"
HYDRA_DIR = "hydra"
#: verl's dump of every response, ``train/STEP.jsonl`` and ``validation/STEP.jsonl`` (``trainer.keep_samples``).
SAMPLES_DIR = "samples"
RAY_LOG_FILE = "ray.log"
SCRIPT_FILE = "job.sbatch"
#: SLURM's ``--output`` of a job fipo submits (``%j``: the job id), beside what it runs.
SLURM_LOG = "slurm-%j.out"
WANDB_DIR = "wandb"
#: Under a run: ``eval/BENCH/step_N``, one evaluation directory per checkpoint.
RUN_EVAL_DIR = "eval"
#: The run's files a job needs to start it elsewhere (a Ray job carries them).
RUN_RECORD = (RUN_CONFIG_FILE, COMMAND_FILE, ENV_FILE, TRACKING_CONFIG_FILE, STATUS_FILE)

# One sweep's directory.
SWEEP_MANIFEST = "sweep.json"
SWEEP_LOGS_DIR = "logs"
#: SLURM's ``--output`` of a sweep's array tasks (``%A``: the array's job id, ``%a``: the task).
ARRAY_TASK_LOG = "%A_%a.out"

# An evaluation directory.
EVALS_DIR = Path("evals")
EVAL_SETTINGS_FILE = "eval_settings.json"
SAMPLES_FILE = "samples.jsonl"
RESULTS_FILE = "results.json"
CURVE_FILE = "curve.json"
#: One writer per evaluation directory (see :func:`fipo_cli.eval.pipeline.writer_lock`).
EVAL_LOCK_FILE = ".fipo-eval.lock"
#: Serialises the evaluations that log into one training run's W&B run (in the run's ``wandb/``).
WANDB_LOCK_FILE = ".fipo-eval-wandb.lock"
EVAL_SCRIPT_PREFIX = "eval-"
SCRIPT_SUFFIX = ".sbatch"

_STEP_DIR = re.compile(r"^step_(\d+)$")


def run_dir(experiment_dir: Path, run: str) -> Path:
    return Path(experiment_dir) / RUNS_DIR / run


def sweep_dir(root: Path, experiment: str, sweep: str) -> Path:
    """``root/EXP/sweeps/SWEEP``."""
    return Path(root) / experiment / SWEEPS_DIR / sweep


def array_script_path(sweep_directory: Path, submission: int) -> Path:
    """The batch script of a sweep's ``submission``-th job array (counted from 1)."""
    return Path(sweep_directory) / f"array-{submission}{SCRIPT_SUFFIX}"


def array_task_log(sweep_directory: Path, task_id: str) -> Path:
    """The job log of array task ``JOB_TASK`` (SLURM's ``%A_%a``)."""
    return Path(sweep_directory) / SWEEP_LOGS_DIR / f"{task_id}.out"


def slurm_log(directory: Path, job_id: str) -> Path:
    """The job log of SLURM job ``job_id`` in ``directory``."""
    return Path(directory) / SLURM_LOG.replace("%j", job_id)


def run_evals_dir(run: Path, benchmark: str) -> Path:
    """``RUN/eval/BENCH``: where the checkpoints of a run are evaluated on ``benchmark``."""
    return Path(run) / RUN_EVAL_DIR / benchmark


def step_dir(evals: Path, step: int | str) -> Path:
    """``.../step_N``: the evaluation directory of checkpoint ``step`` (``N`` stands for every step)."""
    return Path(evals) / f"step_{step}"


def step_of(directory: Path) -> int | None:
    """The checkpoint step a ``step_N`` directory holds; None for any other name."""
    match = _STEP_DIR.match(Path(directory).name)
    return int(match.group(1)) if match else None


def checkpoint_results(run: Path) -> list[Path]:
    """Every ``RUN/eval/BENCH/step_N/results.json`` there is, sorted."""
    return sorted(path for path in Path(run).glob(f"{RUN_EVAL_DIR}/*/step_*/{RESULTS_FILE}")
                  if step_of(path.parent) is not None)
