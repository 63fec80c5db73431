"""The paper's formulas (FIPO.md §1) evaluated naively in float64: the tests' reference."""

from __future__ import annotations

import torch


def naive_future_kl(delta, participates, gamma, first=0, window=None, average=False):
    """FutureKL_t = Σ_k γ^(k−t) · Δ_k over participating k in [t+first, t+first+window), O(L²), float64."""
    delta = delta.double()
    length = delta.shape[-1]
    t = torch.arange(length, dtype=torch.float64)
    distance = t[None, :] - t[:, None]  # [t, k] = k − t
    in_range = distance >= first
    if window is not None:
        in_range &= distance < first + window
    decay = torch.where(in_range, torch.tensor(gamma, dtype=torch.float64) ** distance.clamp(min=0), 0.0)
    weights = decay[None] * participates.double()[:, None, :]  # [b, t, k]
    summed = (weights * delta[:, None, :]).sum(-1)
    if not average:
        return summed
    count = weights.sum(-1)
    return torch.where(count > 0, summed / count.clamp(min=1e-300), 0.0)


def naive_fipo_loss(old, new, adv, mask, *, gamma, low, high, clipped, safety, eps_low, eps_high, c):
    """Token-mean FIPO loss, term by term from FIPO.md §1, in float64.

    Returns (loss, per-token loss, kept-token mask, influence weights).
    """
    old, new, adv = old.double(), new.double(), adv.double()
    mask = mask.bool()
    delta = (new - old).clamp(-20.0, 20.0)
    r = torch.exp(delta)
    participates = mask & (r <= c)  # M_t = 1 if r_t ≤ c
    fkl = naive_future_kl(delta.detach(), participates, gamma)
    f = torch.exp(fkl)
    f = f.clamp(min=low, max=high) if clipped else f.clamp(max=10.0)
    f = torch.where((adv < 0) & (r.detach() > safety), f.clamp(0.8, 1.0), f)  # safety: into [0.8, 1.0]
    a = adv * f  # Ã = Â·f, f is a constant
    pg1 = -a * r
    pg2 = -a * r.clamp(1 - eps_low, 1 + eps_high)
    l1 = torch.maximum(pg1, pg2)
    pg3 = -a * c
    l2 = torch.minimum(pg3, l1)
    per_token = torch.where(a < 0, l2, l1)
    dual_fired = (adv < 0) & (l1 > pg3) & mask
    keep = mask & ((dual_fired.sum(-1) <= 1)[:, None])  # sequence filter
    loss = (per_token * keep).sum() / keep.sum().clamp(min=1)
    return loss, per_token, keep, f


def naive_mini_batch_token_mean(micro_batches, batch_valid_tokens):
    """fipo's token-mean of a mini-batch that verl splits into micro-batches (on any number of ranks):
    Σ_m (V_m / V) · (S_m / K_m), float64.

    micro_batches: (per-token loss, response mask, kept-token mask) of each micro-batch, (B_m, L) each.
    S_m: the per-token loss summed over the kept tokens, K_m: their count, V_m: the micro-batch's valid
    tokens, V = batch_valid_tokens: the mini-batch's. A micro-batch with no kept token adds 0.
    """
    total = 0.0
    for per_token, mask, keep in micro_batches:
        kept = keep.double().sum()
        if kept > 0:
            total = total + mask.double().sum() / batch_valid_tokens * (per_token.double() * keep).sum() / kept
    return total


def naive_safety_shares(old, new, adv, mask, *, gamma, low, high, clipped, safety, c):
    """The safety rule's reach over the valid tokens, from FIPO.md §1 in float64: (the share of valid
    tokens it clamps into [0.8, 1.0] (Â < 0 and r > safety), the share whose bounded weight it raises
    to 0.8 (those of them below 0.8))."""
    mask = mask.bool()
    delta = (new.double() - old.double()).clamp(-20.0, 20.0)
    r = torch.exp(delta)
    f = torch.exp(naive_future_kl(delta, mask & (r <= c), gamma))
    bounded = f.clamp(min=low, max=high) if clipped else f.clamp(max=10.0)
    risky = mask & (adv.double() < 0) & (r > safety)
    valid = mask.sum().double()
    return (risky.sum() / valid).item(), ((risky & (bounded < 0.8)).sum() / valid).item()
