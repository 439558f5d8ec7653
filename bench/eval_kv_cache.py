"""Evaluation speed: the KV cache versus recomputing the context at every step, and batching.

Two measurements, side by side in one process, on Dark Room with a randomly initialised model:

1. At context lengths c (default 200 and 1000 transitions), env-steps/s of the cached step
   (``model.step``: one new token per env) versus recomputing ``forward()`` over the last c tokens
   at every step and taking the last logits, for the same model, batch and envs. Both are timed at
   steady state, with a full context. Prints the ratio (the target is >= 5x at c = 1000).
2. Env-steps/s of :func:`ad.evaluation.rollout.rollout` (cached, batched) at batch sizes 1, 16 and 256, to
   show that stepping many (task, seed) pairs as one batch pays.

Usage: ``python bench/eval_kv_cache.py [--quick] [--device cpu|cuda] [--threads N]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import envs
from ad.config import ModelConfig
from ad.data.spaces import space_to_json
from ad.evaluation.rollout import rollout
from ad.learn.model import ADTransformer
from ad.utils import matmul_gflops


def make_model(context_steps: int, device: str, seed: int = 0) -> ADTransformer:
    torch.manual_seed(seed)
    family = envs.make_family("DarkRoom")
    env = family.make_env(family.all_tasks()[0])
    cfg = ModelConfig(context_steps=context_steps, dropout=0.0)
    model = ADTransformer(cfg, space_to_json(env.observation_space), int(env.action_space.n))
    return model.to(device).eval()


def _step_envs(env_list: list, actions: np.ndarray, tokens: dict, t: int) -> None:
    """Step every env and write the token of step t+1 (auto-reset at episode ends)."""
    for b, env in enumerate(env_list):
        obs, reward, terminated, truncated, _ = env.step(int(actions[b]))
        done = terminated or truncated
        if done:
            obs, _ = env.reset()
        tokens["obs"][b, t + 1] = obs
        tokens["act"][b, t + 1] = actions[b]
        tokens["rew"][b, t + 1] = reward
        tokens["done"][b, t + 1] = done


@torch.no_grad()
def cached_vs_recompute(
    context_steps: int, batch: int, timed_steps: int, device: str
) -> tuple[float, float]:
    """Env-steps/s of (cached, recompute) at steady state with a full context of c tokens."""
    model = make_model(context_steps, device)
    family = envs.make_family("DarkRoom")
    tasks = family.split(0).test
    env_list = [family.make_env(tasks[b % len(tasks)]) for b in range(batch)]
    total = context_steps + 2 * timed_steps + 1
    tokens = {
        "obs": np.zeros((batch, total, 2), dtype=np.int64),
        "act": np.full((batch, total), model.num_actions, dtype=np.int64),
        "rew": np.zeros((batch, total), dtype=np.float32),
        "done": np.zeros((batch, total), dtype=bool),
    }
    for b, env in enumerate(env_list):
        tokens["obs"][b, 0] = env.reset(seed=b)[0]
    tokens["done"][:, 0] = True

    def token(name: str, t: int | slice) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(tokens[name][:, t])).to(device)

    cache = model.init_cache(batch, device=device)
    t = 0

    def cached_step() -> None:
        nonlocal t
        logits = model.step(
            cache, token("obs", t), token("act", t), token("rew", t), token("done", t)
        )
        _step_envs(env_list, logits.argmax(-1).cpu().numpy(), tokens, t)
        t += 1

    def recompute_step() -> None:
        nonlocal t
        window = slice(max(0, t + 1 - context_steps), t + 1)  # the last c tokens, as a queue
        logits, _ = model(
            token("obs", window), token("act", window), token("rew", window), token("done", window)
        )
        _step_envs(env_list, logits[:, -1].argmax(-1).cpu().numpy(), tokens, t)
        t += 1

    for _ in range(context_steps):  # fill the context (untimed) so both run with c tokens
        cached_step()
    rates = []
    for step_fn in (cached_step, recompute_step):
        step_fn()  # warm-up (allocator, kernels)
        _sync(device)
        start = time.perf_counter()
        for _ in range(timed_steps - 1):
            step_fn()
        _sync(device)
        rates.append(batch * (timed_steps - 1) / (time.perf_counter() - start))
    return rates[0], rates[1]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


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
    _sync(device)
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
    print(f"1) KV cache vs recompute, batch {batch}, {timed_steps} timed steps, full context")
    for c in contexts:
        cached, recompute = cached_vs_recompute(c, batch, timed_steps, args.device)
        print(
            f"   context {c:5d}: cached {cached:9.0f} env-steps/s, recompute {recompute:9.0f} "
            f"env-steps/s, ratio {cached / recompute:6.1f}x"
        )
    episodes = 1 if args.quick else 10
    print(f"2) batched cached rollout, context {contexts[0]}, {episodes} episodes of 20 steps")
    rates = {b: rollout_rate(b, contexts[0], episodes, args.device) for b in (1, 16, 256)}
    for b, rate in rates.items():
        print(f"   batch {b:4d}: {rate:9.0f} env-steps/s ({rate / rates[1]:5.1f}x batch 1)")


if __name__ == "__main__":
    main()
