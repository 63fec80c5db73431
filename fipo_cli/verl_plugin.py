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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from verl.trainer.ppo.core_algos import agg_loss, register_policy_loss
from verl.workers.config import PolicyLossConfig

from fipo_cli.loss import knobs
from fipo_cli.loss.fipo import PPOClip, fipo_loss_terms

LOSS_NAME = "future_kl"
CONFIG_TARGET = f"{__name__}.FutureKLPolicyLossConfig"


@dataclass
class FutureKLPolicyLossConfig(PolicyLossConfig):
    """verl's ``PolicyLossConfig`` plus the FIPO knobs (see :mod:`fipo_cli.loss.knobs`)."""

    decay_rate: float = knobs.KNOB_DEFAULTS["decay_rate"]
    gamma: Optional[float] = None
    future_kl_clip_low: Optional[float] = None
    future_kl_clip_high: Optional[float] = None
    safety_thresh: float = knobs.KNOB_DEFAULTS["safety_thresh"]
    future_kl_clip_ratio: Optional[float] = None
    future_kl_clip_high_only: Optional[bool] = None
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
        The scalar loss aggregated by verl's ``agg_loss`` over the FIPO loss mask, and
        the metrics as Python floats (one device sync for all of them).
    """
    if config is None:
        raise ValueError(f"the {LOSS_NAME!r} policy loss needs the actor config")
    settings = knobs.resolve(config.get("policy_loss") or {})
    clip = _ppo_clip(config)
    if clip.dual <= 1.0:
        raise ValueError(f"clip_ratio_c={clip.dual!r}: the dual-clip ratio must be > 1")
    terms = fipo_loss_terms(old_log_prob, log_prob, advantages, response_mask, settings, clip, rollout_is_weights)
    global_batch_info = config.get("global_batch_info") or {}
    loss = agg_loss(
        loss_mat=terms.per_token_loss,
        loss_mask=terms.loss_mask,
        loss_agg_mode=loss_agg_mode,
        **global_batch_info,
    )
    names = list(terms.metrics)
    values = torch.stack([terms.metrics[name] for name in names]).tolist()
    return loss, dict(zip(names, values, strict=True))
