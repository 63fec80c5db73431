"""`fipo init`: a new experiment from a recipe."""

from __future__ import annotations

import typer

from fipo_cli.cli.app import app


@app.command()
def init(
    name: str = typer.Argument(..., help="Experiment name: a directory under experiments/ and a job name."),
    model: str = typer.Option(..., "--model", "-m", help="Recipe model: qwen2.5-32b, qwen2.5-math-7b, qwen2.5-0.5b."),
    algo: str = typer.Option("fipo", "--algo", "-a", help="fipo (default) or dapo (the baseline)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing experiment's fipo.yaml."),
) -> None:
    """Create experiments/NAME/fipo.yaml from a recipe, with a comment naming each value's source."""
    from fipo_cli.assets import builtin as local_assets
    from fipo_cli.experiment import config
    from fipo_cli.runs.experiments import init_experiment

    path = init_experiment(name, model, algo, force=force)
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
