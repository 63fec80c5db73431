"""W&B runs that fipo itself starts (an evaluation's, a report's): their mode, and starting one safely.

Training runs are started by verl's trainer from the ``WANDB_*`` variables of
:mod:`fipo_cli.tracking.identity`; these are the runs fipo's own process logs to. wandb is
imported inside :func:`wandb_run`: ``fipo --help`` never imports it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from fipo_cli.core.errors import FipoError
from fipo_cli.tracking.identity import wandb_mode

#: Settings of every run fipo starts. console="off": fipo's own output stays out of the run's
#: logs; x_disable_stats: no system metrics of the evaluating machine; silent: none of W&B's own
#: console lines in fipo's output (wandb 0.31 prints its offline notice and `wandb leet` hint even
#: when quiet): fipo names the run itself ("W&B: run ID"), and W&B's failures still raise.
_SETTINGS = {"console": "off", "x_disable_stats": True, "quiet": True, "silent": True}


def resolve_mode(setting: str, env: Mapping[str, str] | None = None) -> str:
    """The W&B mode to log with, from a tracking ``setting`` (auto, online, offline, disabled).

    ``disabled`` always wins: tracking switched off stays off. Otherwise an explicit
    ``WANDB_MODE`` wins (offline on a node without network, say), else ``setting`` as
    training resolves it (``auto``: online with credentials, offline without).
    """
    env = os.environ if env is None else env
    if setting == "disabled":
        return setting
    return env.get("WANDB_MODE") or wandb_mode(setting, env)


@contextlib.contextmanager
def wandb_run(*, directory: Path, settings: Mapping[str, Any] | None = None, **init: Any) -> Iterator[Any]:
    """A started W&B run, finished on exit; wandb's own failures (no credentials, no network) as FipoError.

    ``resume="allow"``: the run is created when it does not exist yet and continued when it does.
    """
    try:
        import wandb
    except ImportError:
        raise FipoError(
            "W&B logging needs the wandb package", hint="pip install wandb (verl, in the `train` extra, brings it)"
        ) from None
    directory.mkdir(parents=True, exist_ok=True)
    try:
        run = wandb.init(
            dir=directory, resume="allow", settings=wandb.Settings(**_SETTINGS, **(settings or {})), **init
        )
    except wandb.errors.Error as error:
        raise FipoError(
            f"W&B: could not start the run ({error})",
            hint="the results are saved; check W&B credentials and network, "
            "or set WANDB_MODE=offline and run `wandb sync` later",
        ) from error
    with run:
        yield run
