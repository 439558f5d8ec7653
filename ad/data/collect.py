"""Collect learning histories: one source-algorithm run per (task, seed), in a process pool.

``collect(cfg)`` plans the runs of the configured splits, keeps this shard's slice, skips runs whose
files already exist and validate, runs the rest (one single-threaded run per worker process), and
rebuilds ``manifest.json`` from the valid files in the folder (:mod:`ad.data.manifest`), so shards
written by other machines merge without copying. Each file is written under a temporary name and
renamed into place when complete, so a killed collect loses at most the runs in flight; running it
again resumes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np

from ad.config import ExperimentConfig, config_from_dict, config_to_dict, save_config
from ad.data.histories import (
    HistoryError,
    HistoryVersionError,
    read_metadata,
    stale_temp_files,
    validate_history,
    write_history,
)

# inspect and merge_manifest live in ad.data.manifest; re-exported as the collect command's API.
from ad.data.manifest import (
    config_fingerprint,
    inspect,
    manifest_header,
    merge_manifest,
    mismatch,
    run_file_name,
    write_manifest,
)
from ad.errors import UserError
from ad.utils import package_versions, write_versions

__all__ = [
    "collect",
    "inspect",
    "merge_manifest",
    "plan_runs",
    "record_run",
    "run_one",
]

log = logging.getLogger(__name__)

# Where the recorder of a job reports its steps, called as (job slot, env steps): the step bar
# when collect runs here, the job's slot of the shared step counts in a pool worker (set by
# _init_worker), else nowhere.
_report_steps: Callable[[int, int], None] | None = None


def plan_runs(cfg: ExperimentConfig, split: Any) -> list[dict]:
    """Every run of the config, in a fixed order: split (train first), task index, seed."""
    seeds = cfg.collect.seeds
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise UserError(f"collect.seeds must be integers >= 0, got {seeds}; fix the config")
    seeds = list(dict.fromkeys(seeds))  # a repeated seed would be the same run twice
    runs = []
    for split_name in ("train", "heldout"):
        if split_name not in cfg.collect.splits:
            continue
        for index, task in enumerate(split.tasks(split_name)):
            for seed in seeds:
                runs.append(
                    {
                        "split": split_name,
                        "task_index": index,
                        "task": task,
                        "seed": seed,
                        "file": run_file_name(split_name, index, seed),
                    }
                )
    return runs


# --------------------------------------------------------------------------- one run


def run_one(job: dict) -> dict:
    """One source-algorithm run: learn, record, write the history. Never raises.

    Args:
        job: a planned run plus ``config`` (plain dict), ``dataset_dir``, ``versions`` and
            optionally ``slot`` (its index in the progress counts).

    Returns:
        ``{"file", "ok", "steps", "seconds", "bytes"}`` or, on failure, ``{"file", "ok": False,
        "error"}`` with a one-line error.
    """
    start = time.perf_counter()
    try:
        steps, size = _learn_and_write(job)
    except Exception as e:  # a failed run is reported and the others continue
        error = " ".join(f"{type(e).__name__}: {e}".split())
        return {"file": job["file"], "ok": False, "error": error}
    seconds = time.perf_counter() - start
    return {"file": job["file"], "ok": True, "steps": steps, "seconds": seconds, "bytes": size}


def record_run(
    cfg: ExperimentConfig,
    family: Any,
    task: dict,
    seed: int,
    on_steps: Callable[[int], None] | None = None,
) -> tuple[Any, Any]:
    """Let the configured source algorithm learn ``task`` from scratch while every step is recorded.

    Args:
        cfg: the experiment config (collect section).
        family: the task family.
        task: the task to learn.
        seed: the run's seed (stream i of the vector env resets first with seed + i).
        on_steps: progress callback of :class:`ad.data.sources.RecordingVecEnv`.

    Returns:
        The source algorithm after learning, and the full recorder (its ``arrays()``), closed.
    """
    from stable_baselines3.common.vec_env import DummyVecEnv

    from ad.data.sources import RecordingVecEnv, make_source

    n_envs = cfg.collect.n_envs
    num_steps = cfg.collect.total_steps // n_envs
    streams = DummyVecEnv([lambda: family.make_env(task)] * n_envs)
    venv = RecordingVecEnv(streams, num_steps, on_steps=on_steps)
    try:
        venv.seed(seed)  # stream i resets with seed + i on its first reset
        source = make_source(cfg.collect.algorithm, venv, seed, cfg.collect.algorithm_kwargs)
        source.learn(n_envs * num_steps)
        if not venv.full:
            raise RuntimeError(
                f"{cfg.collect.algorithm} stopped after {venv.t} of {num_steps} steps per stream"
            )
    finally:
        venv.close()
    return source, venv


def _learn_and_write(job: dict) -> tuple[int, int]:
    from ad.data.spaces import space_to_json

    cfg = config_from_dict(job["config"])
    family = cfg.env.make_family()
    split = cfg.env.task_split(family)
    task, seed = job["task"], job["seed"]
    on_steps = (
        None if _report_steps is None else functools.partial(_report_steps, job.get("slot", 0))
    )
    _, venv = record_run(cfg, family, task, seed, on_steps=on_steps)
    metadata = {
        **config_fingerprint(cfg, family, split),
        "task": task,
        "task_index": job["task_index"],
        "split": job["split"],
        "seed": seed,
        "observation_space": space_to_json(venv.observation_space),
        "action_space": space_to_json(venv.action_space),
        "num_actions": int(venv.action_space.n),
        "episode_length": family.episode_length,
        "optimal_return": family.optimal_return(task),
        "random_return": family.random_return(task),
        "package_versions": job["versions"],
        "config": job["config"],
    }
    path = Path(job["dataset_dir"]) / job["file"]
    write_history(
        path,
        metadata,
        **venv.arrays(),
        chunk_steps=cfg.collect.chunk_steps,
        compression=cfg.collect.compression,
    )
    return venv.num_envs * venv.num_steps, path.stat().st_size


def _init_worker(step_counts: Any) -> None:
    """One thread per worker: the pool supplies the parallelism. A job's recorded steps are added
    to its slot of the shared ``step_counts``, which the parent sums into the bar of env steps."""
    global _report_steps
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    _report_steps = functools.partial(_add_steps, step_counts)


def _add_steps(step_counts: Any, slot: int, num_steps: int) -> None:
    # One writer per slot, so no lock: a worker killed mid-run can block no one.
    step_counts[slot] += num_steps


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    """Run in this process with one torch thread, as a pool worker would (same numerics)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _pool_context() -> multiprocessing.context.BaseContext:
    """forkserver with torch and SB3 preloaded: workers start in milliseconds instead of
    re-importing torch (seconds), and fork only from the single-threaded server, never from a
    process whose torch/OpenMP threads are running. spawn where forkserver is unavailable."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # torch._dynamo: imported lazily by the first torch optimizer, 1-2 s in every fresh worker.
    context.set_forkserver_preload(["ad.data.sources", "ad.data.collect", "envs", "torch._dynamo"])
    return context


def _execute(jobs: list[dict], workers: int, progress: bool) -> list[dict]:
    """Run the jobs here (workers=1) or in a pool, with a bar over runs and one over env steps
    (the recorders report every ~1000 steps, so the step bar moves inside long runs)."""
    from tqdm.auto import tqdm

    total_steps = sum(_run_steps(job["config"]) for job in jobs)
    jobs = [{**job, "slot": i} for i, job in enumerate(jobs)]  # where each reports its steps
    bars = {"disable": not progress, "dynamic_ncols": True}
    with (
        tqdm(total=len(jobs), desc="collect", unit="run", position=0, **bars) as runs_bar,
        tqdm(
            total=total_steps, desc="env steps", unit="step", unit_scale=True, position=1, **bars
        ) as steps_bar,
    ):
        if workers == 1 or len(jobs) <= 1:
            return _execute_here(jobs, runs_bar, steps_bar)
        return _execute_in_pool(jobs, workers, runs_bar, steps_bar)


def _run_steps(config: dict) -> int:
    """Env steps of one run of a config (a plain dict): T steps of each of the S streams."""
    n_envs = config["collect"]["n_envs"]
    return config["collect"]["total_steps"] // n_envs * n_envs


def _execute_here(jobs: list[dict], runs_bar: Any, steps_bar: Any) -> list[dict]:
    global _report_steps
    results = []

    def report(slot: int, num_steps: int) -> None:
        steps_bar.update(num_steps)

    _report_steps = report
    try:
        with _single_thread():
            for job in jobs:
                results.append(run_one(job))
                runs_bar.update()
    finally:
        _report_steps = None
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


# --------------------------------------------------------------------------- collect


def _prepare_dir(dataset_dir: Path) -> None:
    try:
        dataset_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=dataset_dir):
            pass
    except OSError as e:
        raise UserError(
            f"cannot write to the dataset folder {dataset_dir} ({e.strerror or e}); choose a "
            "writable collect.output_dir"
        ) from None


def _check_source(cfg: ExperimentConfig, family: Any, task: dict) -> None:
    """Fail fast in this process on an unknown algorithm, non-Discrete actions, bad kwargs."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    from ad.data.sources import RecordingVecEnv, check_action_space, make_source, resolve_source

    resolve_source(cfg.collect.algorithm)
    check_action_space(family.make_env(task).action_space, cfg.collect.algorithm)
    venv = RecordingVecEnv(DummyVecEnv([lambda: family.make_env(task)] * cfg.collect.n_envs), 1)
    try:
        with _single_thread():
            make_source(cfg.collect.algorithm, venv, 0, cfg.collect.algorithm_kwargs)
    finally:
        venv.close()


