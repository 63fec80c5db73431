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
from fipo_cli.text import cell, plural


def _help_without_python_types() -> None:
    """typer 0.29 writes a Python type beside every parameter in --help: ``<bool>`` beside a flag,
    ``<list[str]>`` beside the KEY=VALUE words. A flag takes no value and an argument's name says
    what it takes, so they show none; options that take a value keep theirs (``<int>``, ``<path>``)."""
    from typer import core

    if not hasattr(core.TyperOption, "display_type_rich"):
        return  # an older typer: it writes click's own metavars
    option_type = core.TyperOption.display_type_rich
    core.TyperOption.display_type_rich = lambda self, ctx: None if self.is_flag else option_type(self, ctx)
    core.TyperArgument.display_type_rich = lambda self, ctx: None


_help_without_python_types()

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
        None, metavar="KNOB=VALUE", help="FIPO knobs, in fipo's or the official launcher's names."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Resolve FIPO loss knobs and print the verl overrides that set them.

    \b
    fipo's knobs: decay_rate (alias tau, 32) or gamma (wins if set), future_kl_clip_low
    (alias eps_f_low, 0.0), future_kl_clip_high (alias eps_f_high, 0.2), safety_thresh (10.0).
    The official launcher's: future_kl_clip_ratio, future_kl_clip_high_only, future_kl_start
    (include_current | exclude_current), future_kl_window (-1 or ≥ 1), future_kl_average, chunk_size.
    The official loss ignores future_kl_start, future_kl_window and future_kl_average; fipo's loss
    does not, and warns when one of them is set to anything but its default.
    """
    from fipo_cli.loss import knobs as knob_rules
    from fipo_cli.overrides import parse_assignments
    from fipo_cli.verl_overrides import policy_loss_overrides

    values = knob_rules.canonical_assignments(parse_assignments(assignments or []))
    resolved = knob_rules.summary(knob_rules.resolve(values))
    overrides = policy_loss_overrides(values)
    # On stderr also with --json: stdout stays one JSON object, and the user still sees them.
    warnings = knob_rules.extension_warnings(values) + knob_rules.inert_warnings(values)
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
    if as_json:
        typer.echo(json.dumps({"settings": resolved, "overrides": overrides, "warnings": warnings}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="FIPO loss settings", show_header=True)
    table.add_column("setting")
    table.add_column("value", justify="right")
    for name, value in resolved.items():
        table.add_row(name, cell(value))
    console = Console()
    console.print(table)
    console.print("verl overrides:", style="bold")
    for line in overrides:
        console.print(f"  {line}", markup=False, highlight=False)


@app.command()
def init(
    name: str = typer.Argument(..., help="Experiment name: a directory under experiments/ and a job name."),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Recipe model: qwen2.5-32b, qwen2.5-math-7b, qwen2.5-0.5b, tiny."),
    algo: Optional[str] = typer.Option(None, "--algo", "-a", help="fipo (default) or dapo (the baseline)."),
    from_launcher: Optional[Path] = typer.Option(
        None, "--from-launcher", metavar="SCRIPT",
        help="Import an official FIPO/DAPO launcher script (read, never run) over the recipe of its model."),
    force: bool = typer.Option(False, "--force", help="Replace an existing experiment's fipo.yaml."),
) -> None:
    """Create experiments/NAME/fipo.yaml from a recipe, with a comment naming each value's source.

    \b
    fipo init fipo-32b --model qwen2.5-32b
    fipo init official --from-launcher run_fipo_qwen2.5_32b.sh     # its overrides over the 32B recipe
    """
    from fipo_cli import config, local_assets
    from fipo_cli.errors import UsageError
    from fipo_cli.experiments import init_experiment

    if from_launcher is not None:
        from fipo_cli.training.launcher_import import import_experiment, report_lines

        path, imported = import_experiment(name, from_launcher, model, algo, force=force)
        typer.echo("\n".join(report_lines(imported)))
    elif model is None:
        raise UsageError("fipo init needs --model (a recipe) or --from-launcher SCRIPT",
                         hint=f"fipo init {name} --model qwen2.5-32b")
    else:
        path = init_experiment(name, model, algo or "fipo", force=force)
    data = config.load(path).data
    builtin_data = all(map(local_assets.is_builtin, [*data.train_files, *data.val_files]))
    steps = [] if builtin_data else [("fipo data prepare", "the training and validation parquet files")]
    steps += [(f"fipo doctor {name}", "preflight checks"), (f"fipo train {name} --dry-run", "the exact verl command"),
              (f"fipo train {name}", "train")]
    width = max(len(command) for command, _ in steps)
    typer.echo(f"created {path}")
    typer.echo("next:")
    for command, why in steps:
        typer.echo(f"  {command.ljust(width)}  # {why}")


@app.command()
def train(
    experiment: Optional[str] = typer.Argument(None, metavar="EXP", help="Experiment name or path."),
    assignments: Optional[list[str]] = typer.Argument(
        None, metavar="KEY=VALUE", help="Overrides: dotted keys or aliases (gamma, tau, lr, nodes, n, ...)."
    ),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Train straight from this model's recipe."),
    algo: str = typer.Option("fipo", "--algo", "-a", help="With --model: fipo (default) or dapo."),
    launcher: Optional[str] = typer.Option(None, "--launcher", help="local (default from the config), slurm or ray."),
    resume: Optional[str] = typer.Option(None, "--resume", metavar="RUN", help="Continue RUN from its last checkpoint."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the command and environment; write nothing."),
    as_json: bool = typer.Option(False, "--json", help="With --dry-run: one JSON object."),
) -> None:
    """Train an experiment with verl (FIPO's future_kl loss, DAPO's sampling and reward)."""
    import os

    from fipo_cli import train as training
    from fipo_cli.errors import UsageError
    from fipo_cli.overrides import parse_assignments

    if as_json and not dry_run:
        raise UsageError("--json goes with --dry-run", hint="fipo train EXP --dry-run --json")
    words = list(assignments or [])
    if experiment is not None and "=" in experiment:  # `fipo train --model M gamma=0.9`
        words.insert(0, experiment)
        experiment = None
    values = parse_assignments(words)
    if launcher is not None:
        values["cluster.launcher"] = launcher
    plan = training.plan_training(experiment, model, algo, values, resume)
    launcher = plan.experiment.cluster.launcher
    _warn(plan.warnings)
    # Composed before any launch, not only for --dry-run: a verl key verl lacks stops here, not in a queued job.
    composed = training.check_with_verl(plan)
    _warn(composed or [])
    if dry_run:
        script = training.slurm_script(plan) if launcher == "slurm" else None
        ray_job = training.ray_submission(plan, os.environ) if launcher == "ray" else None
        if as_json:
            planned = plan.to_json(os.environ)
            typer.echo(json.dumps({**planned, "warnings": planned["warnings"] + (composed or []), "sbatch": script,
                                   "ray_job": ray_job.to_json() if ray_job else None}))
        else:
            typer.echo(training.describe(plan, os.environ))
            if script:
                typer.echo(f"batch script ({plan.run_dir / training.SCRIPT_FILE}):\n{script}")
            if ray_job:
                typer.echo(ray_job.describe())
        if composed is None:
            typer.echo("note: verl is not installed here, so the overrides were not composed", err=True)
        return
    if launcher in ("slurm", "ray"):
        plan, status = (training.submit_slurm if launcher == "slurm" else training.submit_ray)(plan)
        reference = f"{plan.experiment_dir.path.name}/{plan.run_name}"
        if launcher == "slurm":
            typer.echo(f"submitted run {reference} as SLURM job {status.job_id}")
            typer.echo(f"  job log:     {status.scheduler_log}")
            typer.echo(f"  trainer log: {plan.run_dir / training.LOG_FILE}")
        else:
            typer.echo(f"submitted run {reference} as Ray job {status.job_id} to {status.ray_address}")
        typer.echo(f"  follow it:   fipo logs {reference} -f")
        typer.echo(f"  status:      fipo status {plan.experiment_dir.path.name}")
        return
    exit_code, plan = training.run_locally(plan)
    typer.echo("\n".join(training.outcome_report(plan, exit_code)), err=True)
    raise typer.Exit(exit_code)


@app.command()
def sweep(
    experiment: str = typer.Argument(..., metavar="EXP", help="Experiment name or path."),
    axes: list[str] = typer.Argument(
        ..., metavar="KEY=VALUES",
        help="gamma=0.95,0.99  tau=range(16,65,16)  eps_f_high=choice(0.1,0.2)  lr=interval(1e-6,3e-6) (random)",
    ),
    strategy: str = typer.Option("grid", "--strategy", help="grid (cartesian product) or random."),
    samples: Optional[int] = typer.Option(None, "--samples", help="With --strategy random: how many runs."),
    seed: int = typer.Option(0, "--seed", help="With --strategy random: the sampling seed."),
    max_parallel: Optional[int] = typer.Option(
        None, "--max-parallel", help="At most K runs at once: SLURM's array throttle (%K); with ray, fipo waits to submit."),
    name: Optional[str] = typer.Option(None, "--name", help="The sweep's name (default: derived from its definition)."),
    launcher: Optional[str] = typer.Option(
        None, "--launcher", help="local (runs one after another), slurm (a job array) or ray (a job per run)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Resubmit the runs that failed, timed out or were cancelled."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Launch a sweep of more than 100 runs."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan (and the array script); write nothing."),
    as_json: bool = typer.Option(False, "--json", help="With --dry-run: one JSON object."),
) -> None:
    """Sweep FIPO's knobs (γ, the influence-weight bounds, …) as one run per point: a SLURM job array.

    \b
    fipo sweep fipo-32b gamma=0.95,0.99 eps_f_high=0.1,0.2 --max-parallel 2
    fipo sweep fipo-32b lr=interval(1e-6,3e-6) tau=16,32 --strategy random --samples 8
    Running the same sweep again submits only what is missing; --retry-failed adds the failed runs.
    """
    from fipo_cli import sweep as sweeps
    from fipo_cli.errors import UsageError

    plan = sweeps.plan_sweep(
        experiment, axes, strategy=strategy, samples=samples, seed=seed, max_parallel=max_parallel, name=name,
        launcher=launcher, retry_failed=retry_failed,
    )
    _warn(plan.warnings)
    # A sweep too large to launch without --yes is refused below without composing its points in verl
    # (0.3 s each): the refusal comes at once, and the run with --yes composes them.
    needs_yes = len(plan.runs) > sweeps.CONFIRM_ABOVE and not yes and not dry_run
    composed = None if needs_yes else sweeps.check_with_verl(plan)
    _warn(composed or [])
    if not needs_yes and composed is None and dry_run:
        typer.echo("note: verl is not installed here, so the overrides were not composed", err=True)
    if as_json:
        if not dry_run:
            raise UsageError("--json goes with --dry-run", hint="fipo sweep EXP KEY=VALUES --dry-run --json")
        planned = sweeps.to_json(plan, os.environ)
        typer.echo(json.dumps({**planned, "warnings": planned["warnings"] + (composed or [])}))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    keys = list(plan.runs[0].params)
    runs = plural(len(plan.runs), "run")
    table = Table(title=f"sweep {plan.name} ({plan.strategy}, {runs}, launcher {plan.launcher})")
    for column in ("#", "run", *keys, "action"):
        table.add_column(column, justify="right" if column == "#" else "left")
    for run in plan.runs:
        action = "submit" if run.action == "submit" else f"skip: {run.reason}"
        table.add_row(str(run.index), run.name, *(cell(run.params[key]) for key in keys), action)
    console.print(table)
    hours = plan.gpu_hours()
    cluster = plan.runs[0].plan.experiment.cluster
    console.print(
        f"{len(plan.to_submit)} to launch × {plural(cluster.total_gpus, 'GPU')}; reserves "
        + (f"{hours:,.0f} GPU-hours at most (cluster.time_limit {cluster.time_limit})" if hours is not None
           else "an unknown number of GPU-hours (set cluster.time_limit to know)"),
        highlight=False,
    )
    if dry_run:
        script = sweeps.array_script(plan)
        if script:
            typer.echo(f"array script ({plan.directory}/array-N.sbatch):\n{script}")
        return
    if needs_yes:
        raise UsageError(f"this sweep plans {len(plan.runs)} runs, more than {sweeps.CONFIRM_ABOVE}",
                         hint="check the plan above, then run again with --yes")
    if not plan.to_submit:
        console.print("nothing to launch: every run is queued, running or finished")
        return
    if plan.launcher == "local":
        raise typer.Exit(sweeps.run_locally(plan, os.environ, console.print))
    if plan.launcher == "ray":
        sweeps.submit_ray(plan, os.environ, lambda line: console.print(line, highlight=False))
        console.print(f"  status: fipo status {plan.name}    cancel: fipo cancel {plan.name}", highlight=False)
        return
    job_id = sweeps.submit(plan, os.environ)
    console.print(f"submitted {plural(len(plan.to_submit), 'run')} as SLURM job array {job_id} "
                  f"(logs in {plan.directory / sweeps.LOGS_DIR})", highlight=False)
    console.print(f"  status: fipo status {plan.name}    cancel: fipo cancel {plan.name}", highlight=False)


@app.command()
def status(
    target: Optional[str] = typer.Argument(None, metavar="EXP|EXP/RUN|SWEEP", help="Which runs (default: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON list of runs."),
    refresh: bool = typer.Option(True, "--refresh/--no-refresh", help="Ask SLURM or the Ray cluster about unfinished runs."),
) -> None:
    """Where runs stand: state (refreshed from squeue, sacct, scontrol or Ray's job API), elapsed time, last step, W&B."""
    from collections import Counter

    from fipo_cli import registry

    entries = registry.find_runs(target)
    if refresh:
        registry.refresh(entries)
    rows = [registry.row(entry) for entry in entries]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    # Plain aligned lines, not a rich Table: a table costs ~0.5 ms a row, and 1,000 runs must list in 1 s.
    colours = {"succeeded": "green", "running": "cyan", "pending": "yellow", "failed": "red", "timeout": "red",
               "cancelled": "magenta", "unreadable": "red"}
    table = [("RUN", "JOB", "STATE", "ELAPSED", "STEP", "W&B")]
    for item in rows:
        state = item["state"] + (f" ({item['exit_code']})" if item["exit_code"] not in (None, 0) else "")
        table.append((f"{item['experiment']}/{item['run']}", item["job_id"] or item["launcher"] or "-", state,
                      registry.format_elapsed(item["elapsed_s"]),
                      "-" if item["last_step"] is None else str(item["last_step"]), item["wandb"] or "-"))
    widths = [max(len(line[column]) for line in table) for column in range(5)]
    colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    for number, line in enumerate(table):
        cells = [cell.rjust(width) if column in (3, 4) else cell.ljust(width)
                 for column, (cell, width) in enumerate(zip(line, widths))]
        if colour and number:
            cells[2] = typer.style(cells[2], fg=colours.get(rows[number - 1]["state"]))
        typer.echo("  ".join([*cells, line[5]]))
    for item in rows:
        if item["problem"]:  # why a run is unreadable; --json has it as "problem"
            typer.echo(f"{item['experiment']}/{item['run']} is unreadable: {item['problem']}")
    counts = "".join(f", {n} {s}" for s, n in sorted(Counter(r["state"] for r in rows).items()))
    typer.echo(plural(len(rows), "run") + counts)


@app.command()
def cancel(
    target: str = typer.Argument(..., metavar="EXP/RUN|SWEEP|EXP", help="A run, a sweep or all runs of an experiment."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Name the jobs; cancel nothing."),
) -> None:
    """Cancel SLURM or Ray runs that are queued or running (scancel, stop_job) and record them as cancelled."""
    from fipo_cli import registry
    from fipo_cli.launch import ray_job, slurm

    entries = registry.find_runs(target)
    registry.refresh(entries)
    active = [e for e in entries if e.state in ("created", "pending", "running")]
    local = [e for e in active if e.status.launcher == "local" and e.state == "running"]
    for entry in local:
        typer.echo(f"{entry.reference}: a local run; stop it with Ctrl-C in its terminal", err=True)
    jobs = [e for e in active if e not in local]
    if not jobs:
        typer.echo(f"nothing to cancel in {target}: no run is queued or running")
        return
    for entry in jobs:
        typer.echo(f"{'would cancel' if dry_run else 'cancelling'} {entry.reference} (job {entry.status.job_id or '-'})")
    if dry_run:
        return
    slurm.cancel(sorted({e.status.job_id for e in jobs if e.status.job_id and e.status.launcher == "slurm"}))
    for address in sorted({e.status.ray_address for e in jobs if e.status.launcher == "ray" and e.status.ray_address}):
        ray_job.stop(address, sorted({e.status.job_id for e in jobs if e.status.ray_address == address and e.status.job_id}))
    for entry in jobs:
        registry.mark_cancelled(entry)


@app.command()
def logs(
    run: str = typer.Argument(..., metavar="EXP/RUN", help="The run (its name alone if only one experiment has it)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing as the run writes, until it ends."),
    job: bool = typer.Option(False, "--job", help="The SLURM job's log (Ray, set-up) instead of the trainer's."),
) -> None:
    """Print a run's trainer log (train.log), or its SLURM job log with --job; a Ray job's log from its cluster."""
    from fipo_cli import registry
    from fipo_cli.logs import print_log

    raise typer.Exit(print_log(registry.find_run(run), job_log=job, follow=follow))


@app.command()
def doctor(
    experiment: Optional[str] = typer.Argument(None, metavar="EXP", help="Also check this experiment's needs."),
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
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=f"fipo doctor{' ' + experiment if experiment else ''}")
        for column in ("check", "result", "detail"):
            table.add_column(column, overflow="fold")  # a long key or path goes on the next line, not cut with "…"
        styles = {"pass": "green", "warn": "yellow", "fail": "bold red"}
        for check in checks:
            # The detail is text, not markup: `pip install 'fipo[train]'` keeps its brackets.
            table.add_row(check.name, f"[{styles[check.outcome]}]{check.outcome}[/]", escape(check.detail))
        Console().print(table)
    if any(check.outcome == "fail" for check in checks):
        raise typer.Exit(1)


data_app = typer.Typer(help="Training and validation data in verl's parquet format.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("prepare")
def data_prepare(
    out: Path = typer.Option(Path("data"), "--out", "-o", help="Directory for the parquet files."),
    train: str | None = typer.Option(
        None, "--train", help="Training set: a hub id or a local .jsonl/.json/.parquet file. [default: "
        "BytedTsinghua-SIA/DAPO-Math-17k]"
    ),
    no_train: bool = typer.Option(False, "--no-train", help="Write only the validation sets."),
    validation: Optional[list[str]] = typer.Option(
        None, "--validation", metavar="SETS",
        help="Validation sets (repeat or comma-separate): aime24, aime25, math500 or files.",
    ),
    problem_key: Optional[str] = typer.Option(None, "--problem-key", help="Column holding the problem text."),
    answer_key: Optional[str] = typer.Option(None, "--answer-key", help="Column holding the answer."),
    force: bool = typer.Option(False, "--force", help="Replace existing output files."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report what would be written; write nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Write DAPO-Math-17k and AIME 2024/2025 as verl parquet files with the DAPO "Answer:" prompt."""
    from fipo_cli.data_prepare import DEFAULT_TRAIN, DEFAULT_VALIDATION, prepare, recipe_note
    from fipo_cli.errors import UsageError

    if no_train and train is not None:
        raise UsageError(f"--train {train} and --no-train contradict each other", hint="drop one of them")
    sets = [name.strip() for item in (validation or []) for name in item.split(",") if name.strip()]
    report = prepare(
        out, None if no_train else train or DEFAULT_TRAIN, sets or DEFAULT_VALIDATION,
        problem_key=problem_key, answer_key=answer_key, force=force, dry_run=dry_run,
    )
    note = recipe_note(report)
    rows = [
        {
            "name": f.name, "role": f.role, "source": str(f.source), "path": str(f.path), "read": f.rows_read,
            "incomplete": f.incomplete_removed, "duplicates": f.duplicates_removed, "written": f.rows_written,
            "outcome": f.outcome.value,
        }
        for f in report.files
    ]
    if as_json:
        typer.echo(json.dumps({"dry_run": dry_run, "files": rows, "note": note}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="fipo data prepare" + (" (dry run: nothing written)" if dry_run else ""))
    for column in ("set", "path", "read", "incomplete", "duplicates", "written", "outcome"):
        table.add_column(column, justify="right" if column in ("read", "incomplete", "duplicates", "written") else "left")
    for row in rows:
        table.add_row(row["name"], row["path"], *(str(row[k]) for k in ("read", "incomplete", "duplicates", "written")),
                      row["outcome"])
    console = Console()
    console.print(table)
    if note:
        console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)


# `fipo eval score` is a mode of `fipo eval` (BENCH|score), so click would print all of eval's
# help for `fipo eval score --help`: these are the options that apply to it.
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
    target: Optional[str] = typer.Argument(
        None, metavar="BENCH|score", help="aime24, aime25 or math500 (bundled), or `score` to re-grade FILE."
    ),
    file: Optional[Path] = typer.Argument(None, metavar="[FILE]", help="With `score`: a samples .jsonl file."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model directory or hub id (served name for openai)."),
    run: Optional[str] = typer.Option(None, "--run", metavar="EXP/RUN", help="Evaluate a training run's checkpoints."),
    step: Optional[str] = typer.Option(
        None, "--step", help="With --run: a step N, latest (the default), or all (a curve)."
    ),
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
    time_limit: Optional[float] = typer.Option(
        None, "--time-limit", metavar="SECONDS",
        help="Grading: seconds one grader may spend on one sample (default 10).",
    ),
    wandb: Optional[bool] = typer.Option(
        None, "--wandb/--no-wandb",
        help="Log to W&B. Default: with --run when the run tracks with W&B; with --model only if --wandb.",
    ),
    wandb_project: str = typer.Option("fipo", "--wandb-project", help="With --model --wandb: the W&B project."),
    wandb_entity: Optional[str] = typer.Option(None, "--wandb-entity", help="With --model --wandb: the W&B entity."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Evaluation directory (default evals/MODEL/BENCH)."),
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
    from fipo_cli.errors import UsageError
    from fipo_cli.eval import pipeline, reporting, runner
    from fipo_cli.eval.graders import DEFAULT_TIME_LIMIT, check_grading_options, make_grader, require_math_verify
    from fipo_cli.eval.problems import load_benchmark

    grading_limit = DEFAULT_TIME_LIMIT if time_limit is None else time_limit

    if target == "score":
        if slurm or dry_run:
            raise UsageError("`fipo eval score` runs here; --slurm submits evaluations of a model or a run")
        if file is None:
            raise UsageError("`fipo eval score` needs the samples FILE", hint="fipo eval score path/to/samples.jsonl")
        check_grading_options(workers, grading_limit)
        pipeline.check_samples_path(file)
        make_grader(grader)  # names the graders when --grader is not one
        require_math_verify()
        reference = load_benchmark(_bench_spec(bench)) if bench else None
        with reporting.progress(quiet=as_json) as bars:
            scores, results = pipeline.score_file(
                file, reference, primary_grader=grader, workers=workers, time_limit=grading_limit,
                on_graded=bars.callback("grading"),
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
    if step is not None and run is None:
        raise UsageError(f"--step {step} goes with --run EXP/RUN (a run's checkpoints); --model evaluates one model")
    unused = [name for name, value in (("--bench", bench), ("--grader", grader if grader != "dapo" else None))
              if value is not None]
    if unused:
        raise UsageError(f"{' and '.join(unused)} go with `fipo eval score FILE`",
                         hint="an evaluation grades with both graders; its headline grader follows --prompt-format")
    protocol = runner.Protocol(
        samples=samples, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed,
        prompt_format=prompt_format, chat_template=not no_chat_template, workers=workers, time_limit=grading_limit,
    )
    protocol.check()
    if slurm:
        from fipo_cli.eval import slurm_job

        options = slurm_job.EvalOptions(
            benchmark=target, dataset=dataset, problem_key=problem_key, answer_key=answer_key, model=model, run=run,
            step=step or "latest", engine=engine, base_url=base_url, tensor_parallel=tensor_parallel,
            data_parallel=data_parallel, samples=samples, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
            seed=seed, limit=limit, prompt_format=prompt_format, chat_template=not no_chat_template, workers=workers,
            time_limit=time_limit, wandb=wandb, wandb_project=wandb_project, wandb_entity=wandb_entity,
        )
        job = slurm_job.plan(options, out)
        if dry_run:
            if as_json:
                typer.echo(json.dumps({"dry_run": True, **job.to_json()}))
            else:
                typer.echo(job.script, nl=False)
            return
        import shlex

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
        return
    if dry_run:
        raise UsageError("--dry-run goes with --slurm", hint="fipo eval aime24 --model PATH --slurm --dry-run")
    require_math_verify()  # here, not with --slurm: the job grades in the compute node's environment
    problems = load_benchmark(target or dataset, problem_key=problem_key, answer_key=answer_key, limit=limit)
    choice = runner.EngineChoice(engine, base_url, tensor_parallel, data_parallel)

    def show(evaluated: runner.Evaluated) -> None:
        reporting.show(evaluated.scores, evaluated.results, as_json=as_json)

    if model is not None:
        evaluated = runner.evaluate_model(
            problems, model, protocol, choice, response_length=pipeline.DEFAULT_MAX_TOKENS, directory=out,
            quiet=as_json, say=lambda line: typer.echo(line, err=True),
        )
        show(evaluated)
        if wandb:
            run_id = runner.log_model(evaluated, problems, project=wandb_project, entity=wandb_entity)
            typer.echo(f"W&B: run {run_id}" if run_id else "W&B: tracking disabled", err=True)
        return
    logged = runner.evaluate_checkpoints(
        problems, run, step or "latest", protocol, choice, out=out, wandb=wandb, quiet=as_json,
        say=lambda line: typer.echo(line, err=True), show=show,
    )
    if not logged:
        raise typer.Exit(1)


def _bench_spec(bench: str) -> str:
    """``--bench``: a bundled benchmark or a local file; a bare unknown name is not sent to the hub."""
    from fipo_cli.bundled import BENCHMARKS
    from fipo_cli.errors import UsageError

    if bench in BENCHMARKS or "/" in bench or Path(bench).expanduser().exists() or Path(bench).suffix:
        return bench
    raise UsageError(
        f"--bench {bench!r} is not a bundled benchmark; the bundled ones are {', '.join(BENCHMARKS)}",
        hint="or pass a local .jsonl/.json/.parquet file, or a hub dataset id (OWNER/NAME)",
    )


@app.command("report")
def report_charts(
    references: list[str] = typer.Argument(
        ..., metavar="EXP_OR_RUN", help="Experiments (all their runs) or runs as EXP/RUN."
    ),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output directory (default experiments/EXP/report)."),
    steps: Optional[str] = typer.Option(
        None, "--steps", metavar="A:B", help="Only training steps A to B (either end may be left out)."
    ),
    wandb: bool = typer.Option(False, "--wandb", help="Also log the charts to W&B as native charts (job type report)."),
    from_wandb: bool = typer.Option(
        False, "--from-wandb", help="Read the training metrics from the runs' online W&B history, not metrics.jsonl."
    ),
    paper_lines: bool | None = typer.Option(
        None, "--paper-lines/--no-paper-lines",
        help="Draw the paper's AIME 2024 reference points (32B models). Default: when a run trains a 32B model.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object describing the report."),
) -> None:
    """Draw the paper's charts for your runs: PNGs and one self-contained report.html.

    \b
    (a) response-length percentiles per step    (b) avg@n against mean response length, fit per run
    (c) avg@n and cons@n per checkpoint          (d) dual-clip fraction, policy KL, gradient norm, length
    (e) length-weighted mean advantage and mean reward
    Training metrics come from each run's metrics.jsonl, accuracies from `fipo eval --run`.
    """
    from fipo_cli.report import runner
    from fipo_cli.report.data import parse_steps

    report = runner.make_report(references, out=out, steps=parse_steps(steps), from_wandb=from_wandb, to_wandb=wandb,
                                paper_lines=paper_lines)
    if as_json:
        typer.echo(json.dumps(report.to_json()))
        return
    for line in report.figures.skipped + report.figures.notes:
        typer.echo(line)
    for fit in report.figures.fits:
        r2 = "–" if fit.r2 is None else f"{fit.r2:.3f}"
        typer.echo(f"fit {fit.run} {fit.benchmark}: {fit.slope:+.3f} pp per 1k tokens, R² {r2} ({fit.points} points)")
    typer.echo(f"wrote {len(report.files)} charts and {report.html}")
    if wandb:
        typer.echo(f"W&B: run {report.wandb_run}" if report.wandb_run else "W&B: tracking disabled", err=True)
    if report.wandb_sync:
        typer.echo(f"W&B ran offline; to upload the report: {report.wandb_sync}", err=True)


def _warn(lines: list[str]) -> None:
    for line in lines:
        typer.echo(f"warning: {line}", err=True)


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
