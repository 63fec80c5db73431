"""Whole-batch response-length percentiles and the length-weighted mean advantage, pure torch.

verl logs ``response_length/mean|min|max`` per training step; the paper's Fig. 3 also reads
the quartiles and its Fig. 4 the response-length-weighted mean advantage (FIPO.md §4).
:func:`length_metrics` computes them from one whole training batch. fipo's verl plugin
(:mod:`fipo_cli.verl_adapter.plugin`) adds them to verl's own data metrics, so every logger verl
is configured with (console, the run's ``metrics.jsonl``, W&B) receives them.
"""

from __future__ import annotations

import torch

#: Percentile (in %) of each logged response-length statistic, next to verl's mean/min/max.
PERCENTILES = {
    "response_length/p25": 25.0,
    "response_length/median": 50.0,
    "response_length/p75": 75.0,
    "response_length/p90": 90.0,
}
LENGTH_WEIGHTED_ADVANTAGE = "critic/advantages/length_weighted_mean"


def length_metrics(
    response_length: torch.Tensor, advantages: torch.Tensor, response_mask: torch.Tensor
) -> dict[str, float]:
    """The response-length percentiles and the length-weighted mean advantage of one batch.

    Args:
        response_length: (B,) tokens in each response, any real dtype (verl passes float32).
            Every response counts, aborted ones (length 0) included, as in verl's
            ``response_length/mean|min|max``.
        advantages: (B, L) per-token advantages Â, any float dtype.
        response_mask: (B, L) bool or 0/1: the response tokens the loss trains on.

    Returns:
        ``response_length/{p25,median,p75,p90}``: percentiles of ``response_length`` with
        linear interpolation between order statistics (numpy's default method), in tokens.

        ``critic/advantages/length_weighted_mean``: Ā = Σ_i Σ_t Â_{i,t}·mask_{i,t} / Σ_i L_i,
        the paper's response-length-weighted mean advantage (Fig. 4). With GRPO's
        per-response advantage Â_i it is Σ_i L_i·Â_i / Σ_i L_i: positive when the longer
        responses of a batch are the better ones. Where the mask covers every response
        token (single-turn rollouts) it equals verl's ``critic/advantages/mean``.

        Every value is NaN for an empty batch; Ā is NaN when no response has a token.
    """
    lengths = response_length.detach().to(torch.float64).reshape(-1)
    if lengths.numel() == 0:
        return {name: float("nan") for name in [*PERCENTILES, LENGTH_WEIGHTED_ADVANTAGE]}
    quantiles = torch.tensor([p / 100.0 for p in PERCENTILES.values()], dtype=torch.float64, device=lengths.device)
    # One (B, L) temporary in the advantages' dtype, summed in float64; a float64 copy of a
    # 512 × 16 responses × 20k tokens batch would take 1.3 GB more on the driver.
    advantage_sum = (advantages.detach() * response_mask).sum(dtype=torch.float64)
    values = torch.cat([torch.quantile(lengths, quantiles), (advantage_sum / lengths.sum()).reshape(1)])
    # One device-to-host copy for all five values.
    return dict(zip([*PERCENTILES, LENGTH_WEIGHTED_ADVANTAGE], values.tolist(), strict=True))
