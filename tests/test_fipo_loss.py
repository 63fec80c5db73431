"""The FIPO loss (pure torch) against FIPO.md §1 evaluated term by term in float64."""

from __future__ import annotations

import math

import pytest
import torch

from fipo_cli.loss.fipo import PPOClip, fipo_loss_terms, fipo_policy_loss
from fipo_cli.loss.knobs import FutureKLSettings
from naive import naive_fipo_loss

CLIP = PPOClip(low=0.2, high=0.28, dual=10.0)


def random_batch(seed, batch=4, length=96, dtype=torch.float32, spread=0.3):
    generator = torch.Generator().manual_seed(seed)
    old = (-torch.rand(batch, length, generator=generator) * 3).to(dtype)
    new = (old.float() + spread * torch.randn(batch, length, generator=generator)).to(dtype)
    adv = torch.randn(batch, 1, generator=generator).expand(batch, length).to(dtype)
    lengths = torch.randint(1, length + 1, (batch,), generator=generator)
    mask = torch.arange(length)[None, :] < lengths[:, None]
    mask &= torch.rand(batch, length, generator=generator) > 0.1
    return old, new, adv, mask


def naive(old, new, adv, mask, settings: FutureKLSettings, clip: PPOClip = CLIP):
    return naive_fipo_loss(
        old.float(), new.float(), adv.float(), mask,
        gamma=settings.gamma, low=settings.clip_low, high=settings.clip_high, clipped=settings.clipped,
        safety=settings.safety_thresh, eps_low=clip.low, eps_high=clip.high, c=clip.dual,
    )


def test_hand_worked_two_tokens():
    # γ = 0.5, Â = +1, Δlogp = [0.1, 0.3], f ∈ [1, 1.2]:
    # FutureKL = [0.1 + 0.5·0.3, 0.3] = [0.25, 0.3]; f = clip(exp(·), 1, 1.2) = [1.2, 1.2]
    # r = [e^0.1, e^0.3] = [1.10517, 1.34986]; clip(r, 0.8, 1.28) = [1.10517, 1.28]
    # l1 = max(−1.2·r, −1.2·clip(r)) = [−1.32621, −1.536]; Â > 0 so loss_t = l1
    # token-mean = (−1.32621 − 1.536)/2 = −1.431103
    old = torch.tensor([[0.0, 0.0]])
    new = torch.tensor([[0.1, 0.3]])
    adv = torch.ones(1, 2)
    settings = FutureKLSettings(gamma=0.5, clip_low=1.0, clip_high=1.2)
    loss, metrics = fipo_policy_loss(old, new, adv, torch.ones(1, 2), settings, CLIP)
    assert loss.item() == pytest.approx((-1.2 * math.exp(0.1) - 1.2 * 1.28) / 2, rel=1e-6)
    assert metrics["actor/fipo_influence_weight_mean"].item() == pytest.approx(1.2)
    assert metrics["actor/fipo_clipfrac_upper"].item() == pytest.approx(1.0)
    assert metrics["actor/pg_clipfrac"].item() == pytest.approx(0.5)


SETTINGS = [
    FutureKLSettings(),  # paper 32B: τ = 32, f ∈ [1, 1.2]
    FutureKLSettings(clip_low=0.8, clip_high=1.2, safety_thresh=3.0),  # paper 7B
    FutureKLSettings(gamma=0.9, clip_low=0.0, clip_high=10.0, clipped=False),  # no clip
    FutureKLSettings(gamma=1.0, clip_low=0.5, clip_high=2.0, safety_thresh=1.2),
]


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("seed", range(3))
def test_loss_and_gradient_match_naive_formula(settings, seed):
    old, new, adv, mask = random_batch(seed, spread=0.6)
    new = new.clone().requires_grad_(True)
    reference_new = new.detach().double().requires_grad_(True)

    loss, _ = fipo_policy_loss(old, new, adv, mask, settings, CLIP)
    expected, _, _, _ = naive(old, reference_new, adv, mask, settings)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)

    # Influence weights carry no gradient: the reference treats f as a constant.
    loss.backward()
    expected.backward()
    torch.testing.assert_close(new.grad.double(), reference_new.grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs_are_computed_in_fp32(dtype):
    old, new, adv, mask = random_batch(11, dtype=dtype)
    loss, metrics = fipo_policy_loss(old, new, adv, mask, FutureKLSettings(), CLIP)
    expected, _, _, _ = naive(old, new, adv, mask, FutureKLSettings())
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)
    assert all(value.dtype == torch.float32 for value in metrics.values())


