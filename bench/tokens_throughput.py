"""Throughput of Gato's tokens for continuous values (``ad/learn/tokens.py``, issue 13).

Side by side in one process, at a few batch sizes (values per call), for numpy arrays and torch
tensors on the CPU (and a GPU with ``--device cuda``):

- ``encode``: the tokenizer's encode (a search of the bin edges mapped back through the inverse
  companding; exact, so numpy and torch agree bit for bit), and next to it the textbook formula
  ``floor((clip(F(x), -1, 1) + 1) / w)`` computed directly (the reference that the edge search
  replaced: it can put a value on a bin edge into different bins on the two paths). The ratio
  edge search / formula is the price of that exactness.
- ``decode``: the tokenizer's table lookup of bin centres.

Each measurement is the best of several repeats of a fixed number of calls, the variants
alternating, after a warm-up call. Values are drawn from a wide log-uniform range (1e-3 to 300, both
signs) so that every bin region is used.

Usage: ``python bench/tokens_throughput.py [--quick] [--device cpu|cuda] [--threads N]``.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np
import torch
from _shared import sync

from ad.learn.tokens import MuLawTokenizer
from ad.utils import matmul_gflops

TOKENIZER = MuLawTokenizer()  # Gato's: mu 100, M 256, 1024 bins


def formula_encode(values: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """The direct formula: compand, clip, floor; numpy or torch (the reference, not exact)."""
    t = TOKENIZER
    xp = torch if isinstance(values, torch.Tensor) else np
    y = xp.sign(values) * xp.log1p(xp.abs(values) * t.mu) / math.log1p(t.max_value * t.mu)
    bins = xp.floor((xp.clip(y, -1.0, 1.0) + 1.0) / t.bin_width)
    bins = xp.clip(bins, 0, t.num_bins - 1)
    return bins.long() if xp is torch else bins.astype(np.int64)


def sample_values(n: int, seed: int = 0) -> np.ndarray:
    """(n,) float64 values, log-uniform in magnitude over [1e-3, 300], random signs."""
    rng = np.random.default_rng(seed)
    return rng.choice([-1.0, 1.0], n) * np.exp(rng.uniform(math.log(1e-3), math.log(300.0), n))


def best_rate(
    fns: dict[str, Callable[[], object]], n: int, calls: int, repeats: int, device: str
) -> dict[str, float]:
    """Values/s of each function: best of ``repeats`` blocks of ``calls`` calls, alternating."""
    for fn in fns.values():  # warm-up (lazy tables, allocator, kernels)
        fn()
    sync(device)
    best = dict.fromkeys(fns, math.inf)
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            sync(device)
            best[name] = min(best[name], (time.perf_counter() - start) / calls)
    return {name: n / seconds for name, seconds in best.items()}


def measure(n: int, kind: str, device: str, repeats: int) -> dict[str, float]:
    """Values/s of encode, the formula and decode for ``n`` values as ``kind`` (numpy, torch)."""
    values = sample_values(n)
    if kind == "torch":
        values = torch.from_numpy(values).to(device)
    tokens = TOKENIZER.encode(values)
    calls = max(1, 200_000 // n)
    fns = {
        "encode": lambda: TOKENIZER.encode(values),
        "formula": lambda: formula_encode(values),
        "decode": lambda: TOKENIZER.decode(tokens),
    }
    return best_rate(fns, n, calls, repeats, device)


def agreement(n: int) -> float:
    """Share of values that the formula puts in the tokenizer's bin (numpy path)."""
    values = sample_values(n, seed=1)
    return float((formula_encode(values) == TOKENIZER.encode(values)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that it runs")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    # Machines of one kind differ several-fold: every absolute rate is read against this.
    print(f"machine: single-thread matmul {matmul_gflops():.1f} GFLOP/s")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(f"torch device {args.device}, torch threads {torch.get_num_threads()}")
    print(f"tokenizer: mu {TOKENIZER.mu:g}, M {TOKENIZER.max_value:g}, {TOKENIZER.num_bins} bins")
    sizes = (1, 256, 4096) if args.quick else (1, 64, 4096, 262_144)
    repeats = 2 if args.quick else 5
    print("values/s (M = million); ratio = encode / direct formula")
    for kind in ("numpy", "torch"):
        for n in sizes:
            rates = measure(n, kind, args.device if kind == "torch" else "cpu", repeats)
            print(
                f"  {kind:5s} batch {n:7d}: encode {rates['encode'] / 1e6:8.2f} M, formula "
                f"{rates['formula'] / 1e6:8.2f} M (ratio {rates['encode'] / rates['formula']:5.2f}),"
                f" decode {rates['decode'] / 1e6:8.2f} M"
            )
    share = agreement(100_000 if args.quick else 1_000_000)
    print(
        f"formula and tokenizer agree on {100 * share:.4f}% of values (the rest sit on bin edges)"
    )


if __name__ == "__main__":
    main()
