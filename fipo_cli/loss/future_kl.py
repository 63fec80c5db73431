"""Future-KL and influence weights (FIPO.md §1), pure torch.

FutureKL_t = Σ_{k=t..T} γ^(k−t) · x_k  with  x_k = M_k · Δlogp_k · mask_k

is the linear recurrence F_t = x_t + γ·F_{t+1}. It is computed here as a blocked scan:
inside blocks of ``BLOCK`` tokens a (BLOCK, BLOCK) matrix of decays γ^(k−t) does the local
sums in one batched matmul; the sums at block starts form the same recurrence with decay
γ^BLOCK over L/BLOCK values, solved recursively; each token then adds γ^(BLOCK−t) times
the next block's start value. Time O(B·L·BLOCK) = O(B·L), memory O(B·L); every power of
γ used is ≤ 1, so nothing overflows for any γ in (0, 1] and any L (no γ^(−L) rescaling).
"""

from __future__ import annotations

import functools
import math
from contextlib import contextmanager
from typing import NamedTuple

import torch
import torch.nn.functional as F

from fipo_cli.loss.knobs import FutureKLSettings

#: Tokens per block of the scan. 64 keeps the in-block matmul small; L = 32 768 needs
#: three levels (32 768 → 512 → 8 block sums).
BLOCK = 64

#: Where Â < 0 and r > safety_thresh, the official loss clamps the weight into this range,
#: after the bounds: it lowers weights above 1 and raises those below 0.8 (FIPO.md §1, Safety).
SAFETY_LOW, SAFETY_HIGH = 0.8, 1.0

#: exp() of a Future-KL above this saturates; only the raw-weight metrics can see it,
#: since every clipped weight is ≤ 10.
MAX_LOG_WEIGHT = 20.0

#: The largest float32: influence-weight and ratio bounds above it are capped to it (:func:`float32_bound`).
FLOAT32_MAX = torch.finfo(torch.float32).max


def _powers(gamma: float, exponents: torch.Tensor) -> torch.Tensor:
    """γ^e in float32 for float64 exponents e ≥ 0, exact at γ = 0 (a γ^BLOCK that underflowed)."""
    if gamma == 0.0:
        return (exponents == 0).to(torch.float32)
    return torch.exp(exponents * math.log(gamma)).to(torch.float32)


# Cached: the loss runs every micro-batch with the same γ, and on small batches building
# these small tensors would cost as much as the scan itself.
@functools.lru_cache(maxsize=64)
def _decay_matrix(gamma: float, size: int, device: torch.device) -> torch.Tensor:
    """(size, size) float32 with W[k, t] = γ^(k−t) for k ≥ t, else 0."""
    steps = torch.arange(size, device=device, dtype=torch.float64)
    distance = steps[:, None] - steps[None, :]
    return torch.where(distance >= 0, _powers(gamma, distance.clamp(min=0)), 0.0)


@functools.lru_cache(maxsize=64)
def _carry_decay(gamma: float, device: torch.device) -> torch.Tensor:
    """(BLOCK,) float32 γ^(BLOCK−t): the decay from in-block position t to the next block's start."""
    return _powers(gamma, torch.arange(BLOCK, 0, -1, device=device, dtype=torch.float64))


@contextmanager
def _exact_fp32_matmul(device: torch.device):
    """TF32 would cut the in-block sums to ~3 significant digits on Ampere and later GPUs."""
    if device.type != "cuda":
        yield
        return
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


