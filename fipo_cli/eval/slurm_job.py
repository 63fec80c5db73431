"""`fipo eval --slurm`: the evaluation as a one-node SLURM job that runs `fipo eval` again inside it.

The command's validated :class:`~fipo_cli.eval.request.EvalRequest` is what the job evaluates;
:func:`eval_argv` turns it back into the command the job runs (the same options, without ``--slurm``/``--dry-run``, with an
explicit ``--out`` so that the job writes where a local run would). :func:`plan_eval_job`
renders ``templates/slurm/eval.sbatch.j2`` and :func:`submit` saves the script in the
evaluation directory (``eval-<UTC time>.sbatch``) and hands it to ``sbatch``; the job's log
is ``slurm-<job id>.out`` beside it.

Only :func:`plan_eval_job` and :func:`eval_argv` are pure; the rest reads the run's config or
the user's cluster profile and writes the script. Nothing here imports torch, vllm or verl.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fipo_cli.core.errors import ConfigError
from fipo_cli.eval.request import EvalRequest
from fipo_cli.experiment import config
from fipo_cli.experiment.config import ClusterConfig
from fipo_cli.runs.layout import (
    EVAL_SCRIPT_PREFIX,
    RESULTS_FILE,
    RUN_CONFIG_FILE,
    SCRIPT_SUFFIX,
    SLURM_LOG,
    run_evals_dir,
    step_dir,
)


def eval_argv(options: EvalRequest, out: Path, python: str | None = None) -> list[str]:
    """The command the job runs: ``python -m fipo_cli eval`` with ``options`` and ``--out out``.

    Every value goes as ``--option=value``, so a value that starts with ``-`` stays a value.
    Sampling options are always written, so the script says exactly what the job draws.
    """
    argv = [python or sys.executable, "-m", "fipo_cli", "eval"]
    if options.benchmark is not None:
        argv.append(options.benchmark)  # a bundled name (checked by the command): never an option

    def add(option: str, value: object) -> None:
        if value is not None:
            argv.append(f"{option}={value}")

    add("--dataset", options.dataset)
    add("--problem-key", options.problem_key)
    add("--answer-key", options.answer_key)
    add("--model", options.model)
    if options.run is not None:
        add("--run", options.run)
        add("--step", options.step)
    add("--engine", options.engine)
    add("--base-url", options.base_url)
    add("--tensor-parallel", options.tensor_parallel)
    add("--data-parallel", options.data_parallel)
    add("--samples", options.samples)
    add("--temperature", repr(float(options.temperature)))
    add("--top-p", repr(float(options.top_p)))
    add("--max-tokens", options.max_tokens)
    add("--seed", options.seed)
    add("--limit", options.limit)
    add("--prompt-format", options.prompt_format)
    if not options.chat_template:
        argv.append("--no-chat-template")
    add("--workers", options.workers)
    add("--time-limit", options.time_limit)
    if options.wandb is not None:
        argv.append("--wandb" if options.wandb else "--no-wandb")
    if options.model is not None:  # the project and entity of a model's own eval run
        add("--wandb-project", options.wandb_project)
        add("--wandb-entity", options.wandb_entity)
    add("--out", Path(out).absolute())
    return argv


def job_gpus(options: EvalRequest, cluster: ClusterConfig) -> int:
    """GPUs the job asks for: none for an ``openai`` server's client, one for ``transformers``,
    tensor × data parallel when both are given, else the whole node (vLLM fills it)."""
    if options.engine == "openai":
        return 0
    if options.engine == "transformers":
        return 1
    if options.tensor_parallel and options.data_parallel:
        return options.tensor_parallel * options.data_parallel
    return cluster.gpus_per_node


def job_name(options: EvalRequest) -> str:
    from fipo_cli.data.sources import resolve_source

    return f"fipo-eval-{resolve_source(options.problem_set).name}"


@dataclass(frozen=True)
class EvalJob:
    directory: Path
    """The evaluation directory: the job's ``--out``, its log and its script."""
    argv: list[str]
    cluster: ClusterConfig
    gpus: int
    job_name: str
    log: Path
    """SLURM's ``--output`` pattern (``%j``: the job id)."""
    results: str
    """Where results.json will be (``step_N`` stands for each step with ``--step all``)."""
    script: str

    def log_for(self, job_id: str) -> Path:
        return Path(str(self.log).replace("%j", job_id))

    def to_json(self) -> dict:
        return {
            "job_name": self.job_name, "gpus": self.gpus, "directory": str(self.directory), "log": str(self.log),
            "results": self.results, "argv": self.argv, "sbatch": self.script,
        }


