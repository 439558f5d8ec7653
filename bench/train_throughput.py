"""Training throughput of ADTransformer against a plain nanoGPT-style reference, side by side.

Both models get the same width, depth, heads, MLP width, context, batch and input embeddings; they
differ only in positions: ours uses ALiBi biases with a banded causal mask (an additive float mask to
SDPA), the reference a learned absolute position embedding and SDPA with is_causal=True. One training
step is forward + backward + Adam step. Repetitions alternate between the models in one process and
the median tokens/s of each is compared.

Also printed: the achieved fraction of this machine's matmul FLOP/s, with model FLOPs estimated as
nanoGPT/PaLM do (6 * non-embedding params + 12 * layers * context * width per token), and a
micro-comparison of the attention variants (SDPA is_causal / SDPA float mask / manual softmax).

Usage: python bench/train_throughput.py [--quick] [--threads N] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn
from _shared import sync, time_training, training_inputs
from gymnasium.spaces import Discrete, MultiDiscrete
from torch.nn import functional as F

from ad.config import ModelConfig
from ad.learn.model import ADTransformer
from ad.utils import matmul_gflops

DARKROOM = MultiDiscrete([9, 9])
NUM_ACTIONS = 5
SPACES = {"DarkRoom": (DARKROOM, Discrete(NUM_ACTIONS))}


# --------------------------------------------------------------------------- the reference model


class RefBlock(nn.Module):
    """nanoGPT's block: pre-norm, fused qkv, causal SDPA, GELU MLP."""

    def __init__(self, d: int, nh: int, ff: int, dropout: float) -> None:
        super().__init__()
        self.nh = nh
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.c_attn, self.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d), nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.nh, C // self.nh).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.nh, C // self.nh).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.nh, C // self.nh).transpose(1, 2)  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        x = x + self.drop(self.c_proj(y))
        return x + self.mlp(self.ln_2(x))


class RefGPT(nn.Module):
    """The same inputs as ADTransformer on Dark Room, plus a learned absolute position embedding."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.embed_dim
        self.obs_emb = nn.Embedding(18, d)  # x and y tables, summed
        self.register_buffer("offsets", torch.tensor([0, 9]), persistent=False)
        self.action_emb = nn.Embedding(NUM_ACTIONS + 1, d)
        self.reward_emb = nn.Linear(1, d)
        self.done_emb = nn.Embedding(2, d)
        self.pos_emb = nn.Embedding(cfg.context_steps, d)
        self.drop = nn.Dropout(cfg.dropout)
        blocks = [
            RefBlock(d, cfg.num_heads, cfg.ff_dim, cfg.dropout) for _ in range(cfg.num_layers)
        ]
        self.blocks = nn.Sequential(*blocks)
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, NUM_ACTIONS)

    def forward(self, observations, prev_actions, prev_rewards, prev_dones, targets):
        T = prev_actions.size(1)
        x = (
            self.obs_emb(observations + self.offsets).sum(2)  # (B, T, 2, d) -> (B, T, d)
            + self.action_emb(prev_actions)
            + self.reward_emb(prev_rewards.unsqueeze(-1))
            + self.done_emb(prev_dones.long())
            + self.pos_emb(torch.arange(T, device=prev_actions.device))  # (T, d)
        )
        logits = self.head(self.ln_f(self.blocks(self.drop(x))))  # (B, T, A)
        loss = F.cross_entropy(logits.reshape(-1, NUM_ACTIONS), targets.reshape(-1))
        return logits, loss


# --------------------------------------------------------------------------- measurements


def make_batch(batch: int, steps: int, device: torch.device) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    observations = torch.randint(0, 9, (batch, steps, 2), generator=gen)
    return training_inputs(observations, NUM_ACTIONS, gen, device)


def matmul_flops(n: int, device: torch.device, repeats: int = 5) -> float:
    """Best measured FLOP/s of an (n x n) @ (n x n) float32 matmul."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def matmul_params(model: nn.Module) -> int:
    """Parameters that take part in matmuls: everything except embedding tables."""
    tables = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding))
    return sum(p.numel() for p in model.parameters()) - tables


