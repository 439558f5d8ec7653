"""Collection on Ray versus the local pool: scaling over workers and Ray's overhead per run.

Side by side in one process, on this machine (a local Ray instance with ``num_cpus`` = workers):

1. Scaling: ``collect`` of Dark Room PPO runs with the local pool at workers=1 and 2, and on Ray
   with 1 and 2 CPUs (``collect.backend: ray``, driver storage); prints each speed-up.
2. Overhead per run: collections of N and 2N tiny bandit runs (UCB, 400 steps, so a run itself
   costs almost nothing) on the pool (workers=2) and on Ray (2 CPUs, driver and shared storage),
   alternating; the slope (T(2N) - T(N)) / N is the cost per run without the fixed start-up
   costs; prints Ray's extra cost per run. ``ray.init`` is timed apart (once per command).

Every collect time includes its worker start-up as a user sees it: the pool's forkserver, Ray's
worker processes importing torch on their first task (the Ray instance is fresh per setting).

Usage: ``python bench/ray_overhead.py [--quick] [--tasks N] [--steps N] [--runs N] [--reps N]``.
Needs the ``ray`` extra. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import ray
import torch

from ad.config import config_from_dict
from ad.data.collect import collect
from ad.utils import matmul_gflops

PPO_KWARGS = {"learning_rate": 1e-3, "n_steps": 128, "batch_size": 128, "n_epochs": 10}


def _darkroom(tasks: int, steps: int, out: str, **collect_fields) -> object:
    return config_from_dict(
        {
            "name": "bench",
            "env": {"num_train_tasks": tasks},
            "collect": {
                "algorithm_kwargs": PPO_KWARGS,
                "n_envs": 4,
                "total_steps": steps,
                "splits": ["train"],
                "output_dir": out,
                **collect_fields,
            },
        }
    )


def _bandit(seeds: int, out: str, **collect_fields) -> object:
    """4 Bandit tasks x ``seeds`` seeds of UCB, 400 steps each: runs that cost almost nothing."""
    return config_from_dict(
        {
            "name": "bench-bandit",
            "env": {"family": "Bandit", "num_train_tasks": 4},
            "collect": {
                "algorithm": "UCB",
                "seeds": list(range(seeds)),
                "n_envs": 4,
                "total_steps": 400,
                "splits": ["train"],
                "output_dir": out,
                **collect_fields,
            },
        }
    )


def _seconds(make_cfg, workers: int | None = None, **collect_fields) -> float:
    """Wall time of one collect into a fresh folder (the driver's whole call)."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_cfg(tmp, **collect_fields)
        start = time.perf_counter()
        collect(cfg, workers=workers, progress=False)
        return time.perf_counter() - start


def _on_ray(num_cpus: int, fn) -> tuple[float, object]:
    """(seconds of ray.init, fn()) inside a fresh local Ray instance of ``num_cpus`` CPUs."""
    start = time.perf_counter()
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    init = time.perf_counter() - start
    try:
        return init, fn()
    finally:
        ray.shutdown()


def scaling(tasks: int, steps: int) -> None:
    def darkroom(out: str, **fields) -> object:
        return _darkroom(tasks, steps, out, **fields)

    _seconds(lambda out: _darkroom(2, 512, out), workers=2)  # start the pool's forkserver
    pool = {w: _seconds(darkroom, workers=w) for w in (1, 2)}
    inits, on_ray = {}, {}
    for cpus in (1, 2):
        inits[cpus], on_ray[cpus] = _on_ray(cpus, lambda: _seconds(darkroom, backend="ray"))
    total = tasks * (steps // 4 * 4)
    print(f"collect {tasks} DarkRoom PPO runs x {steps} env steps ({total:,} steps)")
    for name, times in (("pool", pool), ("ray", on_ray)):
        for w, value in times.items():
            print(f"  {name} workers={w}: {value:.2f} s  ({total / value:,.0f} env steps/s)")
        print(f"  {name} speed-up 2 / 1 workers: {times[1] / times[2]:.2f}x")
    print(f"  ray / pool at 2 workers: {on_ray[2] / pool[2]:.3f}")
    print(f"  ray.init (not in the times above): {statistics.mean(inits.values()):.1f} s")


def overhead_per_run(runs: int, reps: int) -> None:
    """Per-run cost as the slope between collections of ``runs`` and ``2 * runs`` tiny runs, so
    fixed costs (the pool's start-up, ray.init) drop out; the intercept is the fixed cost."""

    def bandit(seeds: int):
        return lambda out, **fields: _bandit(seeds, out, **fields)

    settings = {
        "pool": {"workers": 2},
        "ray driver": {"backend": "ray", "ray_storage": "driver"},
        "ray shared": {"backend": "ray", "ray_storage": "shared"},
    }

    def measure() -> dict[str, dict[int, list[float]]]:
        _seconds(bandit(2), workers=2)  # the pool's forkserver, started once per process
        _seconds(bandit(2), backend="ray")  # Ray's workers import torch on their first task
        times = {name: {runs: [], 2 * runs: []} for name in settings}
        for _ in range(reps):  # alternating, so drifting load hits all alike
            for count in (runs, 2 * runs):
                for name, fields in settings.items():
                    times[name][count].append(_seconds(bandit(count // 4), **fields))
        return times

    init, times = _on_ray(2, measure)
    print(f"collect {runs} vs {2 * runs} tiny Bandit UCB runs (400 steps), 2 workers, {reps} reps")
    slope = {}
    for name in settings:
        t1, t2 = (statistics.median(times[name][c]) for c in (runs, 2 * runs))
        slope[name] = (t2 - t1) / runs
        fixed = t1 - runs * slope[name]
        print(f"  {name}: {slope[name] * 1e3:.1f} ms per run, fixed {fixed:.2f} s per collect")
    for name in ("ray driver", "ray shared"):
        extra = slope[name] - slope["pool"]
        print(f"  {name} overhead per run over the pool: {extra * 1e3:+.1f} ms")
    print(f"  ray.init of a local 2-CPU instance: {init:.1f} s (once per command)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a correctness check")
    parser.add_argument("--tasks", type=int, default=8, help="PPO runs in the scaling collection")
    parser.add_argument("--steps", type=int, default=8192, help="env steps per PPO run")
    parser.add_argument("--runs", type=int, default=40, help="tiny runs (x4) for the overhead")
    parser.add_argument("--reps", type=int, default=3, help="alternating repetitions")
    args = parser.parse_args()
    # Machines of one kind differ several-fold: every absolute time is read against this.
    print(f"machine: single-thread matmul {matmul_gflops():.1f} GFLOP/s")
    if args.quick:
        args.tasks, args.steps, args.runs, args.reps = 2, 1024, 8, 1
    torch.set_num_threads(1)  # as in a collect worker
    scaling(args.tasks, args.steps)
    overhead_per_run(args.runs, args.reps)


if __name__ == "__main__":
    main()
