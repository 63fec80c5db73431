"""Future-KL against the paper's formula, evaluated naively in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fipo_cli.loss.future_kl import discounted_future_sum, future_kl, influence_weights
from fipo_cli.loss.knobs import FutureKLSettings, gamma_from_decay_rate

from naive import naive_future_kl


def settings(**changes) -> FutureKLSettings:
    return FutureKLSettings(**changes)


def test_hand_worked_recurrence():
    # γ = 0.5, Δ = [0.2, −0.4, 0.8], every token participates:
    # F_2 = 0.8; F_1 = −0.4 + 0.5·0.8 = 0.0; F_0 = 0.2 + 0.5·0.0 = 0.2
    delta = torch.tensor([[0.2, -0.4, 0.8]])
    out = future_kl(delta, torch.ones_like(delta, dtype=torch.bool), settings(gamma=0.5))
    torch.testing.assert_close(out, torch.tensor([[0.2, 0.0, 0.8]]))


def test_hand_worked_masked_middle_token():
    # Token 1 is masked (x_1 = 0) but the discount still spans it:
    # F_2 = 0.8; F_1 = 0 + 0.5·0.8 = 0.4; F_0 = 0.2 + 0.5·0.4 = 0.4
    delta = torch.tensor([[0.2, -0.4, 0.8]])
    participates = torch.tensor([[True, False, True]])
    out = future_kl(delta, participates, settings(gamma=0.5))
    torch.testing.assert_close(out, torch.tensor([[0.4, 0.4, 0.8]]))


def test_hand_worked_start_window_average():
    # γ = 0.5, Δ = [1, 2, 4], all participate.
    delta = torch.tensor([[1.0, 2.0, 4.0]])
    every = torch.ones_like(delta, dtype=torch.bool)
    # exclude_current: F_0 = 0.5·2 + 0.25·4 = 2; F_1 = 0.5·4 = 2; F_2 = 0
    out = future_kl(delta, every, settings(gamma=0.5, include_current=False))
    torch.testing.assert_close(out, torch.tensor([[2.0, 2.0, 0.0]]))
    # window 2 from the current token: F_0 = 1 + 0.5·2 = 2; F_1 = 2 + 0.5·4 = 4; F_2 = 4
    out = future_kl(delta, every, settings(gamma=0.5, window=2))
    torch.testing.assert_close(out, torch.tensor([[2.0, 4.0, 4.0]]))
    # average over the full future: F_0 = (1 + 1 + 1)/(1 + 0.5 + 0.25) = 12/7
    out = future_kl(delta, every, settings(gamma=0.5, average=True))
    torch.testing.assert_close(out[0, 0], torch.tensor(12.0 / 7.0))


@pytest.mark.parametrize("length", [1, 7, 63, 64, 65, 200, 4097])
@pytest.mark.parametrize("gamma", [1.0, gamma_from_decay_rate(32.0), 0.95, 0.5, 1e-3])
def test_scan_matches_naive_sum(length, gamma):
    generator = torch.Generator().manual_seed(length)
    x = torch.randn(3, length, generator=generator)
    expected = naive_future_kl(x, torch.ones_like(x, dtype=torch.bool), gamma)
    got = discounted_future_sum(x, gamma)
    assert got.dtype == torch.float32 and got.shape == x.shape
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5 * math.sqrt(length))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("seed", range(4))
def test_random_masks_and_right_padding_match_naive(dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    batch, length = int(torch.randint(1, 6, (1,), generator=generator)), int(torch.randint(1, 300, (1,), generator=generator))
    delta = (0.3 * torch.randn(batch, length, generator=generator)).to(dtype)
    lengths = torch.randint(0, length + 1, (batch,), generator=generator)
    right_padded = torch.arange(length)[None, :] < lengths[:, None]
    holes = torch.rand(batch, length, generator=generator) > 0.2
    participates = right_padded & holes
    gamma = float(torch.rand(1, generator=generator)) * 0.5 + 0.5
    got = future_kl(delta, participates, settings(gamma=gamma))
    assert got.dtype == torch.float32
    # The naive sum sees the same low-precision values, widened: only fp32 rounding differs.
    torch.testing.assert_close(got.double(), naive_future_kl(delta.float(), participates, gamma), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    "first, window, average",
    [(0, None, True), (1, None, False), (1, None, True), (0, 1, False), (0, 5, True), (1, 3, False), (1, 70, True)],
)
def test_start_window_average_match_naive(first, window, average):
    generator = torch.Generator().manual_seed(7)
    delta = torch.randn(4, 150, generator=generator)
    participates = torch.rand(4, 150, generator=generator) > 0.3
    participates[0, 100:] = False
    chosen = settings(gamma=0.9, include_current=first == 0, window=window, average=average)
    expected = naive_future_kl(delta, participates, 0.9, first=first, window=window, average=average)
    torch.testing.assert_close(future_kl(delta, participates, chosen).double(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("gamma", [1.0, gamma_from_decay_rate(32.0), 0.5])
def test_long_responses_are_stable_in_fp32(gamma):
    # L = 32768: compare with the recurrence F_t = x_t + γ·F_{t+1} run in float64.
    generator = torch.Generator().manual_seed(3)
    x = 0.05 * torch.randn(2, 32768, generator=generator)
    reference = np.zeros_like(x.numpy(), dtype=np.float64)
    running = np.zeros(2)
    values = x.double().numpy()
    for t in range(x.shape[1] - 1, -1, -1):
        running = values[:, t] + gamma * running
        reference[:, t] = running
    got = discounted_future_sum(x, gamma)
    assert torch.isfinite(got).all()
    scale = max(1.0, float(np.abs(reference).max()))
    assert float(np.abs(got.double().numpy() - reference).max()) < 2e-5 * scale


def test_influence_weights_bounds_safety_and_no_clip():
    fkl = torch.tensor([[-1.0, 0.0, 0.1, 1.0, 1.0, 30.0]])
    adv = torch.tensor([[1.0, 1.0, 1.0, 1.0, -1.0, 1.0]])
    ratio = torch.tensor([[1.0, 1.0, 1.0, 1.0, 12.0, 1.0]])
    weights = influence_weights(fkl, adv, ratio, settings(clip_low=1.0, clip_high=1.2, safety_thresh=10.0))
    # exp(−1) → 1 (lower bound), exp(0) = 1, exp(0.1) = 1.105, exp(1) → 1.2,
    # Â < 0 with r = 12 > 10 → clamped into [0.8, 1]: 1, exp(30) → 1.2 (raw saturates at e^20).
    torch.testing.assert_close(weights.clipped, torch.tensor([[1.0, 1.0, math.exp(0.1), 1.2, 1.0, 1.2]]))
    assert weights.raw[0, 5] == pytest.approx(math.exp(20.0), rel=1e-6)
    assert (weights.safety_clamped > 0).tolist() == [[False, False, False, False, True, False]]
    assert weights.safety_raised is None  # a lower bound of 1: no weight can be below 0.8
    # Bounds [0.8, 1.2]: exp(−1) = 0.368 → 0.8.
    weights = influence_weights(fkl, adv, ratio, settings(clip_low=0.8, clip_high=1.2))
    assert weights.clipped[0, 0] == pytest.approx(0.8)
    # No clip: f = min(exp(F), 10); the safety clamp still applies (e^1 → 1).
    weights = influence_weights(fkl, adv, ratio, settings(clip_low=0.0, clip_high=10.0, clipped=False))
    torch.testing.assert_close(weights.clipped, torch.tensor([[math.exp(-1.0), 1.0, math.exp(0.1), math.e, 1.0, 10.0]]))
    assert not (weights.safety_raised > 0).any()  # the risky weight was e, lowered to 1, not raised


def test_non_contiguous_input():
    x = torch.randn(300, 4).t()  # (4, 300), strided
    torch.testing.assert_close(discounted_future_sum(x, 0.9), discounted_future_sum(x.contiguous(), 0.9))
