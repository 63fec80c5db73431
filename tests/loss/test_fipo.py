"""The FIPO loss (pure torch) against FIPO.md §1 evaluated term by term in float64."""

from __future__ import annotations

import math

import pytest
import torch

from fipo_cli.loss.fipo import PPOClip, fipo_loss_terms, fipo_policy_loss, token_mean
from fipo_cli.loss.future_kl import influence_weights
from fipo_cli.loss.knobs import FutureKLSettings, resolve
from fipo_cli.loss.masked_stats import MaskedStats, ratio_distribution, sorted_keys

from naive import naive_fipo_loss, naive_future_kl, naive_safety_shares

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


SETTINGS = [
    FutureKLSettings(),  # paper 32B: τ = 32, f ∈ [1, 1.2]
    FutureKLSettings(clip_low=0.8, clip_high=1.2, safety_thresh=3.0),  # paper 7B
    FutureKLSettings(gamma=0.9, clip_low=0.0, clip_high=10.0, clipped=False),  # no clip
    FutureKLSettings(gamma=1.0, clip_low=0.5, clip_high=2.0, safety_thresh=1.2),
]


NO_CLIP = FutureKLSettings(gamma=1.0, clip_low=0.0, clip_high=10.0, clipped=False, safety_thresh=3.0)


def risky_batch():
    """Two responses with Â < 0 whose first token is risky: r = e^2 ≈ 7.39 > safety_thresh 3 (and ≤ c).

    γ = 1, so FutureKL is the plain suffix sum of Δlogp (dyadic values: exact in fp32).
    Response 0: Δ = [2, −9, −9.125] → FutureKL_0 = −16.125, a raw weight e^−16.125 ≈ 1e-7.
    Response 1: Δ = [2, 1, 1]       → FutureKL_0 = 4, a raw weight e^4 ≈ 54.6.
    The later tokens have r = e^−9 or e, below the threshold: they are not risky.
    """
    old = torch.zeros(2, 3)
    new = torch.tensor([[2.0, -9.0, -9.125], [2.0, 1.0, 1.0]])
    adv = torch.tensor([[-1.0], [-0.5]]).expand(2, 3)
    return old, new, adv, torch.ones(2, 3, dtype=torch.bool)


#: Every metric the loss logs (verl's names where verl has them).
METRIC_NAMES = {
    "actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower",
    "actor/fipo_influence_weight_mean", "actor/fipo_influence_weight_min", "actor/fipo_influence_weight_max",
    "actor/fipo_influence_weight_raw_mean", "actor/fipo_influence_weight_raw_min",
    "actor/fipo_influence_weight_raw_max", "actor/fipo_clipfrac_upper", "actor/fipo_clipfrac_lower",
    "actor/fipo_future_kl_mean", "actor/fipo_dropped_seq_frac", "actor/fipo_dropped_token_frac",
    "actor/fipo_safety_clamped_frac", "actor/fipo_safety_raised_frac",
    "actor/fipo_neg_is_max", "actor/fipo_neg_is_p75", "actor/fipo_neg_is_p995", "actor/fipo_neg_is_p999",
    "actor/fipo_pos_is_min", "actor/fipo_pos_is_p25", "actor/fipo_pos_is_median", "actor/fipo_pos_is_p75",
    "actor/fipo_pos_is_p995", "actor/fipo_pos_is_p999", "actor/fipo_pos_is_max",
    "actor/fipo_neg_ratio_2_3", "actor/fipo_neg_ratio_3_4", "actor/fipo_neg_ratio_4_10",
}


def random_values_and_mask(seed, batch=5, length=70):
    """Values spread over 1e-12 … 1e3 (exp of uniform log-values); masked tokens hold far larger and smaller ones."""
    generator = torch.Generator().manual_seed(seed)
    log_values = torch.empty(batch, length).uniform_(math.log(1e-12), math.log(1e3), generator=generator)
    values = log_values.exp()
    valid = torch.rand(batch, length, generator=generator) > 0.3
    valid[0, 0] = False  # the first slot invalid too
    outliers = torch.where(torch.rand(batch, length, generator=generator) > 0.5, 1e30, 1e-30)
    values = torch.where(valid, values, outliers)
    values[1, :7] = 0.5  # ties, exactly at a bound the fractions are asked about
    return values, valid


