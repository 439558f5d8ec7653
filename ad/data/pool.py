"""Executing collection jobs on one machine: here, or one single-threaded run per worker process.

:func:`execute` is the seam between collect and the machines its runs use: it takes the jobs of
:mod:`ad.data.runs` and returns the results of :func:`ad.data.runs.run_one`, in any order. Another
executor (e.g. one that fans the jobs out as Ray tasks) offers the same signature.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

import numpy as np

from ad.data.runs import run_one, run_steps, set_step_reporter, single_thread
from ad.utils import progress_bar


def execute(jobs: list[dict], workers: int, progress: bool) -> list[dict]:
    """Run the jobs here (workers=1) or in a process pool, with a bar over runs and one over env
    steps (the recorders report every ~1000 steps, so the step bar moves inside long runs).

    Args:
        jobs: the jobs that :func:`ad.data.runs.run_one` takes.
        workers: worker processes; 1 runs the jobs in this process, one after another.
        progress: show the progress bars.

    Returns:
        One result of :func:`ad.data.runs.run_one` per job, in the order they finished; a worker
        that died (killed, out of memory) gives a failed result for its job.
    """
    total_steps = sum(run_steps(job["config"]) for job in jobs)
    jobs = [{**job, "slot": i} for i, job in enumerate(jobs)]  # where each reports its steps
    bars = {"disable": not progress, "dynamic_ncols": True}
    with (
        progress_bar(total=len(jobs), desc="collect", unit="run", position=0, **bars) as runs_bar,
        progress_bar(
            total=total_steps, desc="env steps", unit="step", unit_scale=True, position=1, **bars
        ) as steps_bar,
    ):
        if workers == 1 or len(jobs) <= 1:
            return _execute_here(jobs, runs_bar, steps_bar)
        return _execute_in_pool(jobs, workers, runs_bar, steps_bar)


def _execute_here(jobs: list[dict], runs_bar: Any, steps_bar: Any) -> list[dict]:
    results = []
    set_step_reporter(lambda slot, num_steps: steps_bar.update(num_steps))
    try:
        with single_thread():
            for job in jobs:
                results.append(run_one(job))
                runs_bar.update()
    finally:
        set_step_reporter(None)
    return results


def _execute_in_pool(jobs: list[dict], workers: int, runs_bar: Any, steps_bar: Any) -> list[dict]:
    context = _pool_context()
    step_counts = context.RawArray("q", len(jobs))  # env steps recorded, per job
    results, shown = [], 0
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(step_counts,)
    ) as pool:
        futures = {pool.submit(run_one, job): job for job in jobs}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                steps = int(np.frombuffer(step_counts, np.int64).sum())
                steps_bar.update(steps - shown)
                shown = steps
                for future in done:
                    try:
                        results.append(future.result())
                    except Exception as e:  # a worker died (killed, out of memory)
                        results.append(
                            {
                                "file": futures[future]["file"],
                                "ok": False,
                                "error": f"worker process failed: {type(e).__name__}",
                            }
                        )
                    runs_bar.update()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return results


def _pool_context() -> multiprocessing.context.BaseContext:
    """forkserver with torch and SB3 preloaded: workers start in milliseconds instead of
    re-importing torch (seconds), and fork only from the single-threaded server, never from a
    process whose torch/OpenMP threads are running. spawn where forkserver is unavailable."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # torch._dynamo: imported lazily by the first torch optimizer, 1-2 s in every fresh worker.
    context.set_forkserver_preload(["ad.data.sources", "ad.data.pool", "envs", "torch._dynamo"])
    return context


def _init_worker(step_counts: Any) -> None:
    """One thread per worker: the pool supplies the parallelism. A job's recorded steps are added
    to its slot of the shared ``step_counts``, which the parent sums into the bar of env steps."""
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    set_step_reporter(functools.partial(_add_steps, step_counts))


def _add_steps(step_counts: Any, slot: int, num_steps: int) -> None:
    # One writer per slot, so no lock: a worker killed mid-run can block no one.
    step_counts[slot] += num_steps
