"""Future-KL: the O(B·L) blocked scan against the paper's chunked O(B·L²) sum (Listing 1, K = 128).

Run by hand:  python benchmarks/bench_future_kl.py [--device cuda]
Prints one row per shape: median time of each, the speed-up, the peak extra memory of
each (beyond the input), the budget 3·B·L·4 bytes, and the largest difference.
"""

from __future__ import annotations

import argparse

import torch
from _measure import median_seconds, peak_extra_bytes

from fipo_cli.loss.future_kl import discounted_future_sum
from fipo_cli.loss.knobs import gamma_from_decay_rate

SHAPES = [(32, 2048), (16, 8192), (8, 20480)]
GAMMA = gamma_from_decay_rate(32.0)


def chunked_reference(kl: torch.Tensor, gamma: float, chunk: int = 128) -> torch.Tensor:
    """The paper's Listing 1: for each chunk of K future positions, a (B, K) × (K, L) matmul."""
    _, length = kl.shape
    out = torch.zeros_like(kl)
    position = torch.arange(length, device=kl.device).unsqueeze(1)
    powers = torch.pow(torch.tensor(gamma, dtype=kl.dtype, device=kl.device), torch.arange(length, device=kl.device))
    for start in range(0, length, chunk):
        stop = min(length, start + chunk)
        distance = torch.arange(start, stop, device=kl.device).unsqueeze(0) - position
        decay = powers[distance.clamp(min=0)] * (distance >= 0).to(kl.dtype)
        out += kl[:, start:stop] @ decay.t()
    return out


IMPLEMENTATIONS = {"scan": discounted_future_sum, "chunked": chunked_reference}


def _inputs(batch: int, length: int, device: str) -> torch.Tensor:
    return 0.1 * torch.randn(batch, length, generator=torch.Generator().manual_seed(0)).to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"device={args.device} threads={torch.get_num_threads()} torch={torch.__version__} fp32 gamma={GAMMA:.5f}")
    print("| B × L | scan | chunked (K=128) | speed-up | scan peak extra | chunked peak extra | budget 3·B·L·4 | max |diff| |")
    print("|---|---|---|---|---|---|---|---|")
    for batch, length in SHAPES:
        x = _inputs(batch, length, args.device)
        scan = median_seconds(lambda x=x: discounted_future_sum(x, GAMMA), repeats=50, device=args.device)
        chunked = median_seconds(lambda x=x: chunked_reference(x, GAMMA), repeats=5, warmup=1, device=args.device)
        diff = (discounted_future_sum(x, GAMMA) - chunked_reference(x, GAMMA)).abs().max().item()
        memory = {name: peak_extra_bytes(lambda fn=fn, x=x: fn(x, GAMMA), args.device) for name, fn in IMPLEMENTATIONS.items()}
        print(
            f"| {batch} × {length} | {scan * 1e3:.3f} ms | {chunked * 1e3:.1f} ms | {chunked / scan:.0f}× "
            f"| {memory['scan'] / 2**20:.2f} MiB | {memory['chunked'] / 2**20:.1f} MiB "
            f"| {3 * batch * length * 4 / 2**20:.2f} MiB | {diff:.1e} |"
        )


if __name__ == "__main__":
    main()
