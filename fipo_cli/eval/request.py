"""What ``fipo eval`` is asked to do, checked once: every option of an evaluation in one validated request.

Whoever evaluates builds a request: the command line (:func:`from_command`), the SLURM job, which
runs ``fipo eval`` again with the same options (:func:`fipo_cli.eval.slurm_job.eval_argv`), and
Python callers (:class:`EvalRequest` directly). A request that exists is a valid one: its checks
run when it is made, before a model, a problem set or a scheduler is touched, and name every bad
option at once. What needs the machine (memory, a model's context, math-verify installed) is
checked where it is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from fipo_cli.core.errors import ConfigError, UsageError
from fipo_cli.data.bundled import BENCHMARKS
from fipo_cli.data.prompts import PROMPT_FORMATS
from fipo_cli.eval.graders import DEFAULT_TIME_LIMIT, GRADERS, grading_option_problems

#: Max new tokens when neither --max-tokens nor a run's recipe says: the 32B recipe's response length.
DEFAULT_MAX_TOKENS = 20480
STEPS = ("latest", "all")


@dataclass(frozen=True)
class EvalRequest:
    """An evaluation of a model (``model``) or of a run's checkpoints (``run`` at ``step``) on a problem set
    (a bundled ``benchmark`` or a ``dataset``), with the paper's protocol unless told otherwise.

    ``max_tokens`` None: the run's response length (``--run``), else :data:`DEFAULT_MAX_TOKENS`.
    ``time_limit`` None: the graders' default. ``wandb`` None: a run's checkpoints log to the run's
    W&B run when it tracks with W&B; a model's evaluation logs only when asked.
    """

    benchmark: str | None = None
    dataset: str | None = None
    problem_key: str | None = None
    answer_key: str | None = None
    model: str | None = None
    run: str | None = None
    step: str = "latest"
    engine: str = "auto"
    base_url: str | None = None
    tensor_parallel: int | None = None
    data_parallel: int | None = None
    samples: int = 32
    temperature: float = 1.0
    top_p: float = 0.7
    max_tokens: int | None = None
    seed: int = 0
    limit: int | None = None
    prompt_format: str = "dapo"
    chat_template: bool = True
    workers: int = 1
    time_limit: float | None = None
    wandb: bool | None = None
    wandb_project: str = "fipo"
    wandb_entity: str | None = None

    def __post_init__(self) -> None:
        if (self.benchmark is None) == (self.dataset is None):
            raise UsageError("name a benchmark or pass --dataset (not both)", hint="fipo eval aime24 --model PATH")
        if self.benchmark is not None and self.benchmark not in BENCHMARKS:
            raise UsageError(
                f"{self.benchmark!r} is not a bundled benchmark; the bundled ones are {', '.join(BENCHMARKS)}",
                hint="evaluate any other problem set with --dataset FILE_OR_HUB_ID",
            )
        if (self.model is None) == (self.run is None):
            raise UsageError("pass --model (a model directory, hub id or served name) or --run EXP/RUN, not both")
        if self.step != "latest" and self.run is None:
            raise UsageError(f"--step {self.step} goes with --run EXP/RUN (a run's checkpoints); "
                             "--model evaluates one model")
        problems = option_problems(self)
        if problems:
            raise ConfigError(problems, hint="see `fipo eval --help` for each option's range")

    @property
    def problem_set(self) -> str:
        """The benchmark name or the ``--dataset`` spec."""
        return self.benchmark if self.benchmark is not None else self.dataset  # type: ignore[return-value]

    @property
    def grading_time_limit(self) -> float:
        """Seconds one grader may spend on one sample."""
        return DEFAULT_TIME_LIMIT if self.time_limit is None else self.time_limit


def option_problems(request: EvalRequest) -> list[str]:
    """What is wrong with the request's values, one line each (none: all are fine)."""
    problems = []
    if request.samples < 1:
        problems.append(f"--samples {request.samples}: must be ≥ 1")
    if request.max_tokens is not None and request.max_tokens < 1:
        problems.append(f"--max-tokens {request.max_tokens}: must be ≥ 1")
    if not (request.temperature >= 0 and math.isfinite(request.temperature)):
        problems.append(f"--temperature {request.temperature}: must be a finite number ≥ 0 (0 is greedy)")
    if not 0 < request.top_p <= 1:  # NaN fails this too
        problems.append(f"--top-p {request.top_p}: must lie in (0, 1]")
    if request.limit is not None and request.limit < 1:
        problems.append(f"--limit {request.limit}: must be ≥ 1")
    if request.prompt_format not in PROMPT_FORMATS:
        problems.append(f"--prompt-format {request.prompt_format!r}: choose one of {', '.join(PROMPT_FORMATS)}")
    if request.step not in STEPS and not request.step.isdecimal():
        problems.append(f"--step {request.step!r}: expected a step number, latest or all")
    problems += grading_option_problems(request.workers, request.grading_time_limit)
    return problems