#: The official loss's quantiles of r over negative- (Â < 0) and positive-advantage (Â > 0) tokens.
NEGATIVE_QUANTILE_NAMES = {"max": 1.0, "p75": 0.75, "p995": 0.995, "p999": 0.999}


POSITIVE_QUANTILE_NAMES = {"min": 0.0, "p25": 0.25, "median": 0.5, "p75": 0.75, "p995": 0.995, "p999": 0.999, "max": 1.0}


NEGATIVE_BANDS = {"2_3": (2.0, 3.0), "3_4": (3.0, 4.0), "4_10": (4.0, 10.0)}


def reference_ratio_distribution(ratio, valid, adv):
    """torch.quantile in float64 per group (0 for an empty group) and bands counted one by one."""
    ratio, valid = ratio.double(), valid.bool()
    expected = {}
    for prefix, group, quantiles in (("neg_is", valid & (adv < 0), NEGATIVE_QUANTILE_NAMES),
                                     ("pos_is", valid & (adv > 0), POSITIVE_QUANTILE_NAMES)):
        members = ratio[group]
        for name, q in quantiles.items():
            expected[f"{prefix}_{name}"] = torch.quantile(members, q).item() if members.numel() else 0.0
    negatives = ratio[valid & (adv < 0)].tolist()
    for name, (low, high) in NEGATIVE_BANDS.items():
        inside = sum(1 for r in negatives if low <= r < high)
        expected[f"neg_ratio_{name}"] = inside / len(negatives) if negatives else 0.0
    return expected


def ratio_case(seed, advantage_signs=(-1.0, 0.0, 1.0), valid_share=0.8, batch=6, length=257):
    generator = torch.Generator().manual_seed(seed)
    ratio = torch.exp(0.8 * torch.randn(batch, length, generator=generator))
    ties = torch.rand(batch, length, generator=generator)
    ratio[ties < 0.4] = 1.0  # many ratios exactly 1
    for boundary in (2.0, 3.0, 4.0, 10.0):  # some exactly on a band's edge
        ratio[(ties > 0.4) & (ties < 0.42)] = boundary
        ties = ties.roll(1, dims=1)
    signs = torch.tensor(advantage_signs)
    adv = signs[torch.randint(len(signs), (batch, length), generator=generator)] * torch.rand(batch, length, generator=generator)
    valid = torch.rand(batch, length, generator=generator) < valid_share
    ratio[~valid] = torch.where(torch.rand(int((~valid).sum()), generator=generator) > 0.5, 1e8, 1e-8)
    return ratio, valid, adv


RATIO_CASES = {
    "mixed with ties and zero advantages": ratio_case(0),
    "another mix": ratio_case(1),
    "zero advantages of both signs": ratio_case(5, advantage_signs=(-1.0, -0.0, 0.0, 1.0)),
    "no negative-advantage token": ratio_case(2, advantage_signs=(0.0, 1.0)),
    "no positive-advantage token": ratio_case(3, advantage_signs=(-1.0, 0.0)),
    "one token per group": (torch.tensor([[2.5, 0.3, 7.0]]), torch.tensor([[True, True, False]]),
                            torch.tensor([[-1.0, 1.0, -1.0]])),
    "no valid token": ratio_case(4, valid_share=0.0),
}


def every_response_dropped():
    """Â < 0 everywhere and two tokens per response with r = e^3 ≈ 20 > c: the filter drops every response."""
    old, new, adv, mask = random_batch(6)
    new = old.clone()
    new[:, :2] += 3.0
    mask[:, :2] = True
    return old, new, -adv.abs() - 0.1, mask


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
    assert terms.metrics["actor/fipo_dropped_token_frac"].item() == pytest.approx(4 / 12)
    assert (terms.valid_tokens.item(), terms.kept_tokens.item()) == (12.0, 8.0)
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


