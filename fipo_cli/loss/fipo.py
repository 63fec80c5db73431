"""The FIPO dual-clip PPO loss (FIPO.md §1), pure torch.

DAPO's token-level dual-clip PPO objective with the advantage Â re-weighted by the
influence weight f (no gradient through f), plus the official sequence filter: a response
in which the dual clip fired on more than one token is dropped from the loss mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fipo_cli.loss.future_kl import future_kl, influence_weights
from fipo_cli.loss.knobs import FutureKLSettings

#: Δlogp is clamped to this range before exp(), as verl's own losses do.
LOG_RATIO_LIMIT = 20.0


@dataclass(frozen=True)
class PPOClip:
    """PPO's ratio clip [1 − low, 1 + high] and the dual-clip ratio c (> 1)."""

    low: float = 0.2
    high: float = 0.28
    dual: float = 10.0


@dataclass
class FipoLossTerms:
    """What the loss computes before aggregation.

    per_token_loss: (B, L) float32, differentiable w.r.t. ``log_prob``.
    loss_mask: (B, L) bool, the response mask minus the dropped sequences.
    metrics: scalar float32 tensors keyed by their logged names.
    """

    per_token_loss: torch.Tensor
    loss_mask: torch.Tensor
    metrics: dict[str, torch.Tensor]


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # Same form as verl_F.masked_mean, so shared metrics match verl's to the last bit.
    return (values * mask).sum() / (mask.sum() + 1e-8)


def _masked_extreme(values: torch.Tensor, mask: torch.Tensor, largest: bool) -> torch.Tensor:
    fill = -math.inf if largest else math.inf
    filled = torch.where(mask, values, fill)
    extreme = filled.amax() if largest else filled.amin()
    return torch.where(mask.any(), extreme, 0.0)


def fipo_loss_terms(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    settings: FutureKLSettings,
    clip: PPOClip,
    rollout_is_weights: torch.Tensor | None = None,
) -> FipoLossTerms:
    """Per-token FIPO loss, its mask and its metrics.

    Args:
        old_log_prob: (B, L) log πold, any float dtype.
        log_prob: (B, L) log πθ, any float dtype; gradients flow back through it.
        advantages: (B, L) Â, any float dtype.
        response_mask: (B, L) bool or 0/1; right padding and masked middle tokens are 0.
        settings: resolved FIPO knobs.
        clip: PPO clip range and dual-clip ratio c.
        rollout_is_weights: optional (B, L) rollout-correction weights, multiplied into
            the per-token loss as verl's vanilla loss does.

    Everything is computed in float32 whatever the input dtype.
    """
    mask = response_mask.bool()
    delta = (log_prob.float() - old_log_prob.float()).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
    ratio = torch.exp(delta)
    adv = advantages.float()

    with torch.no_grad():
        participates = mask & (delta <= math.log(clip.dual))
        fkl = future_kl(delta, participates, settings)
        raw_weight, weight = influence_weights(fkl, adv, ratio, settings)

    weighted_adv = adv * weight
    pg_unclipped = -weighted_adv * ratio
    pg_clipped = -weighted_adv * ratio.clamp(1.0 - clip.low, 1.0 + clip.high)
    ppo_loss = torch.maximum(pg_unclipped, pg_clipped)
    dual_bound = -weighted_adv * clip.dual
    negative = adv < 0
    per_token_loss = torch.where(negative, torch.minimum(dual_bound, ppo_loss), ppo_loss)
    if rollout_is_weights is not None:
        per_token_loss = per_token_loss * rollout_is_weights

    with torch.no_grad():
        dual_clipped = negative & (ppo_loss > dual_bound)
        dropped = (dual_clipped & mask).sum(dim=-1) > 1
        loss_mask = mask & ~dropped.unsqueeze(-1)
        maskf = mask.float()
        metrics = {
            "actor/pg_clipfrac": _masked_mean((pg_clipped > pg_unclipped).float(), maskf),
            "actor/ppo_kl": _masked_mean(-delta, maskf),
            "actor/pg_clipfrac_lower": _masked_mean(dual_clipped.float(), maskf),
            "actor/fipo_influence_weight_mean": _masked_mean(weight, maskf),
            "actor/fipo_influence_weight_min": _masked_extreme(weight, mask, largest=False),
            "actor/fipo_influence_weight_max": _masked_extreme(weight, mask, largest=True),
            "actor/fipo_influence_weight_raw_mean": _masked_mean(raw_weight, maskf),
            "actor/fipo_influence_weight_raw_min": _masked_extreme(raw_weight, mask, largest=False),
            "actor/fipo_influence_weight_raw_max": _masked_extreme(raw_weight, mask, largest=True),
            "actor/fipo_clipfrac_upper": _masked_mean((weight >= settings.clip_high - 1e-7).float(), maskf),
            "actor/fipo_clipfrac_lower": _masked_mean((weight <= settings.clip_low + 1e-7).float(), maskf),
            "actor/fipo_future_kl_mean": _masked_mean(fkl, maskf),
            "actor/fipo_dropped_seq_frac": dropped[mask.any(dim=-1)].float().mean().nan_to_num(0.0),
        }
    return FipoLossTerms(per_token_loss=per_token_loss, loss_mask=loss_mask, metrics=metrics)


def token_mean(per_token_loss: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """DAPO's token-mean: the mean over every valid token of the batch; 0 if there is none."""
    maskf = loss_mask.float()
    return (per_token_loss * maskf).sum() / maskf.sum().clamp(min=1.0)


def fipo_policy_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    settings: FutureKLSettings,
    clip: PPOClip,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The FIPO loss with token-mean aggregation, outside verl.

    Shapes and dtypes as :func:`fipo_loss_terms`. Returns a scalar float32 loss and the
    metrics as scalar tensors.
    """
    terms = fipo_loss_terms(old_log_prob, log_prob, advantages, response_mask, settings, clip, rollout_is_weights)
    return token_mean(terms.per_token_loss, terms.loss_mask), terms.metrics
