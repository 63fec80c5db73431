"""The house rules of fipo's modules, read from their source with ``ast`` (nothing is imported).

- Launchers (``fipo_cli/launch``) start processes and talk to schedulers; they do not import
  ``fipo_cli.training.train`` (the job's side of training is ``fipo_cli.training.run_task``).
- ``fipo_cli/report`` has no import circle, counting imports inside functions too.
- W&B run identity (mode, tags, names, ids, links) lives in ``fipo_cli.tracking.identity`` only:
  nobody defines those functions elsewhere or reaches them through ``fipo_cli.training.train``, and the
  verl plugin does not import ``fipo_cli.training.train``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fipo_cli

PACKAGE = Path(fipo_cli.__file__).parent
IDENTITY = "fipo_cli.tracking.identity"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(path): ast.parse(path.read_text(encoding="utf-8")) for path in sorted(PACKAGE.rglob("*.py"))}


def imports(tree: ast.Module, known: set[str]) -> dict[str, set[str]]:
    """fipo modules imported anywhere in ``tree`` (in functions too), each with the names taken from it."""
    found: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.setdefault(alias.name, set())
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if submodule in known:  # `from fipo_cli import train`
                    found.setdefault(submodule, set())
                else:
                    found.setdefault(node.module, set()).add(alias.name)
    return {name: names for name, names in found.items() if name in known}


def test_the_rules_see_the_imports_they_check():
    trees = modules()
    graph = {name: imports(tree, set(trees)) for name, tree in trees.items()}
    assert "fipo_cli.training.train" in graph["fipo_cli.run_task"]  # a lazy import, inside run_task()
    assert graph["fipo_cli.report.runner"]["fipo_cli.tracking.identity"] == {"wandb_sync_command"}


def test_launchers_do_not_import_train():
    trees = modules()
    offenders = [name for name, tree in trees.items()
                 if name.startswith("fipo_cli.launch") and "fipo_cli.training.train" in imports(tree, set(trees))]
    assert offenders == []


def test_report_has_no_import_circle():
    trees = modules()
    report = {name for name in trees if name.startswith("fipo_cli.report")}
    graph = {name: set(imports(trees[name], report)) - {name} for name in report}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(step == goal or (step not in seen and reaches(step, goal, seen | {step})) for step in graph[start])

    assert sorted(name for name in report if reaches(name, name, {name})) == []


def test_wandb_run_identity_has_one_room():
    trees = modules()
    identity = {node.name for node in trees[IDENTITY].body if isinstance(node, ast.FunctionDef)}
    identity |= {target.id for node in trees[IDENTITY].body if isinstance(node, ast.Assign)
                 for target in node.targets if isinstance(target, ast.Name)}
    assert {"wandb_mode", "wandb_tags", "wandb_run_id", "wandb_run_name", "wandb_env",
            "TRACKING_CONFIG_ENV"} <= identity
    for name, tree in trees.items():
        if name == IDENTITY:
            continue
        defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.ClassDef)}
        assigned = {target.id for node in tree.body if isinstance(node, ast.Assign)
                    for target in node.targets if isinstance(target, ast.Name)}
        assert not (defined | assigned) & identity, name
        taken_from_train = imports(tree, set(trees)).get("fipo_cli.training.train", set())
        assert not taken_from_train & identity, name
    assert "fipo_cli.training.train" not in imports(trees["fipo_cli.verl_plugin"], set(trees))