def discounted_future_sum(x: torch.Tensor, gamma: float) -> torch.Tensor:
    """Reverse discounted cumulative sum along the last dimension.

    Args:
        x: (B, L) float32. Padding must already be zero.
        gamma: discount in (0, 1].

    Returns:
        (B, L) float32 with ``out[b, t] = Σ_{k ≥ t} γ^(k−t) · x[b, k]``.
    """
    batch, length = x.shape
    with _exact_fp32_matmul(x.device):
        if length <= BLOCK:
            return x @ _decay_matrix(gamma, length, x.device)
        blocks = -(-length // BLOCK)
        padded = F.pad(x, (0, blocks * BLOCK - length)) if blocks * BLOCK != length else x
        local = padded.reshape(batch, blocks, BLOCK) @ _decay_matrix(gamma, BLOCK, x.device)
    block_start = discounted_future_sum(local[:, :, 0].contiguous(), gamma**BLOCK)
    next_start = F.pad(block_start[:, 1:], (0, 1))
    local.addcmul_(next_start.unsqueeze(-1), _carry_decay(gamma, x.device))
    return local.view(batch, blocks * BLOCK)[:, :length]


def indicator_positive_(x: torch.Tensor) -> torch.Tensor:
    """In place: 1.0 where x > 0, else 0.0. Pass a temporary.

    Exact. On CPU every new (B, L) tensor costs page faults, and a comparison, a bool mask
    and ``where`` cost three of them; this costs none, which is why the loss builds its
    masks this way.
    """
    return x.sign_().clamp_(min=0.0)


def _shift_left(values: torch.Tensor, steps: int) -> torch.Tensor:
    """values[:, t + steps], zero past the end."""
    if steps >= values.shape[-1]:
        return torch.zeros_like(values)
    return F.pad(values[:, steps:], (0, steps))


def _ranged_sum(full: torch.Tensor, gamma: float, first: int, stop: int | None) -> torch.Tensor:
    """Σ_{k=t+first}^{t+stop−1} γ^(k−t) x_k from the full sums F (stop=None: to the end).

    Uses γ^a·F_{t+a} = Σ_{k ≥ t+a} γ^(k−t) x_k.
    """
    total = full if first == 0 else gamma**first * _shift_left(full, first)
    if stop is not None:
        total = total - gamma**stop * _shift_left(full, stop)
    return total


def future_kl(delta_logp: torch.Tensor, participates: torch.Tensor, settings: FutureKLSettings) -> torch.Tensor:
    """FutureKL per token.

    Args:
        delta_logp: (B, L) log πθ − log πold, any float dtype (read as float32), no gradient needed.
        participates: (B, L) 0/1 float (or bool): response_mask · M, the dual-clip participation mask.
        settings: resolved knobs (γ, start, window, average).

    Returns:
        (B, L) float32 FutureKL_t; zero where nothing was summed.
    """
    contribution = delta_logp.float() * participates
    first = 0 if settings.include_current else 1
    stop = None if settings.window is None else first + settings.window
    summed = _ranged_sum(discounted_future_sum(contribution, settings.gamma), settings.gamma, first, stop)
    if not settings.average:
        return summed
    weight = _ranged_sum(discounted_future_sum(participates.float(), settings.gamma), settings.gamma, first, stop)
    # An empty window has weight 0, but a windowed sum is a difference of two scans and
    # can leave rounding noise; one token at the far end of the window weighs γ^(stop−1).
    empty_below = 0.0 if stop is None else 0.5 * settings.gamma ** (stop - 1)
    return torch.where(weight > empty_below, summed / weight.clamp(min=torch.finfo(torch.float32).tiny), 0.0)


class InfluenceWeights(NamedTuple):
    """The influence weights of a (B, L) batch and where the safety rule acted; all float32, no gradient.

    raw: exp(FutureKL), saturating at e^20.
    clipped: the weights the loss uses: clip(raw, lower, upper), then the safety clamp.
    safety_clamped: 1.0 on the tokens the safety rule applies to (Â < 0 and r > safety_thresh), whose
        weight it clamps into [SAFETY_LOW, SAFETY_HIGH] (whether or not the weight was already inside), else 0.0.
    safety_raised: 1.0 where that clamp raised the weight to SAFETY_LOW (its bounded weight was below it),
        else 0.0; None when the lower bound is at least SAFETY_LOW, so that no weight can be raised.
    The masks may hold −0.0 for 0.0 (see :func:`indicator_positive_`): test them with ``> 0``.
    """

    raw: torch.Tensor
    clipped: torch.Tensor
    safety_clamped: torch.Tensor
    safety_raised: torch.Tensor | None


def float32_bound(bound: float) -> float:
    """A bound for float32 tensors: one beyond float32's range is capped to float32's largest value.

    fipo accepts every finite bound, but torch refuses a Python scalar beyond float32's range in ``clamp``
    and ``where`` on float32 tensors. Every ratio and weight here is at most e^20, so the cap changes no result.
    """
    return min(bound, FLOAT32_MAX)


def influence_weights(
    future_kl_values: torch.Tensor,
    advantages: torch.Tensor,
    ratio: torch.Tensor,
    settings: FutureKLSettings,
) -> InfluenceWeights:
    """Influence weights f_t, raw and clipped, with the safety clamp.

    Args:
        future_kl_values: (B, L) float32 FutureKL.
        advantages: (B, L) float32 Â.
        ratio: (B, L) float32 importance ratio r (no gradient).
        settings: resolved knobs (bounds, clipping mode, safety threshold).

    Returns:
        :class:`InfluenceWeights`, each (B, L) float32: raw = exp(FutureKL) (saturating at e^20);
        clipped = clip(raw, lower, upper), then, where Â < 0 and r > safety_thresh, clamped into
        [SAFETY_LOW, SAFETY_HIGH] as the official loss does. Exact for every bound: each token's
        upper bound is one of the two bounds, never computed from both.
    """
    raw = future_kl_values.clamp(max=MAX_LOG_WEIGHT).exp_()
    risky = indicator_positive_(ratio - settings.safety_thresh).mul_(indicator_positive_(-advantages))
    # clamp(clamp(x, lo, hi), a, b) = clamp(x, clamp(lo, a, b), clamp(hi, a, b)): on risky tokens the
    # bounds become max(lo, 0.8) (lo ≤ 1 always) and 1.0 (hi ≥ 1 always).
    low, high = settings.clip_low, float32_bound(settings.clip_high)
    safe_low = min(max(low, SAFETY_LOW), SAFETY_HIGH)
    safe_high = min(max(high, SAFETY_LOW), SAFETY_HIGH)
    weight = raw.clamp(min=low)
    raised = None
    if safe_low > low:  # not for the paper's recipes (lo = 1.0 or 0.8): only then pay for it
        raised = indicator_positive_(torch.rsub(weight, safe_low)).mul_(risky)
        torch.maximum(weight, risky * safe_low, out=weight)
    # Chosen, not computed: the sum risky·(safe_high − hi) + hi cancels in float32 once hi reaches 2^24
    # and gave risky tokens a weight of 0.
    upper = torch.where(risky > 0, safe_high, high)
    return InfluenceWeights(raw, weight.clamp_(max=upper), risky, raised)
