"""`fipo eval` from start to end: a model or a run's checkpoints, then the results, W&B and a curve.

The command's options arrive as one validated :class:`~fipo_cli.eval.request.EvalRequest`;
everything else happens here. Progress goes to whoever asked (``progress``): the command line
draws bars, a Python caller may draw none.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from fipo_cli.core.errors import FipoError, UsageError
from fipo_cli.eval import pipeline
from fipo_cli.eval.engines import resolve_engine
from fipo_cli.eval.graders import require_math_verify
from fipo_cli.eval.problems import Benchmark, load_benchmark
from fipo_cli.eval.request import DEFAULT_MAX_TOKENS, EvalRequest, ScoreRequest
from fipo_cli.eval.samples import Sample, read_samples
from fipo_cli.runs.layout import CURVE_FILE, RESULTS_FILE, SAMPLES_FILE, run_evals_dir, step_dir

# The memory one sample takes while it is scored: its Python objects, plus ~4 bytes of text a token.
_SAMPLE_OVERHEAD_BYTES = 2048
_BYTES_PER_TOKEN = 4


class Progress(Protocol):
    """Progress reports: ``callback(label)`` is told ``(done, total)`` of the stage it is named after."""

    def callback(self, label: str) -> Callable[[int, int], None]: ...


class _Silent:
    def callback(self, label: str) -> Callable[[int, int], None]:
        return lambda done, total: None


@contextlib.contextmanager
def no_progress() -> Iterator[Progress]:
    """Progress that nobody sees."""
    yield _Silent()


ProgressFactory = Callable[[], AbstractContextManager[Progress]]


def load_problems(request: EvalRequest) -> Benchmark:
    """The request's problem set (``--limit`` first problems), read once."""
    return load_benchmark(request.problem_set, problem_key=request.problem_key, answer_key=request.answer_key,
                          limit=request.limit)