@pytest.mark.parametrize(
    "settings, risky_low_weight",
    [
        # No clipping: f = min(exp(FutureKL), 10), so 1e-7 survives the bounds; the clamp RAISES it to 0.8.
        (NO_CLIP, 0.8),
        # The clamp comes after the bounds: clip(1e-7, 0.9, 1.2) = 0.9 is inside [0.8, 1.0] and stays.
        (FutureKLSettings(gamma=1.0, clip_low=0.9, clip_high=1.2, safety_thresh=3.0), 0.9),
    ],
)
def test_safety_clamps_risky_weights_into_0_8_to_1_after_the_bounds(settings, risky_low_weight):
    old, new, adv, mask = risky_batch()
    ratio = torch.exp(new - old)
    fkl = torch.tensor([[-16.125, -18.125, -9.125], [4.0, 2.0, 1.0]])
    raw, weight, clamped, raised = influence_weights(fkl, adv, ratio, settings)
    assert (clamped > 0).tolist() == [[True, False, False], [True, False, False]]
    assert raw[0, 0].item() == pytest.approx(math.exp(-16.125), rel=1e-6)  # ≈ 1e-7: far below 0.8
    assert weight[0, 0].item() == pytest.approx(risky_low_weight, rel=1e-7)
    assert weight[1, 0].item() == 1.0  # a weight above 1 (54.6, or the bound 1.2) is lowered to 1
    # Tokens that are not risky keep their clipped weight, however small.
    assert weight[0, 1].item() == pytest.approx(max(settings.clip_low, math.exp(-18.125)), rel=1e-6)

    # Through the whole loss, against FIPO.md §1 term by term.
    learner = new.clone().requires_grad_(True)
    reference_learner = new.double().requires_grad_(True)
    terms = fipo_loss_terms(old, learner, adv, mask, settings, CLIP)
    expected, expected_per_token, _, expected_weight = naive(old, reference_learner, adv, mask, settings)
    assert expected_weight[0, 0].item() == pytest.approx(risky_low_weight)
    assert terms.metrics["actor/fipo_safety_clamped_frac"].item() == pytest.approx(2 / 6)
    raised = 1 / 6 if risky_low_weight == 0.8 else 0.0  # response 0's first token, in the no-clip mode
    assert terms.metrics["actor/fipo_safety_raised_frac"].item() == pytest.approx(raised)
    # Â = −1, r = e^2 inside [1 − ε_low, c]: loss_0 = −Â·f·r.
    assert terms.per_token_loss[0, 0].item() == pytest.approx(risky_low_weight * math.exp(2.0), rel=1e-6)
    torch.testing.assert_close(terms.per_token_loss.double(), expected_per_token, rtol=1e-6, atol=1e-9)
    loss = token_mean(terms.per_token_loss, terms.loss_mask)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(learner.grad.double(), reference_learner.grad, rtol=1e-6, atol=1e-9)


#: Safety-rule settings under which it both lowers and raises weights (lower bounds below 0.8).
SAFETY_SETTINGS = [
    FutureKLSettings(gamma=0.9, clip_low=0.0, clip_high=10.0, clipped=False, safety_thresh=1.2),
    FutureKLSettings(gamma=0.95, clip_low=0.5, clip_high=1.5, safety_thresh=1.1),
    FutureKLSettings(clip_low=0.8, clip_high=1.2, safety_thresh=1.1),  # paper 7B bounds: nothing below 0.8
]


@pytest.mark.parametrize("settings", SAFETY_SETTINGS)
@pytest.mark.parametrize("seed", range(3))
def test_safety_metrics_match_their_definitions(settings, seed):
    old, new, adv, mask = random_batch(seed, batch=6, spread=1.5)
    metrics = fipo_loss_terms(old, new, adv, mask, settings, CLIP).metrics
    clamped, raised = naive_safety_shares(
        old, new, adv, mask, gamma=settings.gamma, low=settings.clip_low, high=settings.clip_high,
        clipped=settings.clipped, safety=settings.safety_thresh, c=CLIP.dual,
    )
    assert 0.0 < clamped < 1.0
    assert metrics["actor/fipo_safety_clamped_frac"].item() == pytest.approx(clamped, rel=1e-6)
    assert metrics["actor/fipo_safety_raised_frac"].item() == pytest.approx(raised, rel=1e-6, abs=1e-9)
    assert (raised > 0) == (settings.clip_low < 0.8)


def large_weights_batch(dtype):
    """Three responses of 10 tokens, γ = 1, so FutureKL_t = Δ·(10 − t) and raw weights reach e^20 ≈ 2^28.9.

    0: Â = −1, Δ = 2.25 (r ≈ 9.5: above safety_thresh 3, below c = 10): risky, every weight is clamped to 1.
    1: Â = +1, Δ = 2: weights min(e^(2·(10 − t)), upper bound), up to e^20.
    2: Â = −1, Δ = 0.5 (r ≈ 1.65 < 3): not risky, weights e^(0.5·(10 − t)).
    Every value is exact in float16 and bfloat16.
    """
    old = torch.full((3, 10), -3.0)
    new = old + torch.tensor([[2.25], [2.0], [0.5]])
    adv = torch.tensor([[-1.0], [1.0], [-1.0]]).expand(3, 10)
    return old.to(dtype), new.to(dtype), adv.to(dtype), torch.ones(3, 10, dtype=torch.bool)