def test_sequence_with_two_dual_clipped_tokens_is_dropped():
    # Â < 0 and r = e^3 ≈ 20 > c = 10: −Â·r > −Â·c, the dual clip fires.
    old = torch.zeros(3, 4)
    new = torch.zeros(3, 4)
    new[0, 1] = new[0, 3] = 3.0  # two firings: dropped
    new[1, 2] = 3.0  # one firing: kept
    adv = torch.tensor([[-1.0], [-1.0], [1.0]]).expand(3, 4)
    terms = fipo_loss_terms(old, new, adv, torch.ones(3, 4), FutureKLSettings(), CLIP)
    assert terms.loss_mask.bool().tolist() == [[False] * 4, [True] * 4, [True] * 4]
    assert terms.metrics["actor/fipo_dropped_seq_frac"].item() == pytest.approx(1 / 3)
    assert terms.metrics["actor/pg_clipfrac_lower"].item() == pytest.approx(3 / 12)
    _, _, keep, _ = naive(old, new, adv, torch.ones(3, 4), FutureKLSettings())
    assert torch.equal(keep, terms.loss_mask.bool())


def test_metrics_match_their_definitions():
    old, new, adv, mask = random_batch(5, spread=0.8)
    settings = FutureKLSettings(clip_low=0.8, clip_high=1.2)
    terms = fipo_loss_terms(old, new, adv, mask, settings, CLIP)
    _, _, _, f = naive(old, new, adv, mask, settings)
    valid = f[mask]
    metrics = {name: value.item() for name, value in terms.metrics.items()}
    assert metrics["actor/fipo_influence_weight_mean"] == pytest.approx(valid.mean().item(), rel=1e-5)
    assert metrics["actor/fipo_influence_weight_min"] == pytest.approx(valid.min().item(), rel=1e-5)
    assert metrics["actor/fipo_influence_weight_max"] == pytest.approx(valid.max().item(), rel=1e-5)
    assert metrics["actor/fipo_clipfrac_upper"] == pytest.approx((valid >= 1.2 - 1e-7).double().mean().item(), abs=1e-6)
    assert metrics["actor/fipo_clipfrac_lower"] == pytest.approx((valid <= 0.8 + 1e-7).double().mean().item(), abs=1e-6)
    delta = (new - old).double()[mask]
    assert metrics["actor/ppo_kl"] == pytest.approx((-delta).mean().item(), rel=1e-5, abs=1e-7)
    assert 0.0 < metrics["actor/fipo_clipfrac_upper"] < 1.0


def test_empty_mask_gives_zero_loss_and_finite_metrics():
    old, new, adv, _ = random_batch(2)
    loss, metrics = fipo_policy_loss(old, new, adv, torch.zeros_like(old, dtype=torch.bool), FutureKLSettings(), CLIP)
    assert loss.item() == 0.0
    assert all(math.isfinite(value.item()) for value in metrics.values())


def test_rollout_is_weights_scale_the_per_token_loss():
    old, new, adv, mask = random_batch(9)
    weights = torch.rand_like(old) + 0.5
    plain = fipo_loss_terms(old, new, adv, mask, FutureKLSettings(), CLIP)
    weighted = fipo_loss_terms(old, new, adv, mask, FutureKLSettings(), CLIP, rollout_is_weights=weights)
    torch.testing.assert_close(weighted.per_token_loss, plain.per_token_loss * weights)