def check_fits(problems: Benchmark, request: EvalRequest, max_tokens: int) -> None:
    """UsageError when the samples asked for cannot be held in this machine's memory while scored."""
    total = len(problems.problems) * request.samples
    needed = total * (_SAMPLE_OVERHEAD_BYTES + _BYTES_PER_TOKEN * max_tokens)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > memory:
        most = max(1, memory // (len(problems.problems) * (_SAMPLE_OVERHEAD_BYTES + _BYTES_PER_TOKEN * max_tokens)))
        raise UsageError(
            f"--samples {request.samples}: {len(problems.problems)} problems × {request.samples} samples of up to "
            f"{max_tokens} tokens need about {needed / 2**30:,.0f} GiB to score, and this machine has "
            f"{memory / 2**30:,.0f} GiB",
            hint=f"--samples {most} at most here",
        )


def model_context(model: str) -> int | None:
    """The positions a local model directory's config.json allows (None: not known here)."""
    config = Path(model).expanduser() / "config.json"
    if not config.is_file():
        return None
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    for source in (data, data.get("text_config") or {}):
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            if isinstance(source.get(key), int) and source[key] > 0:
                return source[key]
    return None


def resolve_max_tokens(model: str, requested: int | None, default: int) -> tuple[int, str | None]:
    """Max new tokens: ``requested`` or ``default``, capped by the model's context; and a note when capped."""
    max_tokens = default if requested is None else requested
    context = model_context(model)
    if context is not None and max_tokens > context:
        origin = f"--max-tokens {requested}" if requested is not None else f"the default max tokens {default}"
        return context, f"note: {origin} exceeds {model}'s context of {context} positions; capped to {context}"
    return max_tokens, None


@dataclass(frozen=True)
class Evaluated:
    scores: pipeline.Scores
    results: Path
    settings: pipeline.EvalSettings
    samples: list[Sample]  # the scored samples, with verdicts


def evaluate_model(
    problems: Benchmark,
    model: str,
    request: EvalRequest,
    *,
    response_length: int,
    directory: Path | None,
    progress: ProgressFactory = no_progress,
    say: Callable[[str], None] = print,
) -> Evaluated:
    """Evaluate one model into ``directory`` (default ``evals/MODEL/BENCH``).

    ``max_tokens`` (``request``'s, else ``response_length``) is capped by the model's context,
    with a note through ``say``.
    """
    max_tokens, note = resolve_max_tokens(model, request.max_tokens, response_length)
    if note:
        say(note)
    check_fits(problems, request, max_tokens)
    settings = pipeline.EvalSettings(
        benchmark=problems.name, model=model, engine=resolve_engine(request.engine), samples=request.samples,
        temperature=request.temperature, top_p=request.top_p, max_tokens=max_tokens,
        seed=request.seed, prompt_format=request.prompt_format, chat_template=request.chat_template,
    )

    def open_engine():
        from fipo_cli.eval.engines import make_engine

        return make_engine(
            settings.engine, model, use_chat_template=settings.chat_template, base_url=request.base_url,
            tensor_parallel_size=request.tensor_parallel, data_parallel_size=request.data_parallel,
        )

    directory = directory or pipeline.default_out_dir(settings)
    with progress() as bars:
        scores = pipeline.evaluate(
            problems, settings, directory, open_engine, workers=request.workers, time_limit=request.grading_time_limit,
            on_sample=bars.callback("generating"), on_graded=bars.callback("grading"),
        )
    graded = pipeline.scored_samples(read_samples(directory / SAMPLES_FILE), problems, settings)
    return Evaluated(scores, directory / RESULTS_FILE, settings, graded)


def log_model(evaluated: Evaluated, problems: Benchmark, request: EvalRequest) -> str | None:
    """Log a model's evaluation to its own W&B eval run; returns the run id (None: tracking off)."""
    from fipo_cli.eval import tracking

    return tracking.log_model_eval(
        problems.name, asdict(evaluated.settings), evaluated.scores, evaluated.samples,
        project=request.wandb_project, entity=request.wandb_entity, mode="auto", out_dir=evaluated.results.parent,
    )


def evaluate_checkpoints(
    problems: Benchmark,
    request: EvalRequest,
    *,
    out: Path | None,
    progress: ProgressFactory = no_progress,
    say: Callable[[str], None] = print,
    show: Callable[[Evaluated], None] = lambda evaluated: None,
) -> bool:
    """Evaluate a run's checkpoints (``step``: N, latest or all) into ``RUN/eval/BENCH/step_N``.

    Each step's results go to the training run's W&B history unless ``wandb`` is False; a
    failure to log is reported through ``say`` and the other steps still run. ``--step all``
    also writes ``curve.json``. Returns whether every W&B log succeeded.
    """
    from fipo_cli.eval import tracking
    from fipo_cli.runs.experiments import find_run
    from fipo_cli.verl_adapter import checkpoints

    run, step, wandb = request.run, request.step, request.wandb
    run_dir = find_run(run, label="--run ")
    base = out or run_evals_dir(run_dir, problems.name)
    curve = []
    logged = True
    for checkpoint in checkpoints.select_steps(run_dir, step):
        say(f"step {checkpoint}: merging the checkpoint into a Hugging Face model (cached)")
        merged = checkpoints.hf_model_for(run_dir, checkpoint)
        evaluated = evaluate_model(
            problems, str(merged.absolute()), request,
            response_length=checkpoints.run_max_tokens(run_dir), directory=step_dir(base, checkpoint),
            progress=progress, say=say,
        )
        show(evaluated)
        curve.append((checkpoint, evaluated.scores))
        if wandb is False:
            continue
        try:
            run_id = tracking.log_run_checkpoint(run_dir, checkpoint, problems.name, evaluated.scores, evaluated.samples)
        except FipoError as error:  # the results are saved; keep evaluating the other steps
            logged = False
            say(f"error: {error}")
        else:
            say(f"W&B: run {run_id}" if run_id else "W&B: the run does not track with W&B")
    if step == "all":
        say(f"curve: {pipeline.write_curve(base / CURVE_FILE, curve)}")
    return logged


def evaluate(
    request: EvalRequest,
    *,
    out: Path | None,
    progress: ProgressFactory = no_progress,
    say: Callable[[str], None] = print,
    show: Callable[[Evaluated], None] = lambda evaluated: None,
) -> bool:
    """Evaluate what ``request`` names, on this machine; whether every W&B log succeeded.

    A model's results go to ``out`` (default ``evals/MODEL/BENCH``) and, with ``wandb``, to a W&B run of
    its own; a run's checkpoints to ``RUN/eval/BENCH/step_N`` and the run's W&B run.
    """
    require_math_verify()  # here, not for --slurm: the job grades in the compute node's environment
    problems = load_problems(request)
    if request.model is None:
        return evaluate_checkpoints(problems, request, out=out, progress=progress, say=say, show=show)
    evaluated = evaluate_model(problems, request.model, request, response_length=DEFAULT_MAX_TOKENS, directory=out,
                               progress=progress, say=say)
    show(evaluated)
    if request.wandb:
        run_id = log_model(evaluated, problems, request)
        say(f"W&B: run {run_id}" if run_id else "W&B: tracking disabled")
    return True


def score(request: ScoreRequest, progress: ProgressFactory = no_progress) -> tuple[pipeline.Scores, Path]:
    """Re-grade ``request``'s samples file with both graders: its scores and the results file written."""
    require_math_verify()
    reference = load_benchmark(request.bench) if request.bench else None
    with progress() as bars:
        return pipeline.score_file(request.file, reference, primary_grader=request.grader, workers=request.workers,
                                   time_limit=request.grading_time_limit, on_graded=bars.callback("grading"))
