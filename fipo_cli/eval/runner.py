"""`fipo eval` from start to end: a model or a run's checkpoints, then the results, W&B and a curve.

The command gathers its options into a :class:`Protocol` (how to sample and grade) and an
:class:`EngineChoice` (what generates); everything else happens here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from fipo_cli.errors import FipoError
from fipo_cli.eval import pipeline, reporting
from fipo_cli.eval.problems import Benchmark
from fipo_cli.eval.samples import Sample, read_samples


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
) -> Evaluated:
    """Evaluate one model into ``directory`` (default ``evals/MODEL/BENCH``)."""
    settings = pipeline.EvalSettings(
        benchmark=problems.name, model=model, engine=reporting.resolve_engine(engine.name), samples=protocol.samples,
        temperature=protocol.temperature, top_p=protocol.top_p, max_tokens=protocol.max_tokens or response_length,
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
            problems, settings, directory, open_engine, workers=protocol.workers,
            on_sample=bars.callback("generating"), on_graded=bars.callback("grading"),
        )
    graded = pipeline.scored_samples(read_samples(directory / pipeline.SAMPLES_FILE), problems, settings)
    return Evaluated(scores, directory / pipeline.RESULTS_FILE, settings, graded)


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
    from fipo_cli.eval import checkpoints, tracking
    from fipo_cli.experiments import find_run

    run_dir = find_run(run, label="--run ")
    base = out or run_dir / "eval" / problems.name
    curve = []
    logged = True
    for checkpoint in checkpoints.select_steps(run_dir, step):
        say(f"step {checkpoint}: merging the checkpoint into a Hugging Face model (cached)")
        merged = checkpoints.hf_model_for(run_dir, checkpoint)
        evaluated = evaluate_model(
            problems, str(merged.absolute()), protocol, engine,
            response_length=checkpoints.run_max_tokens(run_dir), directory=base / f"step_{checkpoint}", quiet=quiet,
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
        say(f"curve: {pipeline.write_curve(base / pipeline.CURVE_FILE, curve)}")
    return logged