def _existing_runs(dataset_dir: Path, reference: dict, mine: set[str]) -> set[str]:
    """Names of valid histories already in the folder; refuses files of another config.

    Files of this shard's plan are read whole through their checksums (:func:`validate_history`),
    so only a run whose data are intact counts as done; the others are deleted (to be collected
    again), but only after every file has passed the config check, so a refused call deletes
    nothing. Files of other shards get the structural check only: they are not ours to redo.
    """
    valid, unreadable = set(), []
    for path in sorted(dataset_dir.glob("*.h5")):
        try:
            metadata = validate_history(path) if path.name in mine else read_metadata(path)
        except HistoryVersionError as e:
            raise UserError(f"{e}; or use another collect.output_dir") from None
        except HistoryError as e:
            if path.name in mine:  # only a run of this shard is ours to redo
                unreadable.append((path, e))
            continue
        error = mismatch(reference, metadata, path, dataset_dir)
        if error is not None:
            raise error
        valid.add(path.name)
    for path, e in unreadable:
        log.warning("%s; re-collecting it", e)
        path.unlink()
    return valid


def _summarise(
    results: list[dict],
    num_planned: int,
    num_todo: int,
    seconds: float,
    dataset_dir: Path,
    shard: tuple[int, int],
) -> dict:
    ok = [r for r in results if r["ok"]]
    steps = sum(r["steps"] for r in ok)
    return {
        "dataset_dir": str(dataset_dir),
        "shard": list(shard),
        "runs_planned": num_planned,
        "runs_done": len(ok),
        "runs_skipped": num_planned - num_todo,
        "runs_failed": len(results) - len(ok),
        "failures": [{"file": r["file"], "error": r["error"]} for r in results if not r["ok"]],
        "env_steps": steps,
        "seconds": round(seconds, 3),
        "env_steps_per_second": round(steps / seconds, 1) if ok else 0.0,
        "bytes_written": sum(r["bytes"] for r in ok),
    }