def attention_variants(cfg: ModelConfig, batch: int, device: torch.device, repeats: int) -> None:
    """Forward + backward time of the attention op alone, for the three ways to write it."""
    nh, T, hs = cfg.num_heads, cfg.context_steps, cfg.embed_dim // cfg.num_heads
    q, k, v = (torch.randn(batch, nh, T, hs, device=device, requires_grad=True) for _ in range(3))
    model = ADTransformer(cfg, SPACES).to(device)
    bias = model._bias(T, device, q.dtype)  # (1, nh, T, T) ALiBi + causal band

    def manual():
        att = (q @ k.transpose(-2, -1)) * hs**-0.5 + bias  # (B, nh, T, T)
        return att.softmax(dim=-1) @ v

    variants = {
        "sdpa_is_causal": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        "sdpa_alibi_mask": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=bias),
        "manual_alibi": manual,
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            sync(device)
            start = time.perf_counter()
            for _ in range(5):
                fn().sum().backward()
            sync(device)
            times[name].append((time.perf_counter() - start) / 5)
    base = statistics.median(times["sdpa_is_causal"])
    for name, values in times.items():
        ms = statistics.median(values) * 1e3
        print(f"  attention {name:16s} {ms:8.3f} ms   ({base / statistics.median(values):.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--context", type=int, default=100)
    parser.add_argument("--embed-dim", type=int, default=64)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ff-dim", type=int, default=256)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--reps", type=int, default=7, help="alternating repetitions (median)")
    parser.add_argument("--steps", type=int, default=10, help="training steps per repetition")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (torch default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="a tiny run that checks the script")
    args = parser.parse_args()
    # Machines of one kind differ several-fold: every absolute time is read against this.
    print(f"machine: single-thread matmul {matmul_gflops():.1f} GFLOP/s")
    if args.quick:
        args.batch_size, args.context, args.reps, args.steps = 4, 16, 2, 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)

    cfg = ModelConfig(
        embed_dim=args.embed_dim,
        num_layers=args.layers,
        num_heads=args.heads,
        ff_dim=args.ff_dim,
        dropout=args.dropout,
        context_steps=args.context,
    )
    models = {
        "ours": ADTransformer(cfg, SPACES).to(device).train(),
        "reference": RefGPT(cfg).to(device).train(),
    }
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=3e-4) for name, m in models.items()}
    batch = make_batch(args.batch_size, args.context, device)
    losses = {  # ours as the trainer calls it: a batch per family
        "ours": lambda: models["ours"]({"DarkRoom": batch})[1],
        "reference": lambda: models["reference"](**batch)[1],
    }
    tokens = args.batch_size * args.context * args.steps
    print(
        f"device={device} threads={torch.get_num_threads()} batch={args.batch_size} "
        f"context={args.context} d={args.embed_dim} layers={args.layers} heads={args.heads} "
        f"ff={args.ff_dim} torch={torch.__version__}"
    )
    for name in models:  # warm-up: allocator, kernels, the ALiBi bias cache
        time_training(losses[name], optimizers[name], 2, device)
    rates: dict[str, list[float]] = {name: [] for name in models}
    for rep in range(args.reps):
        order = list(models) if rep % 2 == 0 else list(reversed(models))
        for name in order:
            seconds = time_training(losses[name], optimizers[name], args.steps, device)
            rates[name].append(tokens / seconds)

    peak = matmul_flops(512 if args.quick else 2048, device)
    print(f"matmul peak: {peak / 1e9:.1f} GFLOP/s")
    L, T, d = args.layers, args.context, args.embed_dim
    for name, model in models.items():
        rate = statistics.median(rates[name])
        flops_per_token = 6 * matmul_params(model) + 12 * L * T * d
        print(
            f"{name:10s} {rate:12,.0f} tokens/s  ({matmul_params(model):,} matmul params, "
            f"{rate * flops_per_token / peak:.1%} of matmul peak)"
        )
    ratio = statistics.median(rates["ours"]) / statistics.median(rates["reference"])
    print(f"ratio ours/reference: {ratio:.3f}  (target >= 1.0)")
    attention_variants(cfg, args.batch_size, device, repeats=args.reps)


if __name__ == "__main__":
    main()
