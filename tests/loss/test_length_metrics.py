"""Whole-batch length metrics, the pure function against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fipo_cli.loss.length_metrics import LENGTH_WEIGHTED_ADVANTAGE, PERCENTILES, length_metrics


def test_the_pure_function_matches_numpy_on_many_batches():
    generator = np.random.default_rng(7)
    for _ in range(50):
        batch_size = int(generator.integers(1, 40))
        lengths = generator.integers(0, 200, batch_size)
        lengths[0] = max(lengths[0], 1)
        mask = torch.arange(200)[None, :] < torch.as_tensor(lengths)[:, None]
        advantages = torch.as_tensor(generator.normal(size=(batch_size, 200)), dtype=torch.bfloat16)
        got = length_metrics(torch.as_tensor(lengths, dtype=torch.float32), advantages, mask)
        for name, q in PERCENTILES.items():
            assert got[name] == pytest.approx(np.percentile(lengths, q), abs=1e-9)
        weighted = (advantages.double().numpy() * mask.numpy()).sum() / lengths.sum()
        assert got[LENGTH_WEIGHTED_ADVANTAGE] == pytest.approx(weighted, rel=1e-12)


def test_empty_batches_and_batches_without_tokens_give_nan():
    empty = length_metrics(torch.zeros(0), torch.zeros(0, 4), torch.zeros(0, 4))
    assert set(empty) == {*PERCENTILES, LENGTH_WEIGHTED_ADVANTAGE} and all(np.isnan(v) for v in empty.values())
    aborted = length_metrics(torch.zeros(3), torch.zeros(3, 4), torch.zeros(3, 4))
    assert aborted["response_length/p90"] == 0.0 and np.isnan(aborted[LENGTH_WEIGHTED_ADVANTAGE])
