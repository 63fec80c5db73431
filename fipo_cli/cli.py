"""The ``fipo`` command line: typer wiring only.

Commands parse their options, hand them to the module that owns the work and print the
result. Heavy libraries (torch, verl, vllm, wandb) are imported inside the commands that
need them, never here, so ``fipo --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Optional

import typer

from fipo_cli import __version__
from fipo_cli.errors import FipoError

app = typer.Typer(
    name="fipo",
    help="Run FIPO (Future-KL Influenced Policy Optimization) on verl.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"fipo {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print fipo's version and exit."
    ),
) -> None:
    """Run FIPO (Future-KL Influenced Policy Optimization) on verl.

    Set FIPO_DEBUG=1 to see tracebacks of errors.
    """


@app.command()
def knobs(
    assignments: Optional[list[str]] = typer.Argument(
        None, metavar="[KNOB=VALUE]...", help="FIPO knobs, in fipo's or the official launcher's names."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Resolve FIPO loss knobs and print the verl overrides that set them.

    \b
    fipo's knobs: decay_rate (alias tau, 32) or gamma (wins if set), future_kl_clip_low
    (alias eps_f_low, 0.0), future_kl_clip_high (alias eps_f_high, 0.2), safety_thresh (10.0).
    The official launcher's: future_kl_clip_ratio, future_kl_clip_high_only, future_kl_start
    (include_current | exclude_current), future_kl_window (-1 or ≥ 1), future_kl_average, chunk_size.
    """
    from fipo_cli.loss import knobs as knob_rules
    from fipo_cli.overrides import parse_assignments
    from fipo_cli.verl_overrides import policy_loss_overrides

    values = knob_rules.canonical_assignments(parse_assignments(assignments or []))
    resolved = knob_rules.summary(knob_rules.resolve(values))
    overrides = policy_loss_overrides(values)
    if as_json:
        typer.echo(json.dumps({"settings": resolved, "overrides": overrides}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="FIPO loss settings", show_header=True)
    table.add_column("setting")
    table.add_column("value", justify="right")
    for name, value in resolved.items():
        table.add_row(name, f"{value:.6g}" if isinstance(value, float) else str(value))
    console = Console()
    console.print(table)
    console.print("verl overrides:", style="bold")
    for line in overrides:
        console.print(f"  {line}", markup=False, highlight=False)


@app.command()
def init(
    name: str = typer.Argument(..., help="Experiment name: a directory under experiments/ and a job name."),
    model: str = typer.Option(..., "--model", "-m", help="Recipe model: qwen2.5-32b, qwen2.5-math-7b, qwen2.5-0.5b."),
    algo: str = typer.Option("fipo", "--algo", "-a", help="fipo (default) or dapo (the baseline)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing experiment's fipo.yaml."),
) -> None:
    """Create experiments/NAME/fipo.yaml from a recipe, with a comment naming each value's source."""
    from fipo_cli.experiments import init_experiment

    path = init_experiment(name, model, algo, force=force)
    typer.echo(f"created {path}")
    typer.echo("next:")
    typer.echo("  fipo data prepare                 # the training and validation parquet files")
    typer.echo(f"  fipo doctor {name}                # preflight checks")
    typer.echo(f"  fipo train {name} --dry-run       # the exact verl command")
    typer.echo(f"  fipo train {name}                 # train")


@app.command()
def train(
    experiment: Optional[str] = typer.Argument(None, metavar="[EXP]", help="Experiment name or path."),
    assignments: Optional[list[str]] = typer.Argument(
        None, metavar="[KEY=VALUE]...", help="Overrides: dotted keys or aliases (gamma, tau, lr, nodes, n, ...)."
    ),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Train straight from this model's recipe."),
    algo: str = typer.Option("fipo", "--algo", "-a", help="With --model: fipo (default) or dapo."),
    launcher: Optional[str] = typer.Option(None, "--launcher", help="local (default from the config) or slurm."),
    resume: Optional[str] = typer.Option(None, "--resume", metavar="RUN", help="Continue RUN from its last checkpoint."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the command and environment; write nothing."),
    as_json: bool = typer.Option(False, "--json", help="With --dry-run: one JSON object."),
) -> None:
    """Train an experiment with verl (FIPO's future_kl loss, DAPO's sampling and reward)."""
    import os

    from fipo_cli import train as training
    from fipo_cli.errors import UsageError
    from fipo_cli.overrides import parse_assignments

    words = list(assignments or [])
    if experiment is not None and "=" in experiment:  # `fipo train --model M gamma=0.9`
        words.insert(0, experiment)
        experiment = None
    values = parse_assignments(words)
    if launcher is not None:
        values["cluster.launcher"] = launcher
    plan = training.plan_training(experiment, model, algo, values, resume)
    if dry_run:
        checked = training.check_with_verl(plan)
        typer.echo(json.dumps(plan.to_json(os.environ)) if as_json else training.describe(plan, os.environ))
        if not checked:
            typer.echo("note: verl is not installed here, so the overrides were not composed", err=True)
        return
    if plan.experiment.cluster.launcher != "local":
        raise UsageError(f"--launcher {plan.experiment.cluster.launcher}: not available yet", hint="use --launcher local")
    raise typer.Exit(training.run_locally(plan))


@app.command()
def doctor(
    experiment: Optional[str] = typer.Argument(None, metavar="[EXP]", help="Also check this experiment's needs."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON list of checks."),
) -> None:
    """Preflight checks: verl, the future_kl loss, GPUs, batch arithmetic, data, W&B, SLURM tools."""
    from dataclasses import asdict

    from fipo_cli import config, experiments
    from fipo_cli.doctor import run_checks

    loaded = config.load(experiments.find_experiment(experiment).config_file) if experiment else None
    checks = run_checks(loaded)
    if as_json:
        typer.echo(json.dumps([asdict(check) for check in checks]))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"fipo doctor{' ' + experiment if experiment else ''}")
        for column in ("check", "result", "detail"):
            table.add_column(column)
        styles = {"pass": "green", "warn": "yellow", "fail": "bold red"}
        for check in checks:
            table.add_row(check.name, f"[{styles[check.outcome]}]{check.outcome}[/]", check.detail)
        Console().print(table)
    if any(check.outcome == "fail" for check in checks):
        raise typer.Exit(1)


data_app = typer.Typer(help="Training and validation data in verl's parquet format.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("prepare")
def data_prepare(
    out: Path = typer.Option(Path("data"), "--out", "-o", help="Directory for the parquet files."),
    train: str = typer.Option(
        "BytedTsinghua-SIA/DAPO-Math-17k", "--train", help="Training set: a hub id or a local .jsonl/.json/.parquet file."
    ),
    no_train: bool = typer.Option(False, "--no-train", help="Write only the validation sets."),
    validation: Optional[list[str]] = typer.Option(
        None, "--validation", help="Validation sets (repeat or comma-separate): aime24, aime25, math500 or files."
    ),
    problem_key: Optional[str] = typer.Option(None, "--problem-key", help="Column holding the problem text."),
    answer_key: Optional[str] = typer.Option(None, "--answer-key", help="Column holding the answer."),
    force: bool = typer.Option(False, "--force", help="Replace existing output files."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report what would be written; write nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Write DAPO-Math-17k and AIME 2024/2025 as verl parquet files with the DAPO "Answer:" prompt."""
    from fipo_cli.data_prepare import DEFAULT_VALIDATION, prepare

    sets = [name.strip() for item in (validation or []) for name in item.split(",") if name.strip()]
    report = prepare(
        out, None if no_train else train, sets or DEFAULT_VALIDATION,
        problem_key=problem_key, answer_key=answer_key, force=force, dry_run=dry_run,
    )
    rows = [
        {
            "name": f.name, "role": f.role, "source": str(f.source), "path": str(f.path), "read": f.rows_read,
            "incomplete": f.incomplete_removed, "duplicates": f.duplicates_removed, "written": f.rows_written,
            "outcome": f.outcome.value,
        }
        for f in report.files
    ]
    if as_json:
        typer.echo(json.dumps({"dry_run": dry_run, "files": rows}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="fipo data prepare" + (" (dry run: nothing written)" if dry_run else ""))
    for column in ("set", "path", "read", "incomplete", "duplicates", "written", "outcome"):
        table.add_column(column, justify="right" if column in ("read", "incomplete", "duplicates", "written") else "left")
    for row in rows:
        table.add_row(row["name"], row["path"], *(str(row[k]) for k in ("read", "incomplete", "duplicates", "written")),
                      row["outcome"])
    Console().print(table)


@app.command("eval")
def evaluate(
    target: Optional[str] = typer.Argument(
        None, metavar="BENCH|score", help="aime24, aime25 or math500 (bundled), or `score` to re-grade FILE."
    ),
    file: Optional[Path] = typer.Argument(None, metavar="[FILE]", help="With `score`: a samples .jsonl file."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model directory or hub id (served name for openai)."),
    run: Optional[str] = typer.Option(None, "--run", metavar="EXP/RUN", help="Evaluate a training run's checkpoints."),
    step: str = typer.Option("latest", "--step", help="With --run: a step N, latest, or all (a curve)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="A local .jsonl/.json/.parquet file or a hub dataset id."),
    problem_key: Optional[str] = typer.Option(None, "--problem-key", help="With --dataset: the problem column."),
    answer_key: Optional[str] = typer.Option(None, "--answer-key", help="With --dataset: the answer column."),
    bench: Optional[str] = typer.Option(None, "--bench", help="With `score`: take reference answers from this benchmark."),
    engine: str = typer.Option("auto", "--engine", help="vllm, transformers or openai; auto: vllm when it and a GPU are here."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="openai: the server, e.g. http://127.0.0.1:8000/v1."),
    tensor_parallel: Optional[int] = typer.Option(None, "--tensor-parallel", help="vllm: GPUs per model replica."),
    data_parallel: Optional[int] = typer.Option(None, "--data-parallel", help="vllm: model replicas."),
    samples: int = typer.Option(32, "--samples", "-n", help="Samples per problem (paper: 32)."),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature (paper: 1.0)."),
    top_p: float = typer.Option(0.7, "--top-p", help="Nucleus sampling (paper: 0.7)."),
    max_tokens: Optional[int] = typer.Option(
        None, "--max-tokens", help="Max new tokens; default: the run's response length, else 20480 (the 32B recipe's)."
    ),
    seed: int = typer.Option(0, "--seed", help="Base seed; each sample's seed derives from it."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N problems."),
    prompt_format: str = typer.Option("dapo", "--prompt-format", help="dapo (Answer:), boxed or raw."),
    no_chat_template: bool = typer.Option(False, "--no-chat-template", help="Do not apply the tokenizer's chat template."),
    grader: str = typer.Option("dapo", "--grader", help="With `score`: the grader of the headline numbers."),
    workers: int = typer.Option(1, "--workers", help="Grading worker processes."),
    wandb: Optional[bool] = typer.Option(
        None, "--wandb/--no-wandb",
        help="Log to W&B. Default: with --run when the run tracks with W&B; with --model only if --wandb.",
    ),
    wandb_project: str = typer.Option("fipo", "--wandb-project", help="With --model --wandb: the W&B project."),
    wandb_entity: Optional[str] = typer.Option(None, "--wandb-entity", help="With --model --wandb: the W&B entity."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Evaluation directory (default evals/MODEL/BENCH)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as one JSON object."),
) -> None:
    """Evaluate with the paper's protocol (avg@n = Pass@1, cons@n, pass@k), or re-grade a samples file.

    \b
    fipo eval aime24 --model PATH                 32 samples per problem, temperature 1.0, top-p 0.7
    fipo eval --dataset set.jsonl --model PATH    any problem set with answers
    fipo eval score evals/MODEL/aime24/samples.jsonl
    An interrupted evaluation resumes where it stopped: run the same command again.
    """
    from fipo_cli.errors import UsageError
    from fipo_cli.eval import pipeline, reporting, runner
    from fipo_cli.eval.problems import load_benchmark

    if target == "score":
        if file is None:
            raise UsageError("`fipo eval score` needs the samples FILE", hint="fipo eval score path/to/samples.jsonl")
        reference = load_benchmark(bench) if bench else None
        with reporting.progress(quiet=as_json) as bars:
            scores, results = pipeline.score_file(
                file, reference, primary_grader=grader, workers=workers, on_graded=bars.callback("grading")
            )
        reporting.show(scores, results, as_json=as_json)
        return
    if file is not None:
        raise UsageError(f"unexpected argument {str(file)!r}", hint="FILE goes with `fipo eval score FILE`")
    if (target is None) == (dataset is None):
        raise UsageError("name a benchmark or pass --dataset (not both)", hint="fipo eval aime24 --model PATH")
    from fipo_cli.bundled import BENCHMARKS

    if target is not None and target not in BENCHMARKS:
        raise UsageError(
            f"{target!r} is not a bundled benchmark; the bundled ones are {', '.join(BENCHMARKS)}",
            hint="evaluate any other problem set with --dataset FILE_OR_HUB_ID",
        )
    if (model is None) == (run is None):
        raise UsageError("pass --model (a model directory, hub id or served name) or --run EXP/RUN, not both")
    problems = load_benchmark(target or dataset, problem_key=problem_key, answer_key=answer_key, limit=limit)
    protocol = runner.Protocol(
        samples=samples, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed,
        prompt_format=prompt_format, chat_template=not no_chat_template, workers=workers,
    )
    choice = runner.EngineChoice(engine, base_url, tensor_parallel, data_parallel)

    def show(evaluated: runner.Evaluated) -> None:
        reporting.show(evaluated.scores, evaluated.results, as_json=as_json)

    if model is not None:
        evaluated = runner.evaluate_model(
            problems, model, protocol, choice, response_length=pipeline.DEFAULT_MAX_TOKENS, directory=out,
            quiet=as_json,
        )
        show(evaluated)
        if wandb:
            run_id = runner.log_model(evaluated, problems, project=wandb_project, entity=wandb_entity)
            typer.echo(f"W&B: run {run_id}" if run_id else "W&B: tracking disabled", err=True)
        return
    logged = runner.evaluate_checkpoints(
        problems, run, step, protocol, choice, out=out, wandb=wandb, quiet=as_json,
        say=lambda line: typer.echo(line, err=True), show=show,
    )
    if not logged:
        raise typer.Exit(1)


def _report(error: FipoError) -> None:
    from rich.console import Console

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print("error: " + error.message, markup=False)
    if error.hint:
        console.print("hint: " + error.hint, markup=False)


def main() -> None:
    """Console entry point: runs the app and turns a FipoError into one message and an exit code."""
    try:
        app()
    except FipoError as error:
        if os.environ.get("FIPO_DEBUG") == "1":
            traceback.print_exc()
        _report(error)
        sys.exit(error.exit_code)