def plan_eval_job(options: EvalRequest, directory: Path, cluster: ClusterConfig, *, results: str | None = None,
                  workdir: Path | None = None, python: str | None = None) -> EvalJob:
    """The job that evaluates ``options`` into ``directory`` (rendered, not written or submitted)."""
    from fipo_cli.launch import slurm

    directory = Path(directory).absolute()
    argv = eval_argv(options, directory, python)
    gpus = job_gpus(options, cluster)
    name = job_name(options)
    log = directory / SLURM_LOG
    script = slurm.render_eval(job_name=name, cluster=cluster, gpus=gpus, output=log, argv=argv, workdir=workdir)
    slurm.check_syntax(script)
    return EvalJob(directory, argv, cluster, gpus, name, log, results or str(directory / RESULTS_FILE), script)


# ----------------------------------------------------------------------------- reading the options' context


def profile_cluster() -> ClusterConfig:
    """The user's cluster profile (``~/.config/fipo/cluster.yaml`` or ``$FIPO_CLUSTER_CONFIG``) as a
    checked :class:`ClusterConfig`; the defaults when there is none."""
    profile = config.read_cluster_profile()
    if not profile:
        return ClusterConfig()
    path = config.cluster_profile_path()
    try:
        experiment = config.build({"name": "eval", "model": {"path": "eval"}, "cluster": profile}, source=str(path))
    except ConfigError as error:
        raise ConfigError(error.problems, hint=f"fix the cluster profile {path}") from None
    return experiment.cluster


def resolve(options: EvalRequest, out: Path | None) -> tuple[Path, ClusterConfig, str]:
    """The evaluation directory (``--out``, else what a local run would use), the cluster settings
    (the run's ``config.yaml``, else the user's profile) and where the results will be."""
    from fipo_cli.data.sources import SourceKind, check_file, resolve_source
    from fipo_cli.eval import pipeline

    source = resolve_source(options.problem_set)
    if source.kind is SourceKind.FILE:
        check_file(Path(source.spec).expanduser(), "--dataset")
    if options.model is not None:
        directory = out or pipeline.model_out_dir(options.model, source.name)
        return directory, profile_cluster(), str(Path(directory).absolute() / RESULTS_FILE)
    from fipo_cli.runs.experiments import find_run
    from fipo_cli.verl_adapter import checkpoints

    run_dir = find_run(options.run, label="--run ")
    steps = checkpoints.select_steps(run_dir, options.step)  # no checkpoint: the same error as a local run
    directory = out or run_evals_dir(run_dir, source.name)
    config_file = run_dir / RUN_CONFIG_FILE
    cluster = config.load(config_file).cluster if config_file.is_file() else profile_cluster()
    step = str(steps[0]) if len(steps) == 1 and options.step != "all" else "N"
    return directory, cluster, str(step_dir(Path(directory).absolute(), step) / RESULTS_FILE)


def plan(options: EvalRequest, out: Path | None) -> EvalJob:
    """:func:`resolve` then :func:`plan_eval_job`: what ``fipo eval --slurm`` would submit."""
    directory, cluster, results = resolve(options, out)
    return plan_eval_job(options, directory, cluster, results=results)


def script_path(directory: Path, now: datetime | None = None) -> Path:
    """``DIR/eval-<UTC time>.sbatch``, with ``-2``, ``-3``, … when that name is taken."""
    from fipo_cli.runs.status import new_run_name

    return Path(directory) / new_run_name(Path(directory), now, prefix=EVAL_SCRIPT_PREFIX, extension=SCRIPT_SUFFIX)


def submit(job: EvalJob, now: datetime | None = None) -> tuple[str, Path]:
    """Save the script in the evaluation directory (atomically), then ``sbatch`` it: (job id, script)."""
    from fipo_cli.core.files import atomic_write_text
    from fipo_cli.launch import slurm

    job.directory.mkdir(parents=True, exist_ok=True)
    path = script_path(job.directory, now)
    atomic_write_text(path, job.script)
    return slurm.submit(path), path

