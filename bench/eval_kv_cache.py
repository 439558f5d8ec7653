"""Evaluation speed: the KV cache versus re-encoding the context at every step, and batching.

Two measurements, side by side in one process, on Dark Room with a randomly initialised model:

1. The two decoding modes of ``model.step`` (``eval.decoding``) on the same token stream:
   ``kv_cache`` (the default: one new token per env and step) and ``window`` (re-encode the last c
   tokens at every step, exactly what a training window of c steps computes). Both see the same
   inputs at every step (the envs follow the cache's argmax actions); each is timed with the
   shared env-stepping time added, at steady state with a full context, and the largest
   difference of their logits is printed. With one layer the two compute the same function
   (equal outputs up to float rounding); from two layers up, cached tokens carry their own
   windows' reach and the outputs differ (what that does to returns is measured on validation
   goals in docs/benchmarks.md). Prints the ratio (the target is >= 5x at c = 1000).
2. Env-steps/s of :func:`ad.evaluation.rollout.rollout` (cached, batched) at batch sizes 1, 16 and 256, to
   show that stepping many (task, seed) pairs as one batch pays.

Usage: ``python bench/eval_kv_cache.py [--quick] [--device cpu|cuda] [--threads N]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _shared import one_family, sync

import envs
from ad.config import ModelConfig
from ad.evaluation.rollout import rollout
from ad.learn.model import FamilyPolicy
from ad.utils import matmul_gflops

MODES = ("kv_cache", "reencode")


def make_model(context_steps: int, device: str, seed: int = 0, num_layers: int = 4) -> FamilyPolicy:
    torch.manual_seed(seed)
    family = envs.make_family("DarkRoom")
    env = family.make_env(family.all_tasks()[0])
    cfg = ModelConfig(context_steps=context_steps, dropout=0.0, num_layers=num_layers)
    model = one_family(cfg, env.observation_space, env.action_space)
    return model.to(device).eval()


@torch.no_grad()
def cache_vs_window(
    context_steps: int, batch: int, timed_steps: int, device: str, num_layers: int
) -> tuple[float, float, float]:
    """Env-steps/s of (kv_cache, window) at steady state with a full context of c tokens, and
    the largest absolute difference of their logits over the timed steps."""
    model = make_model(context_steps, device, num_layers=num_layers)
    family = envs.make_family("DarkRoom")
    tasks = family.split(0).test
    env_list = [family.make_env(tasks[b % len(tasks)]) for b in range(batch)]
    obs = np.stack([env.reset(seed=b)[0] for b, env in enumerate(env_list)]).astype(np.int64)
    act = np.full(batch, model.num_actions, dtype=np.int64)
    rew, done = np.zeros(batch, dtype=np.float32), np.ones(batch, dtype=bool)
    states = {mode: model.init_cache(batch, device=device, mode=mode) for mode in MODES}
    seconds = dict.fromkeys([*MODES, "envs"], 0.0)
    max_diff = 0.0
    for t in range(context_steps + timed_steps):
        timed = t > context_steps  # the first step after the fill warms both paths up
        inputs = [torch.from_numpy(x).to(device) for x in (obs, act, rew, done)]
        logits = {}
        for mode, state in states.items():
            start = time.perf_counter()
            logits[mode] = model.step(state, *inputs)
            sync(device)
            seconds[mode] += (time.perf_counter() - start) * timed
        if timed:
            max_diff = max(max_diff, float((logits["kv_cache"] - logits["reencode"]).abs().max()))
        start = time.perf_counter()
        act = logits["kv_cache"].argmax(-1).cpu().numpy()
        for b, env in enumerate(env_list):
            o, r, terminated, truncated, _ = env.step(int(act[b]))
            done[b] = terminated or truncated
            obs[b] = env.reset()[0] if done[b] else o
            rew[b] = r
        seconds["envs"] += (time.perf_counter() - start) * timed
    steps = batch * (timed_steps - 1)
    rates = [steps / (seconds[mode] + seconds["envs"]) for mode in MODES]
    return rates[0], rates[1], max_diff


def rollout_rate(batch: int, context_steps: int, num_episodes: int, device: str) -> float:
    """Env-steps/s of the real evaluation rollout with ``batch`` (task, seed) rows."""
    model = make_model(context_steps, device)
    family = envs.make_family("DarkRoom")
    test_tasks = family.split(0).test
    num_tasks = min(batch, len(test_tasks))
    num_seeds = batch // num_tasks
    start = time.perf_counter()
    rollout(
        model, family, test_tasks[:num_tasks], num_seeds, num_episodes, "sample", 1.0, 0, device
    )
    sync(device)
    steps = num_tasks * num_seeds * num_episodes * family.episode_length
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    # Machines of one kind differ several-fold: every absolute time is read against this.
    print(f"machine: single-thread matmul {matmul_gflops():.1f} GFLOP/s")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    contexts = (20, 50) if args.quick else (200, 1000)
    batch, timed_steps = (4, 5) if args.quick else (16, 50)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}")
    print(
        f"1) kv_cache vs window (re-encode), batch {batch}, {timed_steps} timed steps, full context"
    )
    for c, layers in [(contexts[0], 1), (contexts[0], 4), (contexts[1], 4)]:
        cached, window, diff = cache_vs_window(c, batch, timed_steps, args.device, layers)
        print(
            f"   context {c:5d}, {layers} layer(s): kv_cache {cached:9.0f} env-steps/s, window "
            f"{window:9.0f} env-steps/s, ratio {cached / window:6.1f}x, max |logit diff| {diff:.1e}"
        )
    episodes = 1 if args.quick else 10
    print(f"2) batched cached rollout, context {contexts[0]}, {episodes} episodes of 20 steps")
    rates = {b: rollout_rate(b, contexts[0], episodes, args.device) for b in (1, 16, 256)}
    for b, rate in rates.items():
        print(f"   batch {b:4d}: {rate:9.0f} env-steps/s ({rate / rates[1]:5.1f}x batch 1)")


if __name__ == "__main__":
    main()
