"""What the benchmarks share: device synchronisation, a timed training loop and the synthetic
non-observation inputs of a training batch. The scripts run as ``python bench/NAME.py``, which puts
this folder on ``sys.path``, so they import it as ``_shared``."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from gymnasium.spaces import Discrete, Space

from ad.config import ModelConfig
from ad.learn.model import ADTransformer, FamilyPolicy


def sync(device: torch.device | str) -> None:
    """Wait for the device's queued kernels, so that a timer reads finished work (CPU: no-op)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def training_inputs(
    observations: torch.Tensor, num_actions: int, gen: torch.Generator, device: torch.device
) -> dict[str, torch.Tensor]:
    """A training batch of ``observations`` (B, T, ...) with random previous actions (ids up to
    ``num_actions``, the "none" id), rewards, episode starts and targets, drawn from ``gen`` after
    the observations, on ``device``."""
    batch, steps = observations.shape[:2]
    data = {
        "observations": observations,
        "prev_actions": torch.randint(0, num_actions + 1, (batch, steps), generator=gen),
        "prev_rewards": (torch.rand(batch, steps, generator=gen) < 0.3).float(),
        "prev_dones": torch.rand(batch, steps, generator=gen) < 0.05,
        "targets": torch.randint(0, num_actions, (batch, steps), generator=gen),
    }
    return {k: v.to(device) for k, v in data.items()}


def time_training(
    loss_fn: Callable[[], torch.Tensor], opt: torch.optim.Optimizer, steps: int, device
) -> float:
    """Seconds for ``steps`` training steps: ``loss_fn()`` forward, backward and the optimiser."""
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return time.perf_counter() - start


def one_family(
    cfg: ModelConfig, observation_space: Space, action_space: Space | int
) -> FamilyPolicy:
    """A fresh one-family model's policy; an int action space is Discrete(n)."""
    if isinstance(action_space, int):
        action_space = Discrete(action_space)
    return ADTransformer(cfg, {"F": (observation_space, action_space)}).policy()
