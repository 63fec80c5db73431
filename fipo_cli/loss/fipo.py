"""The FIPO dual-clip PPO loss (FIPO.md §1), pure torch.

DAPO's token-level dual-clip PPO objective with the advantage Â re-weighted by the
influence weight f (no gradient through f), plus the official sequence filter: a response
in which the dual clip fired on more than one token is dropped from the loss mask.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from fipo_cli.loss.future_kl import float32_bound, future_kl, indicator_positive_, influence_weights
from fipo_cli.loss.knobs import FutureKLSettings
from fipo_cli.loss.masked_stats import MaskedStats, ratio_distribution

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
    loss_mask: (B, L) float32 0/1, the response mask minus the dropped sequences.
    metrics: scalar float32 tensors keyed by their logged names.
    valid_tokens, kept_tokens: scalar float32 counts of the response mask's tokens and of the
        loss mask's (the valid tokens of the responses the sequence filter keeps); exact below 2^24.
    """

    per_token_loss: torch.Tensor
    loss_mask: torch.Tensor
    metrics: dict[str, torch.Tensor]
    valid_tokens: torch.Tensor
    kept_tokens: torch.Tensor


def _autocast_off(function):
    """``function`` run with autocast disabled on its first argument's device: verl calls the loss
    inside ``torch.autocast(bf16)``, which would run the Future-KL matmul in bf16."""

    @functools.wraps(function)
    def without_autocast(old_log_prob: torch.Tensor, *args, **kwargs):
        with torch.autocast(device_type=old_log_prob.device.type, enabled=False):
            return function(old_log_prob, *args, **kwargs)

    return without_autocast


