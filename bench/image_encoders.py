"""Training throughput of the image encoders (``model.image_encoder``) in one process, at the same
transformer size: cnn and patches on Dark Room drawn as pixels (``DarkRoomPixels``), then cnn and
codes on MiniGrid's (7, 7, 3) views of object, colour and state codes.

One training step is forward + backward + Adam on a (batch, context) window of random frames with
one lit cell; repetitions alternate between the encoders and the median tokens/s (steps of context
per second: one token per step) of each is compared. Also printed: each encoder's parameters, and
the cost of putting every patch in the sequence (Gato's way, the option not built here): the trunk
alone (a Discrete observation, so the encoder costs nothing) at the context's length in tokens
against (patches + 1) times that length, i.e. per step one token per patch and one for the
previous action and reward.

The MiniGrid views are random codes in minigrid's ranges (object < 11, colour < 6, state < 3), which
costs the encoders what real views do: their work does not depend on the values.

Usage: ``python bench/image_encoders.py [--quick] [--threads N] [--cell-pixels 2] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
from _shared import one_family, time_training, training_inputs
from gymnasium.spaces import Box, Discrete

from ad.config import ModelConfig
from ad.utils import matmul_gflops
from envs.darkroom_pixels import draw_frame

NUM_ACTIONS = 5
SIZE = 9  # Dark Room's 9x9 cells


def make_batch(batch: int, steps: int, cell_pixels: int, device: torch.device) -> dict:
    """Random walks' frames, actions, rewards and episode starts (B, T, ...)."""
    gen = torch.Generator().manual_seed(0)
    cells = torch.randint(0, SIZE, (batch * steps, 2), generator=gen).numpy()
    frames = [draw_frame(c, SIZE, cell_pixels) for c in cells]
    side = SIZE * cell_pixels
    obs = torch.from_numpy(np.stack(frames)).view(batch, steps, side, side, 3)
    return training_inputs(obs, NUM_ACTIONS, gen, device)


def make_minigrid_batch(batch: int, steps: int, device: torch.device) -> dict:
    """Random (object, colour, state) code views (B, T, 7, 7, 3), actions, rewards and starts."""
    gen = torch.Generator().manual_seed(0)
    codes = [torch.randint(0, n, (batch, steps, 7, 7, 1), generator=gen) for n in (11, 6, 3)]
    obs = torch.cat(codes, dim=-1).to(torch.uint8)
    return training_inputs(obs, 3, gen, device)


def seconds_per_step(model, opt, batch: dict, steps: int, device: torch.device) -> float:
    return time_training(lambda: model(**batch)[1], opt, steps, device) / steps


def compare(models: dict, batches: dict, tokens: dict, steps: int, repeats: int, device) -> dict:
    """Median tokens/s of each model, repetitions alternating between them."""
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}
    for k in models:  # warm-up
        seconds_per_step(models[k], opts[k], batches[k], 1, device)
    rates: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(repeats):
        for k in models:
            rates[k].append(
                tokens[k] / seconds_per_step(models[k], opts[k], batches[k], steps, device)
            )
    return {k: statistics.median(v) for k, v in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that it runs")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--cell-pixels", type=int, default=2, help="DarkRoomPixels cell_pixels")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"machine: single-thread matmul {matmul_gflops():.1f} GFLOP/s")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch, context = (4, 40) if args.quick else (16, 200)  # the recipe's batch and context
    steps, repeats = (1, 2) if args.quick else (2, 3)
    side = SIZE * args.cell_pixels
    space = Box(0, 255, (side, side, 3), np.uint8)
    base = dict(embed_dim=64, num_layers=4, num_heads=4, ff_dim=256, context_steps=context)
    print(
        f"torch threads {torch.get_num_threads()}, device {device}; frames {side}x{side}x3, "
        f"batch {batch} x context {context}, trunk 4 layers x width 64"
    )
    models, batches, tokens = {}, {}, {}
    for name in ("cnn", "patches"):
        cfg = ModelConfig(**base, image_encoder=name)
        models[name] = one_family(cfg, space, NUM_ACTIONS).to(device).train()
        batches[name] = make_batch(batch, context, args.cell_pixels, device)
        tokens[name] = batch * context
    patches = models["patches"].encoder.obs_encoder.num_patches
    # Gato's way: every patch a token, plus one for the previous action and reward, per step.
    per_step = patches + 1
    long_context = context * per_step
    trunk_cfg = {**base, "context_steps": long_context}
    cell = Discrete(81)
    for name, length in (
        ("trunk, 1 token/step", context),
        (f"trunk, {per_step} tokens/step", long_context),
    ):
        models[name] = one_family(ModelConfig(**trunk_cfg), cell, NUM_ACTIONS).to(device).train()
        gen = torch.Generator().manual_seed(1)
        b = make_batch(batch, length, 1, device)
        b["observations"] = torch.randint(0, 81, (batch, length), generator=gen).to(device)
        batches[name] = b
        tokens[name] = batch * context  # env steps of context per second, whatever the tokens
    rates = compare(models, batches, tokens, steps, repeats, device)
    for name, model in models.items():
        enc = sum(p.numel() for p in model.encoder.obs_encoder.parameters())
        total = sum(p.numel() for p in model.parameters())
        print(
            f"  {name:22s}: {rates[name]:9.0f} steps of context/s "
            f"(encoder {enc:,} params, model {total:,})"
        )
    print(f"patches / cnn: {rates['patches'] / rates['cnn']:.2f}x ({patches} patches per frame)")
    slow = rates["trunk, 1 token/step"] / rates[f"trunk, {per_step} tokens/step"]
    print(f"{per_step} tokens per step instead of 1: the trunk {slow:.1f}x slower per env step")

    print("MiniGrid (7, 7, 3) code views, 3 actions:")
    view = Box(0, 255, (7, 7, 3), np.uint8)
    models, batches, tokens = {}, {}, {}
    for name in ("cnn", "codes"):
        cfg = ModelConfig(**base, image_encoder=name)
        models[name] = one_family(cfg, view, 3).to(device).train()
        batches[name] = make_minigrid_batch(batch, context, device)
        tokens[name] = batch * context
    rates = compare(models, batches, tokens, steps, repeats, device)
    for name, model in models.items():
        enc = sum(p.numel() for p in model.encoder.obs_encoder.parameters())
        print(f"  {name:22s}: {rates[name]:9.0f} steps of context/s (encoder {enc:,} params)")
    print(f"codes / cnn: {rates['codes'] / rates['cnn']:.2f}x")


if __name__ == "__main__":
    main()