@pytest.mark.parametrize("eps_high", [2.0**24 - 1, 2.0**24, 2.0**25, 2.0**30, 1e30, 1e300])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("clip", [CLIP, PPOClip(low=0.2, high=2.0**25, dual=10.0)], ids=["ppo", "eps_high_2^25"])
def test_weights_and_ratio_bounds_are_exact_for_bounds_from_2_to_the_24_up(eps_high, dtype, clip):
    # A float32 sum risky·(1 − upper) + upper is 0 from upper = 1 + 2^24 on, and NaN beyond float32's range.
    settings = resolve({"gamma": 1.0, "future_kl_clip_high": eps_high, "safety_thresh": 3.0})
    assert settings.clip_high == 1.0 + eps_high
    old, new, adv, mask = large_weights_batch(dtype)
    terms = fipo_loss_terms(old, new, adv, mask, settings, clip)
    expected, expected_per_token, _, expected_weight = naive(old, new, adv, mask, settings, clip)

    assert torch.equal(expected_weight[0], torch.ones(10, dtype=torch.float64))
    # Â = −1, f = 1, r = e^2.25 inside [1 − ε_low, c]: loss_t = r. (c = 10, not ε_high's 1 + 2^25.)
    torch.testing.assert_close(terms.per_token_loss[0], torch.full((10,), math.exp(2.25)), rtol=1e-6, atol=0)
    torch.testing.assert_close(terms.per_token_loss.double(), expected_per_token, rtol=2e-6, atol=0)
    expected_first = -min(math.exp(20.0), 1 + eps_high) * min(math.exp(2.0), 1 + clip.high)  # Â = 1: −f·min(r, 1 + ε)
    assert terms.per_token_loss[1, 0].item() == pytest.approx(expected_first, rel=1e-6)
    assert token_mean(terms.per_token_loss, terms.loss_mask).item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms.metrics["actor/fipo_safety_clamped_frac"].item() == pytest.approx(1 / 3)
    assert terms.metrics["actor/fipo_influence_weight_min"].item() == 1.0
    assert all(math.isfinite(value.item()) for value in terms.metrics.values())


def test_weight_extremes_are_exact_from_1e_minus_12_to_1e3():
    # γ = 1 and dyadic Δlogp: every FutureKL below is exact in fp32 (old = 0, new = Δ).
    #   response 0: Δ = [−7.625, −6.1875, −6.90625, −6.90625] → FutureKL = [−27.625, −20, −13.8125, −6.90625]
    #               raw weights ≈ [1.0e-12, 2.1e-9, 1.0e-6, 1.0e-3]
    #   response 1: a masked token, then Δ = 1.7265625 four times → FutureKL up to 6.90625, a raw weight ≈ 999
    # Masked tokens hold garbage log-probs (ratios e^±20) and response 2 is masked out entirely.
    settings = FutureKLSettings(gamma=1.0, clip_low=0.0, clip_high=10.0, clipped=False)
    old = torch.zeros(3, 6)
    new = torch.tensor(
        [
            [-7.625, -6.1875, -6.90625, -6.90625, 25.0, 25.0],
            [-30.0, 1.7265625, 1.7265625, 1.7265625, 1.7265625, 30.0],
            [-40.0, 40.0, -40.0, 40.0, -40.0, 40.0],
        ]
    )
    mask = torch.tensor([[True] * 4 + [False] * 2, [False] + [True] * 4 + [False], [False] * 6])
    adv = torch.ones(3, 6)
    metrics = {name: value.item() for name, value in fipo_loss_terms(old, new, adv, mask, settings, CLIP).metrics.items()}

    _, _, _, weight = naive(old, new, adv, mask, settings)
    delta = (new - old).clamp(-20.0, 20.0)
    raw = torch.exp(naive_future_kl(delta, mask & (delta.exp() <= CLIP.dual), settings.gamma))
    assert raw[mask].min().item() == pytest.approx(math.exp(-27.625)) and raw[mask].max().item() > 998.0
    for name, reference in (("influence_weight", weight[mask]), ("influence_weight_raw", raw[mask])):
        assert metrics[f"actor/fipo_{name}_min"] == pytest.approx(reference.min().item(), rel=1e-6), name
        assert metrics[f"actor/fipo_{name}_max"] == pytest.approx(reference.max().item(), rel=1e-6), name
        assert metrics[f"actor/fipo_{name}_mean"] == pytest.approx(reference.mean().item(), rel=1e-6), name


