"""XLand-MiniGrid collection speed: the family's batched streams (``XLandVecEnv``, one vmapped
JAX step for all streams) against ``DummyVecEnv`` over ``XLandEnv`` (one jitted step per env),
side by side in one process.

Two measurements for each of 4 and 16 streams: env steps/s under uniformly random actions, and
env steps/s of PPO learning one ruleset through the recorder, as ``ad-collect`` runs it. Prints
each ratio (batched / one at a time) and the machine's single-thread matmul GFLOP/s.

Usage: ``python bench/xland_vec_env.py [--steps N] [--out JSON]`` (needs the ``xland`` extra);
``--out`` also writes the numbers as JSON (docs/results/bench_xland_vec_env.json is the kept one).
Run it on a quiet machine; the numbers are meaningless while other jobs share the cores.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv

from ad.data.recording import RecordingVecEnv
from ad.data.sources import make_source
from ad.utils import matmul_gflops
from envs.xland import XLandMiniGrid

FAMILY = XLandMiniGrid(num_tasks=8, num_objects=2, episode_length=40)
TASK = {"group": 0}
PPO_KWARGS = {"n_steps": 64, "batch_size": 256, "n_epochs": 4}


def streams(kind: str, n: int):
    if kind == "batched":
        return FAMILY.make_vec_env(TASK, n)
    return DummyVecEnv([lambda: FAMILY.make_env(TASK)] * n)


def random_steps_per_s(kind: str, n: int, steps: int) -> float:
    venv = streams(kind, n)
    venv.seed(0)
    venv.reset()
    rng = np.random.default_rng(0)
    venv.step(rng.integers(0, 6, n))  # compiled before the clock starts
    start = time.perf_counter()
    for _ in range(steps // n):
        venv.step(rng.integers(0, 6, n))
    return (steps // n) * n / (time.perf_counter() - start)


def ppo_steps_per_s(kind: str, n: int, steps: int) -> float:
    recorder = RecordingVecEnv(streams(kind, n), steps // n)
    recorder.seed(0)
    source = make_source("PPO", recorder, 0, PPO_KWARGS, None)
    start = time.perf_counter()
    source.learn(steps)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=16384, help="env steps per measurement")
    parser.add_argument("--out", type=Path, help="also write the numbers to this JSON file")
    args = parser.parse_args()
    gflops = matmul_gflops()
    print(f"single-thread matmul: {gflops:.1f} GFLOP/s")
    rows = []
    for measure, name in ((random_steps_per_s, "random actions"), (ppo_steps_per_s, "PPO")):
        for n in (4, 16):
            one = measure("one at a time", n, args.steps)
            batched = measure("batched", n, args.steps)
            rows.append({"measure": name, "streams": n, "batched": batched, "one_at_a_time": one})
            print(
                f"{name}, {n} streams: batched {batched:,.0f} env steps/s, one at a time "
                f"{one:,.0f}; batched / one at a time: {batched / one:.1f}x"
            )
    if args.out:
        result = {
            "benchmark": "bench/xland_vec_env.py",
            "steps": args.steps,
            "matmul_gflops": gflops,
            "machine": platform.processor() or platform.machine(),
            "env_steps_per_s": rows,
        }
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
