"""Training throughput of the generalist (four families in every batch) against a specialist of the
same size, side by side (issue 14, point 4: mixing must not slow the step by more than 10%).

Both get the same trunk (width, depth, heads, MLP width, context) and the same batch of windows:
the specialist 32 Dark Room windows, the generalist 8 windows each of Dark Room, the Bandit,
Key-to-Door and the point robot (configs/generalist_quick.yaml's families; the batch split by
weight as ``ad.learn.train`` splits it), each family through its own encoders and head
(the point robot's: a Box observation MLP, a Box action input and a binned head), the trunk run
once on all rows. One training step is forward + backward + Adam step, on synthetic windows (the
data side is each family's own ``get_batch``, as a specialist's). Repetitions alternate between the models in one process; the median tokens/s of
each is compared.

Usage: python bench/mixture_throughput.py [--quick] [--threads N] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
from _shared import time_training, training_inputs
from gymnasium.spaces import Box, Discrete, MultiDiscrete

from ad.config import ModelConfig
from ad.generalist import family_rows
from ad.learn.model import ADTransformer
from ad.utils import matmul_gflops

SPACES = {  # the spaces of configs/generalist_quick.yaml's families' histories
    "DarkRoom": (MultiDiscrete([9, 9]), Discrete(5)),
    "Bandit": (Discrete(1), Discrete(10)),
    "DarkKeyToDoor": (MultiDiscrete([9, 9]), Discrete(5)),
    "PointRobot": (Box(-2.0, 2.0, (2,), np.float32), Box(-0.1, 0.1, (2,), np.float32)),
}


def make_batch(name: str, rows: int, steps: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Synthetic windows of one family: (rows, steps, ...) tensors."""
    gen = torch.Generator().manual_seed(0)
    obs_space, act_space = SPACES[name]
    if isinstance(obs_space, Box):
        obs = torch.rand(rows, steps, 2, generator=gen) * 4 - 2
        actions = (torch.rand(rows, steps, 2, generator=gen) - 0.5) / 5  # inside the Box
        prev = torch.cat([torch.full((rows, 1, 2), float("nan")), actions[:, :-1]], 1)
        batch = training_inputs(obs, 1, gen, device)
        return {**batch, "prev_actions": prev.to(device), "targets": actions.to(device)}
    if isinstance(obs_space, MultiDiscrete):
        obs = torch.randint(0, 9, (rows, steps, 2), generator=gen)
    else:
        obs = torch.zeros(rows, steps, dtype=torch.long)
    return training_inputs(obs, int(act_space.n), gen, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--context", type=int, default=200)
    parser.add_argument("--embed-dim", type=int, default=64)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ff-dim", type=int, default=256)
    parser.add_argument("--reps", type=int, default=7, help="alternating repetitions (median)")
    parser.add_argument("--steps", type=int, default=5, help="training steps per repetition")
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
        context_steps=args.context,
        action_bins=64,  # the generalist's (the point robot's recipe)
    )
    specialist = ADTransformer(cfg, {"DarkRoom": SPACES["DarkRoom"]}).to(device).train()
    generalist = ADTransformer(cfg, SPACES).to(device).train()
    rows = family_rows(args.batch_size, [1.0] * len(SPACES))
    alone = make_batch("DarkRoom", args.batch_size, args.context, device)
    mixed = {n: make_batch(n, r, args.context, device) for n, r in zip(SPACES, rows, strict=True)}
    steps = {
        "specialist": (lambda: specialist({"DarkRoom": alone})[1], specialist),
        "generalist": (lambda: generalist(mixed)[1], generalist),
    }
    optimizers = {n: torch.optim.Adam(m.parameters(), lr=3e-4) for n, (_, m) in steps.items()}
    print(
        f"device={device} threads={torch.get_num_threads()} batch={args.batch_size} "
        f"(generalist: {' + '.join(f'{r} {n}' for n, r in zip(SPACES, rows, strict=True))} rows) "
        f"context={args.context} "
        f"d={args.embed_dim} layers={args.layers} heads={args.heads} ff={args.ff_dim} "
        f"params: specialist {specialist.num_parameters():,}, generalist "
        f"{generalist.num_parameters():,} torch={torch.__version__}"
    )
    for name, (fn, _) in steps.items():  # warm-up: allocator, kernels, the ALiBi bias cache
        time_training(fn, optimizers[name], 2, device)
    tokens = args.batch_size * args.context * args.steps
    rates: dict[str, list[float]] = {name: [] for name in steps}
    for rep in range(args.reps):
        order = list(steps) if rep % 2 == 0 else list(reversed(steps))
        for name in order:
            fn, _ = steps[name]
            rates[name].append(tokens / time_training(fn, optimizers[name], args.steps, device))
    for name, values in rates.items():
        print(f"{name:10s} {statistics.median(values):12,.0f} tokens/s")
    ratio = statistics.median(rates["generalist"]) / statistics.median(rates["specialist"])
    print(f"ratio generalist/specialist: {ratio:.3f}  (target >= 0.90)")


if __name__ == "__main__":
    main()