@dataclass(frozen=True)
class ScoreRequest:
    """``fipo eval score FILE``: re-grade a samples file, headline numbers by ``grader``, answers from ``bench``."""

    file: Path
    bench: str | None = None
    grader: str = "dapo"
    workers: int = 1
    time_limit: float | None = None

    def __post_init__(self) -> None:
        problems = grading_option_problems(self.workers, self.grading_time_limit)
        if problems:
            raise UsageError("; ".join(problems), hint="e.g. --workers 4 --time-limit 30")
        if not self.file.is_file():
            raise UsageError(f"{self.file}: {'not a file' if self.file.exists() else 'no such file'}",
                             hint="fipo eval score path/to/samples.jsonl")
        if self.grader not in GRADERS:
            from fipo_cli.core.errors import unknown_key_problem

            raise UsageError(f"--grader {unknown_key_problem(self.grader, GRADERS, 'grader')}",
                             hint=f"the graders are {', '.join(GRADERS)}")
        if self.bench is not None:
            bench_spec(self.bench)

    @property
    def grading_time_limit(self) -> float:
        return DEFAULT_TIME_LIMIT if self.time_limit is None else self.time_limit


def bench_spec(bench: str) -> str:
    """``--bench``: a bundled benchmark or a local file; a bare unknown name is not sent to the hub."""
    if bench in BENCHMARKS or "/" in bench or Path(bench).expanduser().exists() or Path(bench).suffix:
        return bench
    raise UsageError(
        f"--bench {bench!r} is not a bundled benchmark; the bundled ones are {', '.join(BENCHMARKS)}",
        hint="or pass a local .jsonl/.json/.parquet file, or a hub dataset id (OWNER/NAME)",
    )


def from_command(target: str | None, file: Path | None, *, bench: str | None, grader: str, slurm: bool,
                 dry_run: bool, **options: object) -> EvalRequest | ScoreRequest:
    """``fipo eval BENCH|score [FILE]`` with its options as the request they make.

    ``target`` ``score`` makes a :class:`ScoreRequest` of FILE (``--bench``, ``--grader``, grading
    options); anything else an :class:`EvalRequest` (``target``: the bundled benchmark, if any).
    """
    if target == "score":
        if slurm or dry_run:
            raise UsageError("`fipo eval score` runs here; --slurm submits evaluations of a model or a run")
        if file is None:
            raise UsageError("`fipo eval score` needs the samples FILE", hint="fipo eval score path/to/samples.jsonl")
        return ScoreRequest(file, bench=bench, grader=grader, workers=options.get("workers", 1),  # type: ignore[arg-type]
                            time_limit=options.get("time_limit"))  # type: ignore[arg-type]
    if file is not None:
        raise UsageError(f"unexpected argument {str(file)!r}", hint="FILE goes with `fipo eval score FILE`")
    request = EvalRequest(benchmark=target, **options)  # type: ignore[arg-type]
    unused = [name for name, value in (("--bench", bench), ("--grader", grader if grader != "dapo" else None))
              if value is not None]
    if unused:
        raise UsageError(f"{' and '.join(unused)} go with `fipo eval score FILE`",
                         hint="an evaluation grades with both graders; its headline grader follows --prompt-format")
    if dry_run and not slurm:
        raise UsageError("--dry-run goes with --slurm", hint="fipo eval aime24 --model PATH --slurm --dry-run")
    return request
