"""`fipo eval`: evaluate a model or a run's checkpoints, or re-grade a samples file (`fipo eval score`)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import typer

from fipo_cli.cli.app import app

_SCORE_OPTIONS = ("bench", "grader", "workers", "time_limit", "as_json")
_SCORE_HELP = """Re-grade a samples file with both graders and write its metrics.

A file in an evaluation directory (samples.jsonl beside eval_settings.json) is updated in
place with results.json; any other file is left as it is, and FILE.graded.jsonl and
FILE.results.json are written beside it. Each line: prompt_id, sample_index, response,
and answer unless --bench supplies it."""


class _EvalCommand(typer.core.TyperCommand):
    """`fipo eval`, whose `score FILE` mode has a help of its own."""

    def parse_args(self, ctx, args):
        if args[:1] == ["score"] and any(arg in ctx.help_option_names for arg in args[1:]):
            formatter = ctx.make_formatter()
            formatter.write_usage("fipo eval score", "FILE [OPTIONS]")
            formatter.write_paragraph()
            formatter.write_text(_SCORE_HELP)
            with formatter.section("Options"):
                formatter.write_dl(
                    [param.get_help_record(ctx) for param in self.params if param.name in _SCORE_OPTIONS]
                )
            typer.echo(formatter.getvalue(), nl=False)
            ctx.exit(0)
        return super().parse_args(ctx, args)


@app.command("eval", cls=_EvalCommand)
def evaluate(
    target: str | None = typer.Argument(
        None, metavar="BENCH|score", help="aime24, aime25 or math500 (bundled), or `score` to re-grade FILE."
    ),
    file: Path | None = typer.Argument(None, metavar="[FILE]", help="With `score`: a samples .jsonl file."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model directory or hub id (served name for openai)."),
    run: str | None = typer.Option(None, "--run", metavar="EXP/RUN", help="Evaluate a training run's checkpoints."),
    step: str | None = typer.Option(
        None, "--step", help="With --run: a step N, latest (the default), or all (a curve)."
    ),
    dataset: str | None = typer.Option(None, "--dataset", help="A local .jsonl/.json/.parquet file or a hub dataset id."),
    problem_key: str | None = typer.Option(None, "--problem-key", help="With --dataset: the problem column."),
    answer_key: str | None = typer.Option(None, "--answer-key", help="With --dataset: the answer column."),
    bench: str | None = typer.Option(None, "--bench", help="With `score`: take reference answers from this benchmark."),
    engine: str = typer.Option("auto", "--engine", help="vllm, transformers or openai; auto: vllm when it and a GPU are here."),
    base_url: str | None = typer.Option(None, "--base-url", help="openai: the server, e.g. http://127.0.0.1:8000/v1."),
    tensor_parallel: int | None = typer.Option(None, "--tensor-parallel", help="vllm: GPUs per model replica."),
    data_parallel: int | None = typer.Option(None, "--data-parallel", help="vllm: model replicas."),
    samples: int = typer.Option(32, "--samples", "-n", help="Samples per problem (paper: 32)."),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature (paper: 1.0)."),
    top_p: float = typer.Option(0.7, "--top-p", help="Nucleus sampling (paper: 0.7)."),
    max_tokens: int | None = typer.Option(
        None, "--max-tokens", help="Max new tokens; default: the run's response length, else 20480 (the 32B recipe's)."
    ),
    seed: int = typer.Option(0, "--seed", help="Base seed; each sample's seed derives from it."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N problems."),
    prompt_format: str = typer.Option("dapo", "--prompt-format", help="dapo (Answer:), boxed or raw."),
    no_chat_template: bool = typer.Option(False, "--no-chat-template", help="Do not apply the tokenizer's chat template."),
    grader: str = typer.Option("dapo", "--grader", help="With `score`: the grader of the headline numbers."),
    workers: int = typer.Option(1, "--workers", help="Grading worker processes."),
    time_limit: float | None = typer.Option(
        None, "--time-limit", metavar="SECONDS",
        help="Grading: seconds one grader may spend on one sample (default 10).",
    ),
    wandb: bool | None = typer.Option(
        None, "--wandb/--no-wandb",
        help="Log to W&B. Default: with --run when the run tracks with W&B; with --model only if --wandb.",
    ),
    wandb_project: str = typer.Option("fipo", "--wandb-project", help="With --model --wandb: the W&B project."),
    wandb_entity: str | None = typer.Option(None, "--wandb-entity", help="With --model --wandb: the W&B entity."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Evaluation directory (default evals/MODEL/BENCH)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as one JSON object."),
    slurm: bool = typer.Option(False, "--slurm", help="Submit the evaluation as a one-node SLURM job."),
    dry_run: bool = typer.Option(False, "--dry-run", help="With --slurm: print the batch script; submit nothing."),
) -> None:
    """Evaluate with the paper's protocol (avg@n = Pass@1, cons@n, pass@k), or re-grade a samples file.

    \b
    fipo eval aime24 --model PATH                 32 samples per problem, temperature 1.0, top-p 0.7
    fipo eval --dataset set.jsonl --model PATH    any problem set with answers
    fipo eval score evals/MODEL/aime24/samples.jsonl
    fipo eval aime24 --model PATH --slurm         the same as a one-node SLURM job (--dry-run: the script)
    An interrupted evaluation resumes where it stopped: run the same command again.
    """
    from fipo_cli.cli import eval_view
    from fipo_cli.eval import request as requests
    from fipo_cli.eval import runner

    request = requests.from_command(
        target, file, bench=bench, grader=grader, slurm=slurm, dry_run=dry_run, dataset=dataset,
        problem_key=problem_key, answer_key=answer_key, model=model, run=run, step=step or "latest", engine=engine,
        base_url=base_url, tensor_parallel=tensor_parallel, data_parallel=data_parallel, samples=samples,
        temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed, limit=limit,
        prompt_format=prompt_format, chat_template=not no_chat_template, workers=workers, time_limit=time_limit,
        wandb=wandb, wandb_project=wandb_project, wandb_entity=wandb_entity,
    )
    progress = functools.partial(eval_view.progress, quiet=as_json)
    if isinstance(request, requests.ScoreRequest):
        scores, results = runner.score(request, progress)
        eval_view.show(scores, results, as_json=as_json)
        return
    if slurm:
        _submit(request, out, dry_run=dry_run, as_json=as_json)
        return

    def show(evaluated: runner.Evaluated) -> None:
        eval_view.show(evaluated.scores, evaluated.results, as_json=as_json)

    if not runner.evaluate(request, out=out, progress=progress, say=lambda line: typer.echo(line, err=True),
                           show=show):
        raise typer.Exit(1)


def _submit(request, out: Path | None, *, dry_run: bool, as_json: bool) -> None:
    """``--slurm``: the evaluation as a one-node job (``--dry-run``: its script)."""
    import shlex

    from fipo_cli.eval import slurm_job

    job = slurm_job.plan(request, out)
    if dry_run:
        if as_json:
            typer.echo(json.dumps({"dry_run": True, **job.to_json()}))
        else:
            typer.echo(job.script, nl=False)
        return
    job_id, script = slurm_job.submit(job)
    if as_json:
        typer.echo(json.dumps({"job_id": job_id, "script": str(script), "log": str(job.log_for(job_id)),
                               "results": job.results}))
        return
    typer.echo(f"submitted fipo eval as SLURM job {job_id}")
    typer.echo(f"  job log:  {job.log_for(job_id)}")
    typer.echo(f"  results:  {job.results}")
    typer.echo(f"  script:   {script}")
    typer.echo(f"  follow:   tail -f {shlex.quote(str(job.log_for(job_id)))}")
