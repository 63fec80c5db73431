"""`fipo eval` from start to end: a model or a run's checkpoints, then the results, W&B and a curve.

The command gathers its options into a :class:`Protocol` (how to sample and grade) and an
:class:`EngineChoice` (what generates); everything else happens here.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from fipo_cli.core.errors import ConfigError, FipoError, UsageError
from fipo_cli.eval import pipeline, reporting
from fipo_cli.eval.graders import DEFAULT_TIME_LIMIT, grading_option_problems
from fipo_cli.eval.problems import Benchmark
from fipo_cli.eval.samples import Sample, read_samples
from fipo_cli.runs.layout import CURVE_FILE, RESULTS_FILE, SAMPLES_FILE, run_evals_dir, step_dir

# The memory one sample takes while it is scored: its Python objects, plus ~4 bytes of text a token.
_SAMPLE_OVERHEAD_BYTES = 2048
_BYTES_PER_TOKEN = 4


@dataclass(frozen=True)
class Protocol:
    """How to sample and grade; ``max_tokens`` None means the run's response length or the default."""

    samples: int
    temperature: float
    top_p: float
    max_tokens: int | None
    seed: int
    prompt_format: str
    chat_template: bool
    workers: int
    time_limit: float = DEFAULT_TIME_LIMIT

    def check(self) -> None:
        """UsageError naming every bad option (all at once), before anything is loaded."""
        problems = []
        if self.samples < 1:
            problems.append(f"--samples {self.samples}: must be ≥ 1")
        if self.max_tokens is not None and self.max_tokens < 1:
            problems.append(f"--max-tokens {self.max_tokens}: must be ≥ 1")
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            problems.append(f"--temperature {self.temperature}: must be a finite number ≥ 0 (0 is greedy)")
        if not 0 < self.top_p <= 1:  # NaN fails this too
            problems.append(f"--top-p {self.top_p}: must lie in (0, 1]")
        problems += grading_option_problems(self.workers, self.time_limit)
        if problems:
            raise ConfigError(problems, hint="see `fipo eval --help` for each option's range")


def check_fits(problems: Benchmark, protocol: Protocol, max_tokens: int) -> None:
    """UsageError when the samples asked for cannot be held in this machine's memory while scored."""
    total = len(problems.problems) * protocol.samples
    needed = total * (_SAMPLE_OVERHEAD_BYTES + _BYTES_PER_TOKEN * max_tokens)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > memory:
        most = max(1, memory // (len(problems.problems) * (_SAMPLE_OVERHEAD_BYTES + _BYTES_PER_TOKEN * max_tokens)))
        raise UsageError(
            f"--samples {protocol.samples}: {len(problems.problems)} problems × {protocol.samples} samples of up to "
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
class EngineChoice:
    name: str
    base_url: str | None = None
    tensor_parallel: int | None = None
    data_parallel: int | None = None


@dataclass(frozen=True)
class Evaluated:
    scores: pipeline.Scores
    results: Path
    settings: pipeline.EvalSettings
    samples: list[Sample]  # the scored samples, with verdicts


def evaluate_model(
    problems: Benchmark,
    model: str,
    protocol: Protocol,
    engine: EngineChoice,
    *,
    response_length: int,
    directory: Path | None,
    quiet: bool,
    say: Callable[[str], None] = print,
) -> Evaluated:
    """Evaluate one model into ``directory`` (default ``evals/MODEL/BENCH``).

    ``max_tokens`` (``protocol``'s, else ``response_length``) is capped by the model's context,
    with a note through ``say``.
    """
    max_tokens, note = resolve_max_tokens(model, protocol.max_tokens, response_length)
    if note:
        say(note)
    check_fits(problems, protocol, max_tokens)
    settings = pipeline.EvalSettings(
        benchmark=problems.name, model=model, engine=reporting.resolve_engine(engine.name), samples=protocol.samples,
        temperature=protocol.temperature, top_p=protocol.top_p, max_tokens=max_tokens,
        seed=protocol.seed, prompt_format=protocol.prompt_format, chat_template=protocol.chat_template,
    )

    def open_engine():
        from fipo_cli.eval.engines import make_engine

        return make_engine(
            settings.engine, model, use_chat_template=settings.chat_template, base_url=engine.base_url,
            tensor_parallel_size=engine.tensor_parallel, data_parallel_size=engine.data_parallel,
        )

    directory = directory or pipeline.default_out_dir(settings)
    with reporting.progress(quiet=quiet) as bars:
        scores = pipeline.evaluate(
            problems, settings, directory, open_engine, workers=protocol.workers, time_limit=protocol.time_limit,
            on_sample=bars.callback("generating"), on_graded=bars.callback("grading"),
        )
    graded = pipeline.scored_samples(read_samples(directory / SAMPLES_FILE), problems, settings)
    return Evaluated(scores, directory / RESULTS_FILE, settings, graded)


def log_model(evaluated: Evaluated, problems: Benchmark, *, project: str, entity: str | None) -> str | None:
    """Log a model's evaluation to its own W&B eval run; returns the run id (None: tracking off)."""
    from fipo_cli.eval import tracking

    return tracking.log_model_eval(
        problems.name, asdict(evaluated.settings), evaluated.scores, evaluated.samples,
        project=project, entity=entity, mode="auto", out_dir=evaluated.results.parent,
    )


def evaluate_checkpoints(
    problems: Benchmark,
    run: str,
    step: str,
    protocol: Protocol,
    engine: EngineChoice,
    *,
    out: Path | None,
    wandb: bool | None,
    quiet: bool,
    say: Callable[[str], None],
    show: Callable[[Evaluated], None],
) -> bool:
    """Evaluate a run's checkpoints (``step``: N, latest or all) into ``RUN/eval/BENCH/step_N``.

    Each step's results go to the training run's W&B history unless ``wandb`` is False; a
    failure to log is reported through ``say`` and the other steps still run. ``--step all``
    also writes ``curve.json``. Returns whether every W&B log succeeded.
    """
    from fipo_cli.eval import tracking
    from fipo_cli.runs.experiments import find_run
    from fipo_cli.verl_adapter import checkpoints

    run_dir = find_run(run, label="--run ")
    base = out or run_evals_dir(run_dir, problems.name)
    curve = []
    logged = True
    for checkpoint in checkpoints.select_steps(run_dir, step):
        say(f"step {checkpoint}: merging the checkpoint into a Hugging Face model (cached)")
        merged = checkpoints.hf_model_for(run_dir, checkpoint)
        evaluated = evaluate_model(
            problems, str(merged.absolute()), protocol, engine,
            response_length=checkpoints.run_max_tokens(run_dir), directory=step_dir(base, checkpoint), quiet=quiet,
            say=say,
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
