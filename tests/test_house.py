"""The house rules that neither import-linter nor ruff checks, read from the source with ``ast`` (nothing imported).

import-linter (``lint-imports``, contracts in pyproject.toml) holds the layers, the independence of
training, eval and report and the absence of circles; ruff holds the code. These hold the rest:

- every module belongs to a layer of the contract (or is one of the public re-exports);
- which launcher a run has is asked of the launcher interface only: no ``launcher == "slurm"``
  outside ``fipo_cli/launch``;
- a name that two modules both give a constant means one thing: never two different values;
- the names of fipo's files live in ``fipo_cli/runs/layout.py``: no other module spells one.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import fipo_cli

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PACKAGE = Path(fipo_cli.__file__).parent
CONTRACTS = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
#: Modules outside the layers: the package itself, ``python -m fipo_cli``, and the public paths kept as re-exports.
OUTSIDE = {"fipo_cli", "fipo_cli.__main__", "fipo_cli.verl_plugin", "fipo_cli.toy_task", "fipo_cli.run_task",
           "fipo_cli.verl_conf", "fipo_cli.verl_conf.actor"}
LAUNCHERS = {"local", "slurm", "ray"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(path): ast.parse(path.read_text(encoding="utf-8")) for path in sorted(PACKAGE.rglob("*.py"))}


def layers() -> list[str]:
    (contract,) = [contract for contract in CONTRACTS if contract["type"] == "layers"]
    return [package.strip() for layer in contract["layers"] for package in layer.split("|")]


def constants(tree: ast.Module) -> dict[str, str]:
    """Module-level UPPER_CASE names bound to a value, with the value as source."""
    found = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            if isinstance(target, ast.Name) and target.id.lstrip("_").isupper() and node.value is not None:
                found[target.id] = ast.unparse(node.value)
    return found


def test_every_module_belongs_to_a_layer():
    packages = layers()
    assert len(packages) == 13, packages
    homeless = [name for name in modules() if name not in OUTSIDE and not any(
        name == package or name.startswith(package + ".") for package in packages)]
    assert homeless == []


def test_only_the_launchers_ask_which_launcher_a_run_has():
    def launcher_test(node: ast.Compare) -> bool:
        names = [side for side in (node.left, *node.comparators)
                 if (isinstance(side, ast.Attribute) and side.attr == "launcher")
                 or (isinstance(side, ast.Name) and side.id == "launcher")]
        words = {value.value for side in (node.left, *node.comparators)
                 for value in ([side] if isinstance(side, ast.Constant) else getattr(side, "elts", []))
                 if isinstance(value, ast.Constant)}
        return bool(names) and bool(words & LAUNCHERS)

    offenders = [f"{name}:{node.lineno}" for name, tree in modules().items() if not name.startswith("fipo_cli.launch")
                 for node in ast.walk(tree) if isinstance(node, ast.Compare) and launcher_test(node)]
    assert offenders == []


def test_a_constant_name_means_one_value_everywhere():
    values: dict[str, set[str]] = {}
    for tree in modules().values():
        for name, value in constants(tree).items():
            values.setdefault(name, set()).add(value)
    assert {name: sorted(found) for name, found in values.items() if len(found) > 1} == {}


def test_file_names_are_spelled_only_in_the_layout():
    trees = modules()
    layout = constants(trees["fipo_cli.runs.layout"])
    files = {ast.literal_eval(value) for value in layout.values() if value.startswith(("'", '"'))}
    files = {name for name in files if "." in name}  # file names; folder names are common words ("eval", "report")
    assert {"sweep.json", "config.yaml", "fipo.yaml", "status.json", "results.json", "slurm-%j.out"} <= files

    def spelled(node: ast.AST) -> bool:
        """A string that is one of the layout's file names, or starts a checkpoint's ``step_N`` folder."""
        return isinstance(node, ast.Constant) and isinstance(node.value, str) and (
            node.value in files or node.value.startswith("step_"))

    offenders = sorted(f"{name}:{node.lineno} {node.value!r}" for name, tree in trees.items()
                       if name != "fipo_cli.runs.layout" for node in ast.walk(tree) if spelled(node))
    assert offenders == []
