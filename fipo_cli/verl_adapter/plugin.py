"""verl 0.9.1 adapter: the ``future_kl`` policy loss and its config section.

Loaded by verl itself: ``pyproject.toml`` declares this module in the ``verl.plugins``
entry-point group, and ``import verl`` loads every such entry point, so the loss is
registered in the driver and in every Ray worker with no change to verl and no
environment variable. (verl swallows plugin import errors at debug level; the tests
check registration in a fresh process for that reason.)

The FIPO knobs live in ``actor_rollout_ref.actor.policy_loss``. verl turns that section
into a dataclass named by its ``_target_``; :class:`FutureKLPolicyLossConfig` adds the
knobs to verl's own ``PolicyLossConfig`` and validates them when verl builds it, so a bad
value stops the run on the driver, before any GPU work.

When it loads, it first sets the run's variables a Ray worker received from ``fipo train``
(:func:`fipo_cli.verl_adapter.overrides.apply_worker_env`) and, with ``VERL_PLATFORM=cpu``, installs fipo's
CPU mode (:mod:`fipo_cli.verl_adapter.cpu`), both before any verl module reads them.

Three more additions, all installed when this module loads (see their functions for why there):

* :func:`with_length_metrics`: verl's per-step data metrics gain the whole-batch
  response-length percentiles and the length-weighted mean advantage
  (:mod:`fipo_cli.loss.length_metrics`).
* :func:`with_run_config`: the tracking config (W&B's run config) gains the resolved fipo
  config and the verl overrides of the run, read from the file ``FIPO_TRACKING_CONFIG`` names.
* :func:`with_wandb_teardown`: W&B is torn down when verl finishes its tracking, inside the Ray
  actor that trains, so that no traceback follows a run that succeeded.

And it registers the OmegaConf resolver of ``model.attn_implementation: auto``
(:mod:`fipo_cli.verl_adapter.attention`), so verl decides the attention where it builds the model.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fipo_cli.verl_adapter.overrides import apply_worker_env

# First, before any verl module reads them: the run's variables (a Ray worker gets them from the
# job's runtime env), then the CPU platform, before any verl module asks verl for its platform.
apply_worker_env(os.environ)
if os.environ.get("VERL_PLATFORM") == "cpu":
    from fipo_cli.verl_adapter import cpu as verl_cpu

    verl_cpu.install()

# After the set-up above, on purpose (E402).
import torch  # noqa: E402
from verl.trainer.ppo import metric_utils  # noqa: E402
from verl.trainer.ppo.core_algos import agg_loss, register_policy_loss  # noqa: E402
from verl.utils.tracking import Tracking  # noqa: E402
from verl.workers.config import PolicyLossConfig  # noqa: E402

from fipo_cli.loss import knobs  # noqa: E402
from fipo_cli.loss.fipo import PPOClip, fipo_loss_terms, kept_token_denominator, token_mean  # noqa: E402
from fipo_cli.loss.length_metrics import length_metrics  # noqa: E402
from fipo_cli.tracking.identity import TRACKING_CONFIG_ENV  # noqa: E402
from fipo_cli.verl_adapter.attention import register_resolver as register_auto_attention  # noqa: E402

LOSS_NAME = "future_kl"
#: Each micro-batch's mean over its kept tokens (see :func:`compute_policy_loss_future_kl`).
KEPT_MEAN_METRIC = "actor/fipo_pg_loss_kept_mean"
CONFIG_TARGET = f"{__name__}.FutureKLPolicyLossConfig"
_LOGGER = logging.getLogger(__name__)


@dataclass
class FutureKLPolicyLossConfig(PolicyLossConfig):
    """verl's ``PolicyLossConfig`` plus the FIPO knobs (see :mod:`fipo_cli.loss.knobs`)."""

    decay_rate: float = knobs.KNOB_DEFAULTS["decay_rate"]
    gamma: float | None = None
    future_kl_clip_low: float | None = None
    future_kl_clip_high: float | None = None
    safety_thresh: float = knobs.KNOB_DEFAULTS["safety_thresh"]
    future_kl_clip_ratio: float | None = None
    future_kl_clip_high_only: bool | None = None
    future_kl_start: str = knobs.KNOB_DEFAULTS["future_kl_start"]
    future_kl_window: int = knobs.KNOB_DEFAULTS["future_kl_window"]
    future_kl_average: bool = knobs.KNOB_DEFAULTS["future_kl_average"]
    chunk_size: int = knobs.KNOB_DEFAULTS["chunk_size"]

    def __post_init__(self) -> None:
        knobs.resolve(self)


