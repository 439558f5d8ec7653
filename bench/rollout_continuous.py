"""Evaluation speed with continuous actions next to the discrete path (issue 13).

Env-steps/s of :func:`ad.evaluation.rollout.rollout` (batched, KV cache, sampled actions) with a
randomly initialised model of the same trunk on

- Dark Room (Discrete(5) actions, categorical head): the discrete path;
- the point robot (Box(2) actions) with the bins head (64 bins per dimension, as in
  ``configs/pointrobot_quick.yaml``) and with the Gaussian head,

at batch sizes 1, 16 and 256, measured side by side in one process (the three alternate, best of
``--repeats``), and the ratio of each continuous path to the discrete one. Both families have
20-step episodes, so the env-step counts are equal; the model differs only in its encoders and
head. What a continuous step adds: a Box action encoder (a linear layer instead of an embedding),
a head over act_dim x bins logits (or 2 x act_dim) and the per-row draw in numpy.

Usage: ``python bench/rollout_continuous.py [--quick] [--device cpu|cuda] [--threads N]``.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from _shared import one_family

import envs
from ad.config import ModelConfig
from ad.evaluation.rollout import rollout
from ad.learn.model import FamilyPolicy
from ad.utils import matmul_gflops

PATHS = {  # name: (family, family kwargs, action head)
    "discrete": ("DarkRoom", {}, "categorical"),
    "box bins": ("PointRobot", {"reward_type": "dense"}, "bins"),
    "box gaussian": ("PointRobot", {"reward_type": "dense"}, "gaussian"),
}


def make_model(family, head: str, context_steps: int, device: str) -> FamilyPolicy:
    torch.manual_seed(0)
    env = family.make_env(family.split(0).test[0])
    cfg = ModelConfig(context_steps=context_steps, dropout=0.0, action_head=head, action_bins=64)
    model = one_family(cfg, env.observation_space, env.action_space)
    return model.to(device).eval()


def rollout_seconds(model, family, batch: int, num_episodes: int, device: str) -> float:
    """Seconds of one sampled rollout of ``batch`` (task, seed) rows."""
    tasks = family.split(0).test
    num_tasks = min(batch, len(tasks))
    start = time.perf_counter()
    rollout(
        model, family, tasks[:num_tasks], batch // num_tasks, num_episodes, "sample", 1.0, 0, device
    )
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats (best kept)")
    args = parser.parse_args()
    # Machines of one kind differ several-fold: every absolute rate is read against this.
    print(f"machine: single-thread matmul {matmul_gflops():.1f} GFLOP/s")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    context = 50 if args.quick else 200
    episodes = 1 if args.quick else 10
    batches = (1, 16) if args.quick else (1, 16, 256)
    repeats = 1 if args.quick else args.repeats
    print(
        f"device {args.device}, torch threads {torch.get_num_threads()}, context {context}, "
        f"{episodes} episodes of 20 steps per row, best of {repeats}"
    )
    families = {name: envs.make_family(fam, **kw) for name, (fam, kw, _) in PATHS.items()}
    models = {
        name: make_model(families[name], head, context, args.device)
        for name, (_, _, head) in PATHS.items()
    }
    for batch in batches:
        best = dict.fromkeys(PATHS, math.inf)
        for _ in range(repeats):
            for name in PATHS:
                seconds = rollout_seconds(
                    models[name], families[name], batch, episodes, args.device
                )
                best[name] = min(best[name], seconds)
        steps = batch * episodes * 20
        rates = {name: steps / seconds for name, seconds in best.items()}
        line = ", ".join(
            f"{name} {rate:8.0f} ({rate / rates['discrete']:4.2f}x)" for name, rate in rates.items()
        )
        print(f"  batch {batch:4d} env-steps/s: {line}")


if __name__ == "__main__":
    main()
