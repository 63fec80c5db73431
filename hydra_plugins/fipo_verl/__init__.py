"""Hydra search-path plugin: lets verl's trainer config accept the FIPO knobs.

Hydra imports every module under the ``hydra_plugins`` namespace when an app starts. For
verl's trainer config only (its primary config directory is ``verl/trainer/config``),
this plugin puts ``fipo_cli/verl_conf`` in front of the search path; its
``actor/dp_actor.yaml`` is verl's own ``dp_actor`` (reached through verl's trainer directory,
not copied) plus the FIPO knobs under ``policy_loss``. So
``actor_rollout_ref.actor.policy_loss.decay_rate=32`` composes without a ``+``, and nothing
changes for other Hydra apps. The official launcher writes its knobs with a ``+``, which Hydra
refuses for a key that exists ("Could not append to config"): fipo takes them as ``verl.+KEY``
and passes ``++KEY`` (fipo_cli/verl_adapter/verl_keys.py).

Set ``FIPO_VERL_KNOBS=0`` to switch it off.
"""

from __future__ import annotations

import os

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

FIPO_CONFIG_DIR = "pkg://fipo_cli.verl_conf"
PKG = "pkg://"


def _verl_trainer_root(path: str | None) -> str | None:
    """The directory above verl's trainer config directory ``path`` (from which ``config/actor/dp_actor``
    names verl's own file), in the same form; None for any other config directory.

    The same form, not ``pkg://verl.trainer``: a ``pkg://`` source imports its package, and
    ``import verl`` takes seconds; fipo's in-process compose (:mod:`fipo_cli.verl_adapter.compose`) names
    verl's config directory by its path so as not to import verl.
    """
    normalized = (path or "").rstrip("/").replace("\\", "/")
    if normalized == f"{PKG}verl.trainer.config":
        return f"{PKG}verl.trainer"
    if not normalized.startswith(PKG) and normalized.endswith("verl/trainer/config"):
        return normalized[: -len("/config")]
    return None


class FipoVerlSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if os.environ.get("FIPO_VERL_KNOBS", "1") == "0":
            return
        root = next(filter(None, (_verl_trainer_root(element.path) for element in search_path.get_path())), None)
        if root is None:
            return
        search_path.prepend(provider="fipo", path=FIPO_CONFIG_DIR)
        search_path.append(provider="fipo-verl", path=root)
