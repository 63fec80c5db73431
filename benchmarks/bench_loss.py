"""The whole FIPO loss against verl's vanilla (DAPO) loss, both called through verl's registry.

Run by hand:  python benchmarks/bench_loss.py [--device cuda]
Shape (16, 8192), fp32, the paper's 32B knobs. Forward alone, and forward + backward (what
a training step pays); the two losses are timed interleaved to share the machine's noise.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import verl  # noqa: F401  (loads the fipo plugin)
from omegaconf import OmegaConf
from verl.trainer.ppo.core_algos import get_policy_loss_fn

BATCH, LENGTH = 16, 8192


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
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
