"""`fipo report --from-wandb`: a training run's metrics from its online W&B history instead of metrics.jsonl.

For runs whose ``metrics.jsonl`` is not at hand (trained on another cluster, say) but whose
W&B run was synced. It needs W&B credentials and the network, so the tests, which have
neither, check only its failure message; reading a real history is not tested here.

verl logs every training step with ``step=global_step``, so W&B's ``_step`` is the training
step. The rows ``fipo eval`` appends to a finished training run carry only ``eval/*`` keys
(charted against ``eval/step``) and no metric the charts read.
"""

from __future__ import annotations

import math
from pathlib import Path

from fipo_cli.core.errors import FipoError, UsageError
from fipo_cli.experiment.config import Experiment
from fipo_cli.runs.status import read_status


def read_history(run_dir: Path, experiment: Experiment | None) -> dict[str, dict[int, float]]:
    """The numeric metrics of the run's W&B history as ``{name: {step: value}}``."""
    if experiment is None:
        raise UsageError(f"{run_dir}: no config.yaml, so no W&B project to read the history from")
    run_id = read_status(run_dir).wandb_run_id
    if run_id is None or experiment.tracking.mode == "disabled":
        raise UsageError(f"{run_dir}: the run was trained without W&B", hint="drop --from-wandb to read metrics.jsonl")
    tracking = experiment.tracking
    path = "/".join(part for part in (tracking.entity, tracking.project, run_id) if part)
    try:
        import wandb
    except ImportError:
        raise FipoError("--from-wandb needs the wandb package", hint="pip install wandb") from None
    metrics: dict[str, dict[int, float]] = {}
    try:
        for row in wandb.Api().run(path).scan_history():
            step = row.get("_step")
            for name, value in row.items():
                if name.startswith("_") or isinstance(value, bool) or not isinstance(value, int | float):
                    continue
                if math.isfinite(value) and isinstance(step, int):
                    metrics.setdefault(name, {})[step] = float(value)
    except (wandb.errors.Error, ValueError, OSError) as error:
        raise FipoError(
            f"W&B: cannot read the history of {path}: {error}",
            hint="check W&B credentials (wandb login) and the network, or drop --from-wandb to read metrics.jsonl",
        ) from error
    if not metrics:
        raise UsageError(f"W&B run {path} has no numeric metric in its history")
    return metrics