def _ppo_clip(config: Any) -> PPOClip:
    """PPO clip range and dual-clip ratio, read the way verl's vanilla loss reads them."""
    clip_ratio = config.get("clip_ratio", 0.2)
    low = config.get("clip_ratio_low")
    high = config.get("clip_ratio_high")
    return PPOClip(
        low=clip_ratio if low is None else low,
        high=clip_ratio if high is None else high,
        dual=config.get("clip_ratio_c", 3.0),
    )


@register_policy_loss(LOSS_NAME)
def compute_policy_loss_future_kl(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """FIPO's policy loss with verl 0.9.1's ``PolicyLossFn`` signature.

    Args:
        old_log_prob, log_prob, advantages: (B, L) tensors of any float dtype.
        response_mask: (B, L) bool or 0/1.
        loss_agg_mode: verl's aggregation mode (FIPO uses "token-mean").
        config: verl's ``ActorConfig`` or a DictConfig with ``clip_ratio``,
            ``clip_ratio_low``, ``clip_ratio_high``, ``clip_ratio_c``,
            ``global_batch_info`` and ``policy_loss.*`` (the FIPO knobs).
        rollout_is_weights: optional (B, L) rollout-correction weights.

    Returns:
        The scalar loss (0, with a zero gradient, when the FIPO loss mask keeps no token), and the
        metrics as Python floats (one device sync for all of them).

    Aggregation. verl calls the loss once per micro-batch m, on every data-parallel rank, with
    ``global_batch_info`` counting the whole mini-batch's valid tokens V (``batch_num_tokens``,
    filled before any forward pass, dropped responses included) and the ranks (``dp_size``). With
    ``token-mean`` the loss is

        loss_m = S_m / (V · K_m / V_m) · dp_size

    S_m: the per-token loss summed over the micro-batch's kept tokens (valid tokens of the responses
    the sequence filter keeps), K_m: their count, V_m: the micro-batch's valid tokens. verl sums the
    micro-batches' losses and FSDP averages the ranks' gradients, so the mini-batch's loss is

        L = Σ_m (V_m / V) · (S_m / K_m)

    the mean over each micro-batch's kept tokens weighted by the micro-batch's share of the mini-batch's
    valid tokens (:func:`fipo_cli.loss.fipo.kept_token_denominator`). Without dropped responses it is
    verl's own global token-mean, so FIPO and DAPO runs aggregate alike; with one micro-batch per
    mini-batch on one rank, or outside verl (``global_batch_info`` empty: the call is the batch), it is
    the mean over the kept tokens. The official loss (qwenpilot/FIPO, on verl 0.5) computes the same
    per-micro-batch kept-token mean and weighs it by the micro-batch's share of the responses n_m / n.
    Other ``loss_agg_mode`` values are verl's ``agg_loss`` over the FIPO loss mask, unchanged.

    Besides the loss's metrics, ``actor/fipo_pg_loss_kept_mean`` is S_m / K_m, which verl averages over
    the micro-batches: the official loss's value for micro-batches of equal size, and ``actor/pg_loss``
    itself when a mini-batch is one micro-batch on one rank.
    """
    if config is None:
        raise ValueError(f"the {LOSS_NAME!r} policy loss needs the actor config")
    settings = knobs.resolve(config.get("policy_loss") or {})
    clip = _ppo_clip(config)
    if clip.dual <= 1.0:
        raise ValueError(f"clip_ratio_c={clip.dual!r}: the dual-clip ratio must be > 1")
    terms = fipo_loss_terms(old_log_prob, log_prob, advantages, response_mask, settings, clip, rollout_is_weights)
    kept_mean = token_mean(terms.per_token_loss.detach(), terms.loss_mask)
    names = [*terms.metrics, KEPT_MEAN_METRIC]
    # The token counts ride along with the metrics: one device sync for all of them.
    *values, valid_tokens, kept_tokens = torch.stack(
        [*terms.metrics.values(), kept_mean, terms.valid_tokens, terms.kept_tokens]
    ).tolist()
    if kept_tokens == 0:
        # Every token masked, or every response dropped by the sequence filter: verl's agg_loss would
        # divide 0 by a token (or sequence) count of 0 and return NaN, and backward would spread NaN
        # gradients. The loss of no token is 0; computed from the per-token loss it keeps the graph,
        # so backward runs as usual and gives a zero gradient.
        loss = (terms.per_token_loss * terms.loss_mask).sum()
    else:
        batch_info = dict(config.get("global_batch_info") or {})
        if loss_agg_mode == "token-mean" and batch_info.get("batch_num_tokens") is not None:
            batch_info["batch_num_tokens"] = kept_token_denominator(
                batch_info["batch_num_tokens"], valid_tokens, kept_tokens
            )
        loss = agg_loss(
            loss_mat=terms.per_token_loss, loss_mask=terms.loss_mask, loss_agg_mode=loss_agg_mode, **batch_info
        )
    return loss, dict(zip(names, values, strict=True))


# ---------------------------------------------------------------------------- data metrics


def with_length_metrics(compute_data_metrics: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """verl's ``compute_data_metrics(batch, use_critic)`` plus :func:`fipo_cli.loss.length_metrics.length_metrics`.

    Why this function: in verl 0.9.1 it is the one place that sees the whole training batch
    of a step, after the advantages and before logging. Every trainer calls it once per step
    on that batch (v1's ``PPOTrainer._compute_metrics``, main_ppo's default; the legacy
    ``RayPPOTrainer.fit``; the experimental separation trainer) and puts the result in the
    step's metrics, which ``Tracking.log`` sends to every configured logger. The actor's
    metrics, by contrast, are per micro-batch and averaged.

    The lengths come from verl's own ``_compute_response_info``, the same lengths as its
    ``response_length/mean|min|max``: the batch's ``response_length`` when the v1 trainer
    put it there, else the response part of ``attention_mask``.
    """

    @functools.wraps(compute_data_metrics)
    def compute_with_lengths(batch: Any, use_critic: bool = True) -> dict[str, Any]:
        metrics = compute_data_metrics(batch=batch, use_critic=use_critic)
        lengths = metric_utils._compute_response_info(batch)["response_length"]
        metrics.update(length_metrics(lengths, batch.batch["advantages"], batch.batch["response_mask"]))
        return metrics

    compute_with_lengths.fipo_length_metrics = True
    return compute_with_lengths


def install_length_metrics() -> None:
    """Replace ``metric_utils.compute_data_metrics`` by :func:`with_length_metrics` (once per process).

    The trainers bind the name with ``from verl.trainer.ppo.metric_utils import
    compute_data_metrics`` when they are imported. This module runs inside ``import verl``
    (the ``verl.plugins`` entry point), before any trainer module can be imported, so each
    of them binds the wrapped function, in the driver and in the Ray actor that trains.
    """
    if not getattr(metric_utils.compute_data_metrics, "fipo_length_metrics", False):
        metric_utils.compute_data_metrics = with_length_metrics(metric_utils.compute_data_metrics)


# ---------------------------------------------------------------------------- run config


def with_run_config(init: Callable[..., None]) -> Callable[..., None]:
    """verl's ``Tracking.__init__`` with fipo's run config added to the ``config`` it logs.

    verl passes its own resolved config to ``wandb.init(config=...)`` (and to the other
    trackers); it knows nothing of fipo's config. ``fipo train`` writes a JSON object
    (``{"fipo": <resolved experiment>, "fipo_verl_overrides": [...]}``) and names it in
    ``FIPO_TRACKING_CONFIG``; its keys are merged into the config here. verl's config has no
    such keys, so nothing of verl's is replaced. Without the variable the config is unchanged.
    W&B's own ``WANDB_CONFIG_PATHS`` cannot carry it: wandb 0.31 rejects that variable's
    value (a string where its settings want a list) and fails ``wandb.init``.
    """

    @functools.wraps(init)
    def init_with_run_config(self: Any, project_name: str, experiment_name: str,
                             default_backend: Any = "console", config: Any = None) -> None:
        path = os.environ.get(TRACKING_CONFIG_ENV)
        if path:
            try:
                extra = json.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:  # metadata only: never stop a training run for it
                _LOGGER.warning("fipo: %s=%s not added to the tracking config: %s", TRACKING_CONFIG_ENV, path, error)
            else:
                config = {**(config or {}), **extra}
        init(self, project_name, experiment_name, default_backend, config=config)

    init_with_run_config.fipo_run_config = True
    return init_with_run_config


def install_run_config() -> None:
    """Wrap ``Tracking.__init__`` by :func:`with_run_config` (once per process)."""
    if not getattr(Tracking.__init__, "fipo_run_config", False):
        Tracking.__init__ = with_run_config(Tracking.__init__)


def with_wandb_teardown(finish: Callable[..., None]) -> Callable[..., None]:
    """verl's ``Tracking.finish`` followed, when W&B was one of its backends, by ``wandb.teardown``.

    Why: verl 0.9.1 runs the trainer inside a Ray actor (``TaskRunnerV1`` of
    ``verl/trainer/main_ppo.py``, whose ``run`` calls ``tracking.finish`` in its ``finally``, line 161),
    and ``wandb.init`` there starts W&B's service process as a child of the actor and registers an
    ``atexit`` hook that tells the service to shut down (``teardown_atexit`` of
    ``wandb/sdk/lib/service/service_connection.py``, wandb 0.31, line 79). When the run ends, Ray's
    worker kills its direct children as it exits (``RAY_kill_child_processes_on_worker_exit``, on by
    default), before Python's ``atexit`` hooks run: the hook finds the service gone and prints a
    20-line ``ConnectionResetError: Connection lost`` traceback after a run that succeeded. Tearing
    W&B down while the actor still runs shuts the service down cleanly (the run's files are complete)
    and unregisters the hook. A teardown that fails is logged, never raised: the run is done.
    """

    @functools.wraps(finish)
    def finish_and_teardown(self: Any, exit_code: int = 0) -> None:
        tracked = "wandb" in getattr(self, "logger", {}) and not getattr(self, "_finished", False)
        finish(self, exit_code=exit_code)
        if tracked:
            import wandb

            try:
                wandb.teardown(exit_code=exit_code)
            except Exception as error:  # the run is finished: a teardown problem must not fail it
                _LOGGER.warning("fipo: W&B's teardown after the run failed: %s", error)

    finish_and_teardown.fipo_wandb_teardown = True
    return finish_and_teardown


def install_wandb_teardown() -> None:
    """Wrap ``Tracking.finish`` by :func:`with_wandb_teardown` (once per process)."""
    if not getattr(Tracking.finish, "fipo_wandb_teardown", False):
        Tracking.finish = with_wandb_teardown(Tracking.finish)


install_length_metrics()
install_run_config()
install_wandb_teardown()
# ``model.attn_implementation: auto`` reaches verl as ${fipo_auto_attention:SP}, resolved here.
register_auto_attention()
