"""verl's trainer config, composed in this process as ``python -m verl.trainer.main_ppo --cfg job`` does.

``main_ppo`` is ``@hydra.main(config_path="config", config_name="ppo_trainer", version_base=None)``;
its ``--cfg job`` composes that config with the overrides (``RunMode.RUN``) and prints it without
the ``hydra`` node. Here Hydra's compose API does the same from the same files: verl's
``trainer/config`` directory, found with :func:`importlib.util.find_spec`, which locates verl's
package without executing its ``__init__`` (that imports torch, Ray and every verl plugin, seconds
of work). Hydra discovers fipo's search-path plugin (``hydra_plugins/fipo_verl``) here as it does in
``main_ppo``, so the search path is the same too. verl registers no OmegaConf resolver of its own,
and ``--cfg job`` does not resolve interpolations, so nothing of verl needs to run for the result
to be the same (``tests/verl_adapter/test_compose.py`` compares both ways on every recipe).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fipo_cli.core.errors import ConfigError
from fipo_cli.verl_adapter.overrides import TRAINER_MODULE
from fipo_cli.verl_adapter.version import EXPECTED_VERL

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from fipo_cli.verl_adapter.verl_keys import VerlKey

#: ``main_ppo``'s ``@hydra.main`` arguments: its config directory (next to it), config name and job name.
CONFIG_SUBDIR = ("trainer", "config")
CONFIG_NAME = "ppo_trainer"
JOB_NAME = "main_ppo"


def config_dir() -> Path | None:
    """verl's trainer config directory; None when verl or Hydra is not installed here."""
    verl = importlib.util.find_spec("verl")
    if verl is None or not verl.submodule_search_locations or importlib.util.find_spec("hydra") is None:
        return None
    directory = Path(next(iter(verl.submodule_search_locations))).joinpath(*CONFIG_SUBDIR)
    return directory if (directory / f"{CONFIG_NAME}.yaml").is_file() else None


def compose_all(points: Mapping[str, Sequence[str]]) -> dict[str, DictConfig] | None:
    """verl's job config for each labelled list of overrides; None when verl is not installed here.

    Raises one ConfigError naming every point that verl's config rejects, with the override at fault.
    """
    directory = config_dir()
    if directory is None:
        return None
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    composed, problems = {}, []
    # One Hydra instance for all points sets up the search path and plugins once; each compose
    # still reads verl's files again (Hydra caches them per compose only), about 0.3 s a point.
    with initialize_config_dir(config_dir=str(directory), job_name=JOB_NAME, version_base=None):
        for label, overrides in points.items():
            try:
                composed[label] = compose(CONFIG_NAME, overrides=list(overrides))
            except (HydraException, OmegaConfBaseException) as error:
                problem = _rejection(overrides, error)
                problems.append(f"{label}: {problem}" if label else problem)
    if problems:
        raise ConfigError(
            problems,
            hint=f"fipo is built for verl {EXPECTED_VERL} (`fipo doctor` shows the installed one); "
                 f"`python -m {TRAINER_MODULE} --cfg job <overrides>` shows verl's own message",
        )
    return composed


def check_points(points: Mapping[str, Sequence[str]], extra: Mapping[str, Sequence[VerlKey]]) -> list[str] | None:
    """Compose every point as :func:`compose_all` does, after checking the verl keys of its ``verl:``
    section (``extra[label]``, the last overrides of the point) against verl's config composed without
    them: a key verl lacks is named with verl's closest key. The keys' warnings (each once), or None
    when verl is not installed here."""
    from fipo_cli.verl_adapter.verl_keys import against_config

    problems, warnings = [], []
    checked: set[tuple[str, ...]] = set()
    for label, overrides in points.items():
        keys = list(extra.get(label, ()))
        signature = tuple(key.written for key in keys)
        if not keys or signature in checked:
            continue
        checked.add(signature)
        base = compose_all({label: list(overrides)[: len(overrides) - len(keys)]})
        if base is None:
            return None
        found, cautions = against_config(base[label], keys)
        problems += [f"{label}: {problem}" if label else problem for problem in found if problem not in problems]
        warnings += [caution for caution in cautions if caution not in warnings]
    if problems:
        raise ConfigError(problems, hint="verl keys are the paths of verl's trainer config (`python -m "
                                         f"{TRAINER_MODULE} --cfg job` prints them); + adds a key, ~ deletes one")
    return None if compose_all(points) is None else warnings


def compose(overrides: Sequence[str]) -> DictConfig | None:
    """verl's job config for these overrides, as ``main_ppo --cfg job`` prints it; None without verl."""
    composed = compose_all({"": overrides})
    return None if composed is None else composed[""]


def _rejection(overrides: Sequence[str], error: Exception) -> str:
    """One line: the override verl's config rejects, and Hydra's reason (with OmegaConf's, if any)."""
    reason = " ".join(str(error).split("\n", 1)[0].split())
    cause = error.__cause__
    if cause is not None and str(cause).strip():
        reason += f" ({str(cause).splitlines()[0].strip()})"
    culprit = _culprit(overrides, str(error))
    where = f"the override {culprit!r}" if culprit else "the overrides"
    return f"the installed verl's config rejects {where}: {reason}"


def _culprit(overrides: Sequence[str], message: str) -> str | None:
    """The override a Hydra error is about: the one that does not parse, else the one whose key it quotes."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_override(override)
        except HydraException:  # the parser's own error type, before Hydra wraps it as OverrideParseException
            return override
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if f"'{key}'" in message:
            return override
    return None
