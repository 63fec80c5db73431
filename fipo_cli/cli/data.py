"""`fipo data prepare`: verl parquet files of the training and validation sets."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from fipo_cli.cli.app import app

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
    validation: list[str] | None = typer.Option(
        None, "--validation", metavar="SETS",
        help="Validation sets (repeat or comma-separate): aime24, aime25, math500 or files.",
    ),
    problem_key: str | None = typer.Option(None, "--problem-key", help="Column holding the problem text."),
    answer_key: str | None = typer.Option(None, "--answer-key", help="Column holding the answer."),
    force: bool = typer.Option(False, "--force", help="Replace existing output files."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report what would be written; write nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Write DAPO-Math-17k and AIME 2024/2025 as verl parquet files with the DAPO "Answer:" prompt."""
    from fipo_cli.core.errors import UsageError
    from fipo_cli.data.prepare import DEFAULT_TRAIN, DEFAULT_VALIDATION, prepare, recipe_note

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
