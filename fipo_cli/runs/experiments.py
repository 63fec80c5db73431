"""Experiment directories: ``experiments/NAME/fipo.yaml`` and its ``runs/``.

``fipo init`` creates one from a recipe; the other commands find one by name (under
``./experiments``) or by path (the directory or its ``fipo.yaml``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from fipo_cli.core.errors import UsageError
from fipo_cli.core.files import atomic_write_text
from fipo_cli.experiment import config, recipes
from fipo_cli.runs.layout import EXPERIMENT_FILE, EXPERIMENTS_DIR, RUNS_DIR


@dataclass(frozen=True)
class ExperimentDir:
    """Where an experiment lives and the config file it is defined by."""

    path: Path
    config_file: Path

    @property
    def runs(self) -> Path:
        return self.path / RUNS_DIR


def check_name(name: str) -> None:
    if not config.SAFE_NAME.match(name):
        raise UsageError(
            f"experiment name {name!r} is not safe as a directory and job name",
            hint="use 1–64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )


def init_experiment(name: str, model: str, algorithm: str, *, force: bool = False, root: Path = EXPERIMENTS_DIR) -> Path:
    """Create ``root/NAME/fipo.yaml`` from a recipe, keeping the recipe's comments.

    Refuses an existing experiment unless ``force``; nothing is written when it refuses.
    """
    check_name(name)
    recipe = recipes.recipe_path(model, algorithm)
    target = root / name / EXPERIMENT_FILE
    if target.exists() and not force:
        raise UsageError(f"experiment {name!r} already exists ({target})", hint="pass --force to replace its fipo.yaml")
    text = re.sub(r"^name: .*$", f"name: {name}", recipe.read_text(), count=1, flags=re.M)
    config.build(yaml.safe_load(text), source=str(recipe))  # a shipped recipe must stay valid
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, text)
    return target


def find_experiment(reference: str, root: Path = EXPERIMENTS_DIR) -> ExperimentDir:
    """An experiment by name (``root/NAME``) or by path (its directory or its YAML file).

    The runs of ``fipo train --model M`` (``root/M-ALGO/runs``) make ``M-ALGO`` an experiment
    too, defined by its recipe: ``fipo train M-ALGO --resume RUN`` continues one of them.
    """
    candidate = Path(reference)
    if candidate.is_file():
        return ExperimentDir(candidate.parent, candidate)
    for directory in (candidate, root / reference):
        if (directory / EXPERIMENT_FILE).is_file():
            return ExperimentDir(directory, directory / EXPERIMENT_FILE)
    model, _, algorithm = reference.rpartition("-")
    if (root / reference).is_dir() and model in recipes.MODELS and algorithm in recipes.ALGORITHMS:
        return recipe_experiment_dir(model, algorithm, root)
    known = sorted(p.parent.name for p in root.glob(f"*/{EXPERIMENT_FILE}")) if root.is_dir() else []
    raise UsageError(
        f"no experiment {reference!r} (looked for {root / reference / EXPERIMENT_FILE})",
        hint=(f"experiments here: {', '.join(known)}" if known else "create one with `fipo init NAME --model MODEL`"),
    )


def find_runs_dir(reference: str, root: Path = EXPERIMENTS_DIR) -> Path:
    """The ``runs/`` directory of an experiment named as :func:`find_experiment` finds it, or of a
    recipe's runs (``fipo train --model M`` keeps them in ``root/<recipe>/runs/``, with no fipo.yaml)."""
    try:
        return find_experiment(reference, root).runs
    except UsageError:
        recipe_runs = root / reference / RUNS_DIR
        if recipe_runs.is_dir():
            return recipe_runs
        raise


def run_names(runs_dir: Path) -> list[str]:
    """The runs in a ``runs/`` directory, sorted; empty when it does not exist."""
    return sorted(path.name for path in runs_dir.iterdir() if path.is_dir()) if runs_dir.is_dir() else []


def find_run(reference: str, root: Path = EXPERIMENTS_DIR, *, label: str = "") -> Path:
    """The run directory named by ``EXP/RUN``: ``EXP`` as :func:`find_runs_dir` finds it (a name under
    ``root``, a path or a recipe's runs), ``RUN`` a directory in its ``runs/``.

    ``label`` starts the messages (``"--run "``), naming the option the reference came from.
    """
    experiment_reference, _, run_name = reference.rstrip("/").rpartition("/")
    if not experiment_reference or not run_name:
        raise UsageError(
            f"{label}{reference!r}: expected EXP/RUN",
            hint=f"for example {label}fipo-32b/20261122-013000 (runs are kept in experiments/EXP/runs/)",
        )
    runs_dir = find_runs_dir(experiment_reference, root)
    run_dir = runs_dir / run_name
    if not run_dir.is_dir():
        runs = run_names(runs_dir)
        raise UsageError(
            f"{label}{reference!r}: no run {run_name!r} in {runs_dir}",
            hint=f"runs of this experiment: {', '.join(runs)}" if runs else "this experiment has no runs yet",
        )
    return run_dir


def recipe_experiment_dir(model: str, algorithm: str, root: Path = EXPERIMENTS_DIR) -> ExperimentDir:
    """Where runs trained straight from a recipe (``fipo train --model M``) are kept."""
    recipe = recipes.recipe_path(model, algorithm)
    return ExperimentDir(root / recipe.stem, recipe)
