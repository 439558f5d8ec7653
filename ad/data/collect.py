"""Collect learning histories: one source-algorithm run per (task, seed), resumable and sharded.

:func:`collect` reads top to bottom: plan the runs and keep this shard's slice
(:mod:`ad.data.runs`), find those already done in the dataset folder (:func:`ad.data.manifest.
resume`), run the rest (:func:`ad.data.pool.execute`), rebuild ``manifest.json`` from the valid
files in the folder (:func:`ad.data.manifest.write_manifest`, so shards written by other machines
merge without copying), and print one summary line. Each history is written under a temporary name
and renamed into place when complete, so a killed collect loses at most the runs in flight;
running it again resumes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ad.config import ExperimentConfig, config_to_dict, save_config
from ad.data import manifest, pool, runs
from ad.errors import UserError
from ad.utils import package_versions, write_versions

__all__ = ["collect"]


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
    workers = _usable_cores() if workers is None else workers
    if workers < 1:
        raise UserError(f"workers must be >= 1, got {workers}")
    family = cfg.env.make_family()
    split = cfg.env.task_split(family)
    dataset_dir = cfg.collect_dir

    # 1. Plan this shard's runs; a bad algorithm fails here, before the folder is made.
    jobs = runs.plan_runs(cfg, split)[index::count]
    if jobs:
        runs.check_source(cfg, family, jobs[0]["task"])

    # 2. Find what is done. Every check passes before anything in the folder changes.
    reference = manifest.config_fingerprint(cfg, family, split)
    done = manifest.resume(dataset_dir, reference, [job["file"] for job in jobs])
    save_config(cfg, dataset_dir / "config.yaml")
    write_versions(dataset_dir)

    # 3. Run the rest.
    common = {
        "config": config_to_dict(cfg),
        "dataset_dir": str(dataset_dir),
        "versions": package_versions(),
    }
    todo = [{**job, **common} for job in jobs if job["file"] not in done]
    start = time.perf_counter()
    if cfg.collect.backend == "ray":  # one Ray task per run; see ad.data.ray_backend
        from ad.data import ray_backend

        results = ray_backend.execute(todo, cfg.ray.address, cfg.collect.ray_storage, progress)
    else:
        results = pool.execute(todo, min(workers, max(len(todo), 1)), progress)
    seconds = time.perf_counter() - start

    # 4. Record them in the manifest, failed runs or not, then report.
    manifest.write_manifest(dataset_dir, cfg.name, reference)
    summary = _summarise(results, len(jobs), len(todo), seconds, dataset_dir, shard)
    print(_summary_line(summary), flush=True)
    failures = summary["failures"]
    if failures:
        first = failures[0]
        raise UserError(
            f"{len(failures)} of {len(todo)} runs failed (first: {first['file']}: "
            f"{first['error'][:300]}); fix the cause and re-run the same command to retry them"
        )
    return summary


def _usable_cores() -> int:
    """The cores this process may use (a Slurm job's share, not the node's)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return cores or os.cpu_count() or 1


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


def _summary_line(summary: dict) -> str:
    return (
        f"collect: {summary['runs_done']} runs done, {summary['runs_skipped']} skipped, "
        f"{summary['runs_failed']} failed; {summary['env_steps']} env steps at "
        f"{summary['env_steps_per_second']:.0f}/s; {summary['bytes_written']} bytes written "
        f"to {summary['dataset_dir']}"
    )
