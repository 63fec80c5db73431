"""`fipo init`: a new experiment from a recipe, or from an official launcher script."""

from __future__ import annotations

from pathlib import Path

import typer

from fipo_cli.cli.app import app


@app.command()
def init(
    name: str = typer.Argument(..., help="Experiment name: a directory under experiments/ and a job name."),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Recipe model: qwen2.5-32b, qwen2.5-math-7b, qwen2.5-0.5b, tiny."),
    algo: str | None = typer.Option(None, "--algo", "-a", help="fipo (default) or dapo (the baseline)."),
    from_launcher: Path | None = typer.Option(
        None, "--from-launcher", metavar="SCRIPT",
        help="Import an official FIPO/DAPO launcher script (read, never run) over the recipe of its model."),
    force: bool = typer.Option(False, "--force", help="Replace an existing experiment's fipo.yaml."),
) -> None:
    """Create experiments/NAME/fipo.yaml from a recipe, with a comment naming each value's source.

    \b
    fipo init fipo-32b --model qwen2.5-32b
    fipo init official --from-launcher run_fipo_qwen2.5_32b.sh     # its overrides over the 32B recipe
    """
    from fipo_cli.assets import builtin as local_assets
    from fipo_cli.core.errors import UsageError
    from fipo_cli.experiment import config
    from fipo_cli.runs.experiments import init_experiment

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
