"""W&B run identity, in one place: the mode, tags, names and ids of the W&B runs fipo makes.

``fipo train`` and ``fipo sweep`` hand them to verl's trainer as ``WANDB_*`` variables
(:func:`wandb_env`); ``fipo eval`` and ``fipo report`` read them to find or link a training run.
Pure: no wandb import, so every command may use it.
"""

from __future__ import annotations

import netrc
import re
import shlex
from collections.abc import Mapping
from pathlib import Path

from fipo_cli.core.errors import FipoError
from fipo_cli.experiment.config import Experiment, TrackingConfig
from fipo_cli.runs.layout import STATUS_FILE, TRACKING_CONFIG_FILE, WANDB_DIR
from fipo_cli.runs.status import read_status

#: Names the tracking config file; fipo's verl plugin merges it into the config W&B records.
TRACKING_CONFIG_ENV = "FIPO_TRACKING_CONFIG"
#: W&B's limit on the length of one tag.
MAX_TAG = 64


def wandb_mode(setting: str, env: Mapping[str, str]) -> str:
    """``auto`` is online when W&B credentials are present (WANDB_API_KEY or ~/.netrc), offline otherwise."""
    if setting != "auto":
        return setting
    return "online" if wandb_credentials(env) else "offline"


def wandb_credentials(env: Mapping[str, str]) -> str | None:
    """Where W&B credentials were found (never their value), or None."""
    if env.get("WANDB_API_KEY"):
        return "WANDB_API_KEY"
    netrc_path = Path(env.get("NETRC", Path.home() / ".netrc"))
    try:
        if netrc_path.is_file() and netrc.netrc(netrc_path).authenticators("api.wandb.ai"):
            return str(netrc_path)
    except (netrc.NetrcParseError, OSError):
        return None
    return None


def wandb_tags(experiment: Experiment) -> list[str]:
    """The W&B tags of an experiment's runs: the algorithm, the model's last path part, then ``tracking.tags``.

    Commas are dropped (``WANDB_TAGS`` is comma-separated), duplicates too, and each tag is
    cut to W&B's 64 characters.
    """
    model = experiment.model.path.rstrip("/").rpartition("/")[2]
    tags = [experiment.algorithm.name, model, *experiment.tracking.tags]
    cleaned = (tag.replace(",", "").strip()[:MAX_TAG] for tag in tags)
    return list(dict.fromkeys(tag for tag in cleaned if tag))


def _qualified(experiment_name: str, run_name: str) -> str:
    """``EXP-RUN``, or the run's name alone when it starts with the experiment's already (a sweep's runs:
    ``EXP-swXXXXXX-000-gamma0.9``)."""
    return run_name if run_name.startswith(f"{experiment_name}-") else f"{experiment_name}-{run_name}"


def wandb_run_id(experiment_name: str, run_name: str) -> str:
    """A new run's W&B id: unique per run, ``EXP-RUN`` with what W&B does not allow in an id made ``-``."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", _qualified(experiment_name, run_name))[:128]


def recorded_run_id(run_dir: Path) -> str | None:
    """The W&B id a run started with (its status.json), which it keeps across resumes and requeues,
    also when an older fipo named it; None for a new run."""
    if not (run_dir / STATUS_FILE).is_file():
        return None
    try:
        return read_status(run_dir).wandb_run_id
    except FipoError:  # an unreadable record: the run gets the id fipo would give it now
        return None


def wandb_run_name(experiment: Experiment, run_name: str) -> str:
    """The run's W&B display name: ``tracking.run_name``, else ``EXP-RUN`` (the run's name alone
    when it starts with the experiment's)."""
    return experiment.tracking.run_name or _qualified(experiment.name, run_name)


def wandb_env(experiment: Experiment, run_name: str, run_dir: Path, inherited: Mapping[str, str]) -> dict[str, str]:
    """The ``WANDB_*`` variables of a run's trainer (wandb.init reads them; verl's Tracking passes
    none of them, so they stand); {} when the run does not track."""
    mode = wandb_mode(experiment.tracking.mode, inherited)
    if mode == "disabled":
        return {}
    env = {
        "WANDB_MODE": mode,
        "WANDB_RUN_ID": recorded_run_id(run_dir) or wandb_run_id(experiment.name, run_name),
        "WANDB_RESUME": "allow",
        "WANDB_DIR": str(run_dir),
        "WANDB_JOB_TYPE": "train",
        "WANDB_TAGS": ",".join(wandb_tags(experiment)),
        TRACKING_CONFIG_ENV: str(run_dir / TRACKING_CONFIG_FILE),
    }
    if experiment.tracking.entity:
        env["WANDB_ENTITY"] = experiment.tracking.entity
    if experiment.tracking.group:
        env["WANDB_RUN_GROUP"] = experiment.tracking.group
    return env


def wandb_link(tracking: TrackingConfig, env: Mapping[str, str]) -> str | None:
    """Where a run's W&B run is, from its :func:`wandb_env`: its URL when the entity is known,
    else project/runs/ID; None when the run does not track."""
    run_id, mode = env.get("WANDB_RUN_ID"), env.get("WANDB_MODE")
    if run_id is None:
        return None
    path = f"{tracking.project}/runs/{run_id}"
    if mode == "offline":
        return f"{path} (offline)"
    return f"https://wandb.ai/{tracking.entity}/{path}" if tracking.entity else path


def wandb_sync_command(directory: Path) -> str | None:
    """The command that uploads the offline W&B runs kept under ``directory/wandb``; None when there are none.

    The glob covers every offline folder of the run (a resumed run adds one per resume);
    W&B names them by start time, so the shell passes them in order.
    """
    wandb_dir = Path(directory).absolute() / WANDB_DIR
    if not any(wandb_dir.glob("offline-run-*")):
        return None
    return f"wandb sync {shlex.quote(str(wandb_dir))}/offline-run-*"
