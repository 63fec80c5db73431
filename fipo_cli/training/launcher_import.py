"""``fipo init NAME --from-launcher SCRIPT``: an experiment written from an official launcher script.

The script is read, never run (:mod:`fipo_cli.experiment.launcher_script`); its overrides are put in
fipo's terms (:mod:`fipo_cli.verl_adapter.official`) over the recipe of the model it trains; where verl
is installed, the keys kept verbatim are checked against its config (one verl lacks is dropped, named
with verl's closest key). The file is the recipe's, each value the launcher sets marked
``launcher: <its override>``, its verbatim keys in a ``verl:`` section and what was not taken listed
at the end. It is validated before it is written, atomically.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from fipo_cli import __version__
from fipo_cli.core.errors import UsageError
from fipo_cli.core.files import atomic_write_text
from fipo_cli.experiment import config, launcher_script, recipes
from fipo_cli.runs import experiments
from fipo_cli.runs.layout import EXPERIMENT_FILE, EXPERIMENTS_DIR
from fipo_cli.verl_adapter import official
from fipo_cli.verl_adapter.official import Imported, Row

COMMENT_COLUMN = 41
_SECTION = re.compile(r"^([a-z_]+):\s*(#.*)?$")
_KEY = re.compile(r"^  ([a-z_]+):")
#: The two spellings of the influence-weight bounds: the launcher's replaces the recipe's other one.
_CLIP_SPELLINGS = ({"future_kl_clip_low", "future_kl_clip_high"}, {"future_kl_clip_ratio", "future_kl_clip_high_only"})


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, allow_unicode=True).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _line(leaf: str, value: Any, comment: str) -> str:
    return f"  {leaf}: {_scalar(value)}".ljust(COMMENT_COLUMN - 1) + f" # {comment}"


def render(imported: Imported, name: str, recipe_text: str) -> str:
    """The experiment file: the recipe's lines with the launcher's values put in."""
    values = dict(imported.fipo)
    launcher_leaves = {key.split(".", 1)[1] for key in values if key.startswith("algorithm.")}
    replaced = set().union(*(other for mine, other in (_CLIP_SPELLINGS, _CLIP_SPELLINGS[::-1]) if launcher_leaves & mine))
    lines = recipe_text.splitlines()
    keys_at: dict[int, str] = {}  # line index -> section.key
    section = None
    for index, line in enumerate(lines):
        header, match = _SECTION.match(line), _KEY.match(line)
        section = header.group(1) if header else section
        if match and section:
            keys_at[index] = f"{section}.{match.group(1)}"
    last_of = {key.split(".", 1)[0]: index for index, key in keys_at.items()}
    extras: dict[str, list[str]] = {}
    for key in values:
        if key not in keys_at.values():
            extras.setdefault(key.split(".", 1)[0], []).append(key)
    out = [
        f"# Imported by `fipo init --from-launcher` (fipo {__version__}) from {imported.script.path}, line "
        f"{imported.script.line},",
        f"# over the recipe {imported.model}-{imported.algorithm}: \"launcher:\" marks a value the launcher's command "
        "sets; the other comments are the recipe's.",
    ]
    for index, line in enumerate(lines):
        key = keys_at.get(index)
        if line.startswith("name:"):
            out.append(f"name: {name}")
        elif key is None:
            out.append(line)
        elif not (key.startswith("algorithm.") and key.split(".", 1)[1] in replaced):
            if key in values:
                while out and out[-1].startswith("  #"):  # the recipe's comment on its own value goes with it
                    out.pop()
            out.extend(_notes(imported, key))
            out.append(_line(key.split(".", 1)[1], *values[key]) if key in values else line)
        section = key.split(".", 1)[0] if key else None
        if section and last_of.get(section) == index:
            for extra in extras.pop(section, []):
                out.extend(_notes(imported, extra))
                out.append(_line(extra.split(".", 1)[1], *values[extra]))
    for section, keys in extras.items():  # a section the recipe does not have
        out += ["", f"{section}:", *(_line(key.split(".", 1)[1], *values[key]) for key in keys)]
    verl_lines = [_line(_scalar(key), value, comment) for key, (value, comment) in imported.verl.items()]
    verl_notes = [f"  # {comment}" for key, comment in imported.commented.items() if key.startswith("verl.")]
    if verl_lines or verl_notes:
        out += ["", "# The launcher's keys that fipo has no key for, as verl takes them (applied after fipo's own):",
                "verl:" if verl_lines else "verl: {}", *verl_notes, *verl_lines]
    not_taken = [row for row in imported.rows if row.outcome in ("dropped", "environment")]
    if not_taken:
        out += ["", "# Not taken from the launcher:"]
        out += [f"#   {row.written.strip()}: {row.detail}" for row in not_taken]
    return "\n".join(out) + "\n"


def _notes(imported: Imported, key: str) -> list[str]:
    note = imported.commented.get(key)
    return [f"  # {note}"] if note else []


def _check_verbatim(imported: Imported) -> None:
    """Where verl is installed, drop verbatim keys its config lacks (named with verl's closest key)."""
    from fipo_cli.verl_adapter import compose as verl_compose
    from fipo_cli.verl_adapter import overrides as verl_overrides
    from fipo_cli.verl_adapter import verl_keys

    if not imported.verl or verl_compose.config_dir() is None:
        return
    base_text = recipes.recipe_path(imported.model, imported.algorithm).read_text()
    base = config.build(yaml.safe_load(base_text))
    overrides = verl_overrides.experiment_overrides(base, experiment_name="import", checkpoint_dir=Path("checkpoints"),
                                                   hydra_dir=Path("hydra"), wandb=True, worker_env={})
    composed = verl_compose.compose(overrides)
    keys = verl_keys.section_keys({key: value for key, (value, _) in imported.verl.items()})
    for key in keys:
        problems, _ = verl_keys.against_config(composed, [key])
        if problems:
            del imported.verl[key.written]
            rows = [row for row in imported.rows if not (row.outcome == "verbatim" and row.detail == f"verl: {key.written}")]
            written = next(row.written for row in imported.rows if row.detail == f"verl: {key.written}")
            imported.rows[:] = [*rows, Row("dropped", written, problems[0].split(": ", 1)[1])]


def import_experiment(name: str, script: Path, model: str | None, algorithm: str | None, *, force: bool = False,
                      root: Path = EXPERIMENTS_DIR) -> tuple[Path, Imported]:
    """Write ``root/NAME/fipo.yaml`` from the launcher at ``script``; nothing is written when it refuses."""
    experiments.check_name(name)
    target = root / name / EXPERIMENT_FILE
    if target.exists() and not force:
        raise UsageError(f"experiment {name!r} already exists ({target})", hint="pass --force to replace its fipo.yaml")
    if model is not None:
        recipes.recipe_path(model)  # names the recipes when --model is not one
    if algorithm is not None:
        recipes.recipe_path(model or recipes.MODELS[0], algorithm)
    parsed = launcher_script.read(script)
    imported = official.import_launcher(parsed, model, algorithm)
    _check_verbatim(imported)
    text = render(imported, name, recipes.recipe_path(imported.model, imported.algorithm).read_text())
    config.build(yaml.safe_load(text), source=f"the experiment imported from {script}")
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, text)
    return target, imported


def report_lines(imported: Imported) -> list[str]:
    """The import report: what was mapped, kept verbatim, not taken (with why)."""
    counts = ", ".join(f"{imported.count(outcome)} {outcome}" for outcome in ("mapped", "verbatim", "dropped", "environment"))
    lines = [f"{len(imported.script.overrides)} overrides of {imported.script.path}:{imported.script.line} "
             f"({imported.script.module}): {counts}"]
    width = max((len(row.written.strip()) for row in imported.rows), default=0)
    for outcome in ("mapped", "verbatim", "environment", "dropped"):
        lines += [f"  {outcome:<11} {row.written.strip().ljust(width)}  {row.detail}"
                  for row in imported.rows if row.outcome == outcome]
    if imported.script.submitted_to_ray:
        lines.append("  note        ray job submit: fipo gives every worker the official environment itself "
                     "(TORCH_NCCL_AVOID_RECORD_STREAMS, CUDA_DEVICE_MAX_CONNECTIONS); `--launcher ray` submits to a "
                     "running Ray cluster")
    return lines