def collect(
    cfg: ExperimentConfig,
    workers: int | None = None,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
) -> dict:
    """Collect this shard's learning histories into ``cfg.collect_dir`` (resumable).

    Always prints a one-line summary to stdout (runs done, skipped and failed, env steps per
    second, bytes written).

    Args:
        cfg: the experiment config (env and collect sections).
        workers: worker processes (None: the usable cores); 1 runs in this process.
        shard: ``(i, N)``: run only planned runs ``i, i + N, i + 2N, ...`` of the fixed plan.
        progress: show a progress bar.

    Returns:
        Summary: ``dataset_dir, shard, runs_planned, runs_done, runs_skipped, runs_failed,
        failures, env_steps, seconds, env_steps_per_second, bytes_written``.

    Raises:
        UserError: bad config or folder, files of another config, or failed runs (after the
            manifest is written).
    """
    index, count = shard
    if not (isinstance(count, int) and isinstance(index, int) and 0 <= index < count):
        raise UserError(f"bad shard {index}/{count}; use i/N with 0 <= i < N")
    if workers is None:  # the cores this process may use (a Slurm job's share, not the node's)
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise UserError(f"workers must be >= 1, got {workers}")
    family = cfg.env.make_family()
    split = cfg.env.task_split(family)
    jobs = plan_runs(cfg, split)[index::count]
    if jobs:  # before the folder is made: a bad algorithm leaves no trace on disk
        _check_source(cfg, family, jobs[0]["task"])
    dataset_dir = cfg.collect_dir
    _prepare_dir(dataset_dir)
    reference = config_fingerprint(cfg, family, split)
    # Every check passes before anything in the folder changes: a refused call loses nothing.
    done = _existing_runs(dataset_dir, reference, {job["file"] for job in jobs})
    for job in jobs:
        for tmp in stale_temp_files(dataset_dir / job["file"]):
            tmp.unlink(missing_ok=True)  # a write interrupted by a crash
    save_config(cfg, dataset_dir / "config.yaml")
    write_versions(dataset_dir)

    common = {
        "config": config_to_dict(cfg),
        "dataset_dir": str(dataset_dir),
        "versions": package_versions(),
    }
    todo = [{**job, **common} for job in jobs if job["file"] not in done]
    start = time.perf_counter()
    results = _execute(todo, min(workers, max(len(todo), 1)), progress)
    seconds = time.perf_counter() - start
    write_manifest(dataset_dir, header=manifest_header(cfg.name, reference))

    summary = _summarise(results, len(jobs), len(todo), seconds, dataset_dir, shard)
    print(
        f"collect: {summary['runs_done']} runs done, {summary['runs_skipped']} skipped, "
        f"{summary['runs_failed']} failed; {summary['env_steps']} env steps at "
        f"{summary['env_steps_per_second']:.0f}/s; {summary['bytes_written']} bytes written "
        f"to {dataset_dir}",
        flush=True,
    )
    failures = summary["failures"]
    if failures:
        first = failures[0]
        raise UserError(
            f"{len(failures)} of {len(todo)} runs failed (first: {first['file']}: "
            f"{first['error'][:300]}); fix the cause and re-run the same command to retry them"
        )
    return summary
