"""The whole FIPO loss against verl's vanilla (DAPO) loss, both called through verl's registry.

Run by hand:  python benchmarks/bench_loss.py [--device cuda]
Shape (16, 8192), fp32, the paper's 32B knobs. Forward alone, and forward + backward (what
a training step pays); the two losses are timed interleaved to share the machine's noise.

python benchmarks/bench_loss.py --aggregation: how far fipo's token-mean inside verl (each micro-batch's
kept-token mean weighted by its share of the mini-batch's valid tokens) lies from the official loss's
(weighted by its share of the responses) and from the exact mean over the mini-batch's kept tokens, on
mini-batches shaped like the recipes', split into micro-batches by verl's own rearrange_micro_batches.
The distance is the total variation between the per-token weights of two aggregations, ½·Σ_t |w_t − w'_t|:
the share of the loss's weight that sits on other tokens.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import torch
import verl  # noqa: F401  (loads the fipo plugin)
from omegaconf import OmegaConf
from verl.trainer.ppo.core_algos import get_policy_loss_fn

from fipo_cli.loss.fipo import kept_token_denominator

BATCH, LENGTH = 16, 8192


@dataclass(frozen=True)
class MiniBatchShape:
    """A recipe's mini-batch as verl's FSDP engine splits it: per rank, micro-batches of ≤ max_tokens tokens."""

    name: str
    responses: int  # mini-batch prompts × responses per prompt
    ranks: int  # data-parallel ranks: GPUs / sequence-parallel size
    max_tokens: int  # ppo_max_token_len_per_gpu × sequence-parallel size
    prompt_tokens: tuple[int, int]  # uniform range
    response_median: float  # response lengths: log-normal, σ = 0.6, within [1, max_response]
    max_response: int


SHAPES_OF_RECIPES = [
    MiniBatchShape("tiny (fipo's CPU recipe)", 4 * 8, 1, 56, (20, 40), 4, 8),
    MiniBatchShape("qwen2.5-math-7b-fipo", 64 * 32, 32 // 4, 12288 * 4, (100, 400), 3000, 10240),
    MiniBatchShape("qwen2.5-32b-fipo", 64 * 16, 128 // 8, 22528 * 8, (100, 400), 6000, 20480),
]
DROPPED_SHARES = (0.0, 0.01, 0.05, 0.2)  # of the responses


def micro_batches_of_rank(sequence_lengths: list[int], max_tokens: int) -> list[list[int]]:
    """verl's own split of one rank's sequences into micro-batches (dynamic batch size), as row indices."""
    from tensordict import TensorDict
    from verl.utils.seqlen_balancing import rearrange_micro_batches

    offsets = torch.tensor([0, *sequence_lengths]).cumsum(0)
    input_ids = torch.nested.nested_tensor_from_jagged(torch.zeros(int(offsets[-1]), dtype=torch.long), offsets=offsets)
    _, rows = rearrange_micro_batches(TensorDict({"input_ids": input_ids}, batch_size=[len(sequence_lengths)]),
                                      max_token_len=max_tokens)
    return rows


def aggregation_weights(lengths: torch.Tensor, dropped: torch.Tensor, micro_batches: list[torch.Tensor]):
    """Each response's per-token weight in the mini-batch's loss under four aggregations (float64).

    lengths: (n,) valid tokens per response; dropped: (n,) bool; micro_batches: row indices, every rank's.
    """
    kept = ~dropped
    exact = torch.where(kept, 1.0 / lengths[kept].sum(), 0.0)
    verl_count = torch.full_like(exact, 1.0 / lengths.sum()) * kept
    fipo, official = torch.zeros_like(exact), torch.zeros_like(exact)
    for rows in micro_batches:
        kept_rows = rows[kept[rows]]
        if len(kept_rows):
            kept_tokens = float(lengths[kept_rows].sum())
            denominator = kept_token_denominator(float(lengths.sum()), float(lengths[rows].sum()), kept_tokens)
            fipo[kept_rows] = 1.0 / denominator
            official[kept_rows] = len(rows) / len(lengths) / kept_tokens
    return {"fipo": fipo, "official": official, "exact": exact, "verl_count": verl_count}


def aggregation_table(trials: int) -> None:
    from statistics import mean

    generator = torch.Generator().manual_seed(0)
    print("| mini-batch | dropped | responses per micro-batch | fipo ↔ official | fipo ↔ exact kept mean "
          "| verl's count ↔ official | verl's count ↔ exact | official ↔ exact |")
    print("|---|---|---|---|---|---|---|---|")
    pairs = [("fipo", "official"), ("fipo", "exact"), ("verl_count", "official"), ("verl_count", "exact"),
             ("official", "exact")]
    for shape in SHAPES_OF_RECIPES:
        for share in DROPPED_SHARES:
            distances: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
            sizes: list[float] = []
            for _ in range(trials):
                lengths = torch.exp(torch.randn(shape.responses, generator=generator, dtype=torch.float64) * 0.6)
                lengths = (lengths * shape.response_median).round().clamp(1, shape.max_response)
                prompts = torch.randint(*shape.prompt_tokens, (shape.responses,), generator=generator)
                # A long response has more tokens on which the dual clip can fire: drop in proportion to length.
                dropped = torch.zeros(shape.responses, dtype=torch.bool)
                if share:
                    count = max(1, round(share * shape.responses))
                    dropped[torch.multinomial(lengths, count, generator=generator)] = True
                order = torch.randperm(shape.responses, generator=generator)
                micro_batches = []
                for rank_rows in order.chunk(shape.ranks):
                    sequence_lengths = (lengths[rank_rows] + prompts[rank_rows]).long().tolist()
                    split = micro_batches_of_rank(sequence_lengths, shape.max_tokens)
                    micro_batches += [rank_rows[rows] for rows in split]
                sizes.append(shape.responses / len(micro_batches))
                weights = aggregation_weights(lengths, dropped, micro_batches)
                for a, b in pairs:
                    distances[(a, b)].append(0.5 * float((lengths * (weights[a] - weights[b]).abs()).sum()))
            cells = " | ".join(f"{100 * mean(distances[pair]):.2f} %" for pair in pairs)
            print(f"| {shape.name} | {100 * share:g} % | {mean(sizes):.1f} | {cells} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--aggregation", action="store_true", help="the aggregation table instead of the timings")
    parser.add_argument("--trials", type=int, default=20, help="mini-batches drawn per row of the aggregation table")
    args = parser.parse_args()
    if args.aggregation:
        aggregation_table(args.trials)
        return
    generator = torch.Generator().manual_seed(0)
    old = (-torch.rand(BATCH, LENGTH, generator=generator) * 2).to(args.device)
    new = (old.cpu() + 0.3 * torch.randn(BATCH, LENGTH, generator=generator)).to(args.device).requires_grad_(True)
    adv = torch.randn(BATCH, 1, generator=generator).expand(BATCH, LENGTH).contiguous().to(args.device)
    mask = (torch.rand(BATCH, LENGTH, generator=generator) > 0.05).to(args.device)
    config = OmegaConf.create(
        {"clip_ratio": 0.2, "clip_ratio_low": 0.2, "clip_ratio_high": 0.28, "clip_ratio_c": 10.0,
         "loss_agg_mode": "token-mean", "global_batch_info": {},
         "policy_loss": {"future_kl_clip_ratio": 0.2, "future_kl_clip_high_only": True, "decay_rate": 32.0}}
    )
    losses = {name: get_policy_loss_fn(name) for name in ("vanilla", "future_kl")}

    def step(name: str, backward: bool) -> None:
        loss, _ = losses[name](old, new, adv, mask, "token-mean", config, None)
        if backward:
            loss.backward()

    def sync() -> None:
        if args.device == "cuda":
            torch.cuda.synchronize()

    print(f"device={args.device} threads={torch.get_num_threads()} torch={torch.__version__} (B, L)=({BATCH}, {LENGTH}) fp32")
    print("| pass | vanilla | FIPO (future_kl) | FIPO / vanilla |")
    print("|---|---|---|---|")
    for backward in (False, True):
        samples: dict[str, list[float]] = {name: [] for name in losses}
        for _ in range(5):
            for name in losses:
                step(name, backward)
        for _ in range(args.repeats):
            for name in losses:
                sync()
                start = time.perf_counter()
                step(name, backward)
                sync()
                samples[name].append(time.perf_counter() - start)
        median = {name: statistics.median(values) for name, values in samples.items()}
        print(
            f"| {'forward + backward' if backward else 'forward'} | {median['vanilla'] * 1e3:.2f} ms "
            f"| {median['future_kl'] * 1e3:.2f} ms | {median['future_kl'] / median['vanilla']:.2f}× |"
        )


if __name__ == "__main__":
    main()