@_autocast_off
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

    Everything is computed in float32 whatever the input dtype, with autocast off.
    """
    valid = response_mask.bool()
    stats = MaskedStats(valid)
    maskf = stats.maskf
    delta = (log_prob.float() - old_log_prob.float()).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
    ratio = torch.exp(delta)
    adv = advantages.float()

    with torch.no_grad():
        # Masks are 0/1 floats built in place: see indicator_positive_ for why.
        # M_t = 1 if r_t ≤ c, i.e. unless Δlogp_t > log c.
        participates = indicator_positive_(delta - math.log(clip.dual)).neg_().add_(1.0).mul_(maskf)
        fkl = future_kl(delta, participates, settings)
        weights = influence_weights(fkl, adv, ratio, settings)
        raw_weight, weight = weights.raw, weights.clipped
        negative = indicator_positive_(-adv)
        neg_weighted_adv = torch.mul(adv, weight).neg_()
        # PPO's clip and the dual clip are one clamp of the ratio per token (f > 0, so Ã has Â's sign):
        #   Ã ≥ 0:  max(−Ã·r, −Ã·clip(r, 1−ε_low, 1+ε_high))          = −Ã·min(r, 1+ε_high)
        #   Ã < 0:  min(−Ã·c, max(−Ã·r, −Ã·clip(r, 1−ε_low, 1+ε_high))) = −Ã·clip(r, 1−ε_low, c)
        # (r > 0 always, so a lower bound of 0 is none.) Each token's upper bound is chosen, not computed
        # as a sum of the two, which would cancel in float32 when ε_high is far above c.
        ratio_low = negative * max(1.0 - clip.low, 0.0)
        ratio_high = torch.where(negative > 0, float32_bound(clip.dual), float32_bound(1.0 + clip.high))

    per_token_loss = neg_weighted_adv * torch.clamp(ratio, min=ratio_low, max=ratio_high)
    if rollout_is_weights is not None:
        per_token_loss = per_token_loss * rollout_is_weights

    with torch.no_grad():
        # The dual clip fires where Â < 0 and r > c.
        dual_clipped = stats.positive(ratio, clip.dual).mul_(negative).mul_(maskf)
        dual_clip_fraction = dual_clipped.sum() / stats.denominator
        dropped = dual_clipped.sum(dim=-1) > 1
        loss_mask = maskf * (~dropped).float().unsqueeze(-1)
        response_tokens = maskf.sum(dim=-1)
        dropped_tokens = torch.dot(response_tokens, dropped.float())
        # PPO's clip is active where −Ã·clip(r) > −Ã·r, i.e. Ã·(r − clip(r)) > 0.
        clipped_ratio = torch.clamp(ratio, 1.0 - clip.low, 1.0 + clip.high, out=stats.scratch)
        ppo_clip_fraction = stats.mean(indicator_positive_(clipped_ratio.sub_(ratio).mul_(neg_weighted_adv)))
        weight_min, weight_max = stats.extremes(weight)
        raw_weight_min, raw_weight_max = stats.extremes(raw_weight)
        answered = response_tokens > 0
        no_value = torch.zeros((), device=maskf.device)
        # Last user of the scratch buffer: it overwrites it.
        ratios = ratio_distribution(ratio.detach(), valid, adv, scratch=stats.scratch)
        metrics = {
            "actor/pg_clipfrac": ppo_clip_fraction,
            "actor/ppo_kl": -stats.mean(delta),
            "actor/pg_clipfrac_lower": dual_clip_fraction,
            "actor/fipo_influence_weight_mean": stats.mean(weight),
            "actor/fipo_influence_weight_min": weight_min,
            "actor/fipo_influence_weight_max": weight_max,
            "actor/fipo_influence_weight_raw_mean": stats.mean(raw_weight),
            "actor/fipo_influence_weight_raw_min": raw_weight_min,
            "actor/fipo_influence_weight_raw_max": raw_weight_max,
            "actor/fipo_clipfrac_upper": stats.fraction_at_least(weight, settings.clip_high - 1e-7),
            "actor/fipo_clipfrac_lower": stats.fraction_at_most(weight, settings.clip_low + 1e-7),
            "actor/fipo_future_kl_mean": stats.mean(fkl),
            "actor/fipo_dropped_seq_frac": (dropped & answered).sum() / answered.sum().clamp(min=1),
            "actor/fipo_dropped_token_frac": dropped_tokens / stats.denominator,
            "actor/fipo_safety_clamped_frac": stats.mean(weights.safety_clamped),
            "actor/fipo_safety_raised_frac": (
                no_value if weights.safety_raised is None else stats.mean(weights.safety_raised)
            ),
            **{f"actor/fipo_{name}": value for name, value in ratios.items()},
        }
    return FipoLossTerms(
        per_token_loss=per_token_loss, loss_mask=loss_mask, metrics=metrics,
        valid_tokens=stats.count, kept_tokens=stats.count - dropped_tokens,
    )


def token_mean(per_token_loss: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """DAPO's token-mean: the mean over every valid token of the batch; 0 if there is none."""
    return torch.dot(per_token_loss.reshape(-1), loss_mask.reshape(-1)) / loss_mask.sum().clamp(min=1.0)


def kept_token_denominator(batch_valid_tokens: float, valid_tokens: float, kept_tokens: float) -> float:
    """The token count a micro-batch's kept-token sum is divided by, inside a mini-batch's token-mean.

    Args:
        batch_valid_tokens: V, the valid tokens of the whole mini-batch, every micro-batch and every
            data-parallel rank (verl's ``global_batch_info.batch_num_tokens``).
        valid_tokens: V_m, the valid tokens of this micro-batch; > 0.
        kept_tokens: K_m, those of them in responses the sequence filter keeps; > 0.

    Returns:
        V · K_m / V_m: the mini-batch's kept-token count, estimated from the share of this
        micro-batch's tokens that are kept. Which responses are dropped depends on the current
        ratio, so a micro-batch knows only its own drops when its loss is formed (and backward runs
        before the next micro-batch's forward).

    Dividing each micro-batch's kept-token sum S_m by it, the mini-batch's loss (verl sums the
    micro-batches' losses, FSDP averages the ranks' gradients) is Σ_m (V_m / V) · (S_m / K_m): the
    mean over each micro-batch's kept tokens, as the official loss takes it, weighted by the
    micro-batch's share of the mini-batch's valid tokens, as verl 0.9.1 weighs it. With no response
    dropped it is verl's global token-mean Σ S_m / V; with one micro-batch on one rank it is the
    mean over the mini-batch's kept tokens. The official loss weighs by the share of responses
    (n_m / n) instead.
    """
    return batch_valid_tokens * kept_tokens / valid_tokens


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