@pytest.mark.parametrize("seed", range(3))
def test_masked_stats_match_their_definitions(seed):
    values, valid = random_values_and_mask(seed)
    stats = MaskedStats(valid)
    kept = values[valid].double()
    low, high = stats.extremes(values)
    assert (low.item(), high.item()) == (kept.min().item(), kept.max().item())  # exact: they are elements
    assert stats.mean(values).item() == pytest.approx(kept.mean().item(), rel=1e-6)
    for bound in (1e-9, 0.5, 1.0, 20.0):
        assert stats.fraction_at_least(values, bound).item() == pytest.approx((kept >= bound).double().mean().item(), abs=1e-7)
        assert stats.fraction_at_most(values, bound).item() == pytest.approx((kept <= bound).double().mean().item(), abs=1e-7)


def test_masked_stats_of_no_valid_token_are_zero():
    values, _ = random_values_and_mask(0)
    stats = MaskedStats(torch.zeros_like(values, dtype=torch.bool))
    results = [*stats.extremes(values), stats.mean(values), stats.fraction_at_least(values, 0.5),
               stats.fraction_at_most(values, 0.5)]
    assert [value.item() for value in results] == [0.0] * 5


@pytest.mark.parametrize("keys", [[], [5], [3, -1, 3, 0, -2**31, 2**31 - 1, -7, 0],
                                  torch.randint(-2**31, 2**31 - 1, (4099,), generator=torch.Generator().manual_seed(3)).tolist()])
def test_sorted_keys_are_python_sorted_order_as_int32_on_the_keys_device(keys):
    tensor = torch.tensor(keys, dtype=torch.int32)
    ordered = sorted_keys(tensor)
    assert ordered.dtype == torch.int32 and ordered.device == tensor.device
    assert ordered.tolist() == sorted(keys)
    assert tensor.tolist() == keys  # the input is left as it was


@pytest.mark.parametrize("case", RATIO_CASES)
def test_ratio_distribution_matches_torch_quantile(case):
    ratio, valid, adv = RATIO_CASES[case]
    got = {name: value.item() for name, value in ratio_distribution(ratio, valid, adv).items()}
    expected = reference_ratio_distribution(ratio, valid, adv)
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-5), name
        assert math.isfinite(got[name]), name


def test_loss_logs_the_ratio_distribution():
    old, new, adv, mask = random_batch(7, batch=6, spread=1.0)
    adv = adv.clone()
    adv[0] = 0.0  # zero advantage: in neither group
    metrics = fipo_loss_terms(old, new, adv, mask, FutureKLSettings(), CLIP).metrics
    ratio = torch.exp((new.double() - old.double()).clamp(-20.0, 20.0))
    expected = reference_ratio_distribution(ratio, mask, adv)
    assert expected["neg_ratio_2_3"] > 0.0 and expected["pos_is_median"] > 0.0
    for name, value in expected.items():
        assert metrics[f"actor/fipo_{name}"].item() == pytest.approx(value, rel=1e-5), name


@pytest.mark.parametrize("case", ["every token masked", "every response dropped"])
def test_degenerate_batches_give_zero_loss_zero_gradient_and_finite_metrics(case):
    if case == "every token masked":
        old, new, adv, mask = random_batch(2)
        mask = torch.zeros_like(mask)
    else:
        old, new, adv, mask = every_response_dropped()
    learner = new.clone().requires_grad_(True)
    loss, metrics = fipo_policy_loss(old, learner, adv, mask, FutureKLSettings(), CLIP)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(learner.grad, torch.zeros_like(learner))
    assert set(metrics) == METRIC_NAMES
    assert {name: value.item() for name, value in metrics.items() if not math.isfinite(value.item())} == {}
    if case == "every response dropped":
        assert metrics["actor/fipo_dropped_seq_frac"].item() == 1.0
