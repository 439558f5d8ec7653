"""Collect speed: what recording costs over raw stable-baselines3, and scaling over workers.

Two measurements, side by side in one process, on Dark Room:

1. The same SB3 PPO config learning one goal, raw (``PPO(...).learn``) versus recorded (the
   ``RecordingVecEnv`` wrapper, reporting progress to shared step counts as in a pool worker, and
   the stop callback that collect uses, via ``ad.data.sources``), alternating for several repetitions; prints the median times and their ratio (target: recording
   costs at most 5%, ratio <= 1.05). Writing the HDF5 file is timed separately.
2. ``ad.data.collect.collect`` of a multi-task dataset with workers=1 versus workers=2; prints the
   speed-up of the execution phase (target >= 1.8x on 2 free cores; includes worker start-up).

Usage: ``python bench/collect_overhead.py [--quick] [--reps N] [--steps N] [--tasks N]``.
Run it on a quiet machine; the numbers are meaningless while other jobs share the cores.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import DummyVecEnv

import envs
from ad.config import config_from_dict
from ad.data.collect import collect
from ad.data.histories import write_history
from ad.data.recording import RecordingVecEnv
from ad.data.runs import stream_oracle
from ad.data.sources import make_source
from ad.utils import matmul_gflops

N_ENVS = 4
PPO_KWARGS = {"learning_rate": 1e-3, "n_steps": 128, "batch_size": 128, "n_epochs": 10}


def _venv(task: dict) -> DummyVecEnv:
    family = envs.make_family("DarkRoom")
    return DummyVecEnv([lambda: family.make_env(task)] * N_ENVS)


def time_raw(task: dict, steps: int, seed: int) -> float:
    venv = _venv(task)
    start = time.perf_counter()
    model = PPO("MlpPolicy", venv, seed=seed, device="cpu", **PPO_KWARGS)
    model.set_logger(Logger(None, []))  # as ad.data.sources does: only recording differs
    model.learn(steps)
    return time.perf_counter() - start


def time_recorded(task: dict, steps: int, seed: int, out: Path) -> tuple[float, float]:
    """Seconds to learn while recording, and seconds to write the history."""
    step_counts = multiprocessing.RawArray("q", 1)  # collect's shared step counts in pool mode

    def report(num_steps: int) -> None:
        step_counts[0] += num_steps

    start = time.perf_counter()
    streams = _venv(task)  # recorded as collect records: with Dark Room's oracle at every step
    oracle = stream_oracle(envs.make_family("DarkRoom"), task, streams)
    venv = RecordingVecEnv(streams, steps // N_ENVS, on_steps=report, oracle=oracle)
    venv.seed(seed)
    make_source("PPO", venv, seed, PPO_KWARGS).learn(steps)
    learned = time.perf_counter()
    assert venv.full and step_counts[0] == steps, "the recorder must hold and report every step"
    write_history(out, {"num_actions": 5, "observation_space": {}}, **venv.arrays())
    return learned - start, time.perf_counter() - learned


def recording_overhead(steps: int, reps: int) -> None:
    task = envs.make_family("DarkRoom").split(0).train[0]
    raw, recorded, writes = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        time_raw(task, N_ENVS * PPO_KWARGS["n_steps"], 0)  # warm-up: imports, allocator
        for rep in range(reps):  # alternate, so drifting machine load hits both alike
            raw.append(time_raw(task, steps, rep))
            seconds, write = time_recorded(task, steps, rep, Path(tmp) / f"{rep}.h5")
            recorded.append(seconds)
            writes.append(write)
    raw_s, rec_s = statistics.median(raw), statistics.median(recorded)
    print(f"PPO on DarkRoom, {steps} env steps ({N_ENVS} envs), median of {reps} alternating runs")
    print(f"  raw SB3:   {raw_s:.3f} s  ({steps / raw_s:,.0f} steps/s)")
    print(f"  recorded:  {rec_s:.3f} s  ({steps / rec_s:,.0f} steps/s)")
    print(f"  ratio recorded / raw: {rec_s / raw_s:.3f}  (target <= 1.05)")
    print(f"  writing the history file: {statistics.median(writes) * 1e3:.1f} ms (not in ratio)")


def _collect_seconds(tasks: int, steps: int, workers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config_from_dict(
            {
                "name": "bench",
                "env": {"num_train_tasks": tasks},
                "collect": {
                    "algorithm_kwargs": PPO_KWARGS,
                    "n_envs": N_ENVS,
                    "total_steps": steps,
                    "seeds": [0],  # one run per task, as the figures in docs/benchmarks.md
                    "splits": ["train"],
                    "output_dir": tmp,
                },
            }
        )
        return collect(cfg, workers=workers, progress=False)["seconds"]


def worker_scaling(tasks: int, steps: int) -> None:
    # The first pool of a process starts the forkserver, which imports torch and SB3 once; later
    # pools fork from it at once. Time that start-up apart, then the steady state.
    startup = _collect_seconds(2, N_ENVS * PPO_KWARGS["n_steps"], workers=2)
    seconds = {workers: _collect_seconds(tasks, steps, workers) for workers in (1, 2)}
    print(f"collect {tasks} DarkRoom tasks x {steps} steps")
    print(f"  one-off worker start-up (first pool of a process): about {startup:.2f} s")
    for workers, value in seconds.items():
        print(f"  workers={workers}: {value:.2f} s  ({tasks * steps / value:,.0f} env steps/s)")
    print(f"  speed-up workers=2 / workers=1: {seconds[1] / seconds[2]:.2f}x  (target >= 1.8x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a correctness check")
    parser.add_argument("--reps", type=int, default=5, help="alternating repetitions")
    parser.add_argument("--steps", type=int, default=12_288, help="env steps per PPO run")
    parser.add_argument("--tasks", type=int, default=8, help="tasks in the scaling collection")
    args = parser.parse_args()
    # Machines of one kind differ several-fold: every absolute time is read against this.
    print(f"machine: single-thread matmul {matmul_gflops():.1f} GFLOP/s")
    if args.quick:
        args.reps, args.steps, args.tasks = 1, 1024, 2
    torch.set_num_threads(1)  # as in a collect worker
    recording_overhead(args.steps, args.reps)
    worker_scaling(args.tasks, args.steps)


if __name__ == "__main__":
    main()
