"""Collect learning histories: one source-algorithm run per (task, seed), in a process pool.

``collect(cfg)`` plans the runs of the configured splits, keeps this shard's slice, skips runs whose
files already exist and validate, runs the rest (one single-threaded run per worker process), and
rebuilds ``manifest.json`` from the valid files in the folder, so shards written by other machines
merge without copying. Each file is written under a temporary name and renamed into place when
complete, so a killed collect loses at most the runs in flight; running it again resumes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from ad.config import ExperimentConfig, config_from_dict, config_to_dict, save_config
from ad.errors import UserError
from ad.histories import (
    MANIFEST_NAME,
    MANIFEST_SCHEMA_VERSION,
    SCHEMA_VERSION,
    HistoryError,
    HistoryVersionError,
    file_sha256,
    load_manifest,
    read_episodes,
    read_metadata,
    stale_temp_files,
    validate_history,
    write_history,
)
from ad.utils import atomic_write_json, package_versions, write_versions

log = logging.getLogger(__name__)

# Metadata that must agree between every history of one dataset folder.
FINGERPRINT_KEYS = (
    "env_id",
    "family",
    "family_kwargs",
    "split_info",
    "algorithm",
    "algorithm_kwargs",
    "n_envs",
    "total_steps",
)
SUMMARY_EPISODES = 10  # first/last-return columns: mean over streams of the first/last 10 episodes


def run_file_name(split: str, task_index: int, seed: int) -> str:
    return f"{split}-task{task_index:04d}-seed{seed}.h5"


def _plain(value: Any) -> Any:
    """JSON round trip, so tuples and lists (and int/float keys) compare equal."""
    return json.loads(json.dumps(value, sort_keys=True))


def _family_and_split(cfg: ExperimentConfig) -> tuple[Any, Any]:
    from envs import make_family

    family = make_family(cfg.env.family, **cfg.env.family_kwargs)
    split = family.split(cfg.env.split_seed, cfg.env.num_train_tasks, cfg.env.num_heldout_tasks)
    return family, split


def _fingerprint(cfg: ExperimentConfig, family: Any, split: Any) -> dict:
    steps_per_stream = cfg.collect.total_steps // cfg.collect.n_envs
    return _plain(
        {
            "env_id": family.env_id,
            "family": split.family,
            "family_kwargs": split.family_kwargs,
            "split_info": split.to_json(),
            "algorithm": cfg.collect.algorithm,
            "algorithm_kwargs": cfg.collect.algorithm_kwargs,
            "n_envs": cfg.collect.n_envs,
            "total_steps": steps_per_stream * cfg.collect.n_envs,
        }
    )


def _mismatch(reference: dict, metadata: dict, path: Path, dataset_dir: Path) -> UserError | None:
    """A UserError if ``metadata`` was collected with another config than ``reference``."""
    for key in FINGERPRINT_KEYS:
        old, new = _plain(metadata.get(key)), reference.get(key)
        if old != new:
            text = f"{key}: {json.dumps(old)[:60]} in {path.name} vs {json.dumps(new)[:60]}"
            return UserError(
                f"{dataset_dir} already holds histories collected with a different config "
                f"({text}); use another collect.output_dir or delete that folder"
            )
    split, index = metadata.get("split"), metadata.get("task_index")
    tasks = reference["split_info"].get(split) if split in ("train", "heldout") else None
    if tasks is None or not isinstance(index, int) or not 0 <= index < len(tasks):
        return UserError(f"{path} names no task of the split; delete it and re-run ad-collect")
    if _plain(metadata.get("task")) != tasks[index] or path.name != run_file_name(
        split, index, metadata.get("seed", -1)
    ):
        return UserError(f"{path} holds another run than its name says; delete it and re-run")
    return None


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
        job: a planned run plus ``config`` (plain dict), ``dataset_dir`` and ``versions``.

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


def _learn_and_write(job: dict) -> tuple[int, int]:
    from stable_baselines3.common.vec_env import DummyVecEnv

    from ad.sources import RecordingVecEnv, make_source
    from ad.spaces import space_to_json

    cfg = config_from_dict(job["config"])
    family, split = _family_and_split(cfg)
    task, seed, n_envs = job["task"], job["seed"], cfg.collect.n_envs
    num_steps = cfg.collect.total_steps // n_envs
    venv = RecordingVecEnv(DummyVecEnv([lambda: family.make_env(task)] * n_envs), num_steps)
    try:
        venv.seed(seed)  # stream i resets with seed + i on its first reset
        source = make_source(cfg.collect.algorithm, venv, seed, cfg.collect.algorithm_kwargs)
        source.learn(n_envs * num_steps)
        if not venv.full:
            raise RuntimeError(
                f"{cfg.collect.algorithm} stopped after {venv.t} of {num_steps} steps per stream"
            )
        metadata = {
            **_fingerprint(cfg, family, split),
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
    finally:
        venv.close()
    return n_envs * num_steps, path.stat().st_size


def _init_worker() -> None:
    """One thread per worker: the pool supplies the parallelism."""
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


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
    context.set_forkserver_preload(["ad.sources", "ad.collect", "envs", "torch._dynamo"])
    return context


def _execute(jobs: list[dict], workers: int, progress: bool) -> list[dict]:
    from tqdm.auto import tqdm

    results = []
    with tqdm(total=len(jobs), desc="collect", unit="run", disable=not progress) as bar:
        if workers == 1 or len(jobs) <= 1:
            with _single_thread():
                for job in jobs:
                    results.append(run_one(job))
                    bar.update()
            return results
        context = _pool_context()
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
            futures = {pool.submit(run_one, job): job for job in jobs}
            try:
                for future in as_completed(futures):
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
                    bar.update()
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

    from ad.sources import RecordingVecEnv, check_action_space, make_source, resolve_source

    resolve_source(cfg.collect.algorithm)
    check_action_space(family.make_env(task).action_space, cfg.collect.algorithm)
    venv = RecordingVecEnv(DummyVecEnv([lambda: family.make_env(task)] * cfg.collect.n_envs), 1)
    try:
        with _single_thread():
            make_source(cfg.collect.algorithm, venv, 0, cfg.collect.algorithm_kwargs)
    finally:
        venv.close()


def _existing_runs(dataset_dir: Path, reference: dict, mine: set[str]) -> set[str]:
    """Names of valid histories already in the folder; refuses files of another config."""
    valid = set()
    for path in sorted(dataset_dir.glob("*.h5")):
        try:
            metadata = read_metadata(path)
        except HistoryVersionError as e:
            raise UserError(f"{e}; or use another collect.output_dir") from None
        except HistoryError as e:
            if path.name in mine:  # only a run of this shard is ours to redo
                log.warning("%s; re-collecting it", e)
                path.unlink()
            continue
        error = _mismatch(reference, metadata, path, dataset_dir)
        if error is not None:
            raise error
        valid.add(path.name)
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
    """Collect this shard's learning histories into ``cfg.dataset_dir`` (resumable).

    Args:
        cfg: the experiment config (env and collect sections).
        workers: worker processes (None: the usable cores); 1 runs in this process.
        shard: ``(i, N)``: run only planned runs ``i, i + N, i + 2N, ...`` of the fixed plan.
        progress: show a progress bar and print the summary.

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
    family, split = _family_and_split(cfg)
    jobs = plan_runs(cfg, split)[index::count]
    dataset_dir = cfg.dataset_dir
    _prepare_dir(dataset_dir)
    reference = _fingerprint(cfg, family, split)
    if jobs:
        _check_source(cfg, family, jobs[0]["task"])
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
    _write_manifest(dataset_dir, header=_manifest_header(cfg.name, reference))

    summary = _summarise(results, len(jobs), len(todo), seconds, dataset_dir, shard)
    if progress:
        print(
            f"collect: {summary['runs_done']} runs done, {summary['runs_skipped']} skipped, "
            f"{summary['runs_failed']} failed; {summary['env_steps']} env steps at "
            f"{summary['env_steps_per_second']:.0f}/s; {summary['bytes_written']} bytes written "
            f"to {dataset_dir}"
        )
    failures = summary["failures"]
    if failures:
        first = failures[0]
        raise UserError(
            f"{len(failures)} of {len(todo)} runs failed (first: {first['file']}: "
            f"{first['error'][:300]}); fix the cause and re-run the same command to retry them"
        )
    return summary


# --------------------------------------------------------------------------- manifest


def _manifest_header(name: str | None, reference: dict) -> dict:
    return {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "history_schema_version": SCHEMA_VERSION,
        "name": name,
        **{key: reference[key] for key in FINGERPRINT_KEYS if key != "split_info"},
        "split": reference["split_info"],
    }


def _first_last(episodes: dict[str, np.ndarray], num_streams: int) -> tuple[Any, Any]:
    """Mean over streams of the mean return of each stream's first / last 10 episodes."""
    firsts, lasts = [], []
    for stream in range(num_streams):
        returns = episodes["episode_returns"][episodes["episode_streams"] == stream]
        if len(returns):
            firsts.append(returns[:SUMMARY_EPISODES].mean())
            lasts.append(returns[-SUMMARY_EPISODES:].mean())
    if not firsts:
        return None, None  # no stream finished an episode
    return float(np.mean(firsts)), float(np.mean(lasts))


def _run_entry(path: Path, metadata: dict) -> dict:
    episodes = read_episodes(path)
    first, last = _first_last(episodes, metadata["n_envs"])
    return {
        "file": path.name,
        **{key: metadata[key] for key in ("split", "task_index", "task", "seed")},
        "sha256": file_sha256(path),
        "bytes": path.stat().st_size,
        "num_streams": metadata["n_envs"],
        "num_steps": metadata["num_steps"],
        "num_episodes": int(len(episodes["episode_returns"])),
        "first_return": first,
        "last_return": last,
        "optimal_return": metadata.get("optimal_return"),
        "random_return": metadata.get("random_return"),
    }


def _unchanged_entries(dataset_dir: Path) -> dict[str, dict]:
    """Entries of the current manifest whose files are unchanged since it was written, so that a
    rebuild need not hash and read every file of a large dataset again."""
    try:
        written = (dataset_dir / MANIFEST_NAME).stat().st_mtime_ns
        runs = load_manifest(dataset_dir)["runs"]
    except (OSError, UserError, KeyError, TypeError):
        return {}
    unchanged = {}
    for run in runs:
        with contextlib.suppress(OSError, KeyError, TypeError):
            stat = (dataset_dir / run["file"]).stat()
            if stat.st_size == run["bytes"] and stat.st_mtime_ns < written:
                unchanged[run["file"]] = run
    return unchanged


def _scan(
    dataset_dir: Path, strict: bool, reuse: dict[str, dict] | None = None
) -> tuple[list[dict], list[str], dict | None]:
    """Manifest entries of the histories in a folder, sorted; the invalid files; the header.

    Args:
        strict: read every byte (:func:`validate_history`) and raise on an invalid file, instead
            of the cheap structural check that lists invalid files.
        reuse: entries to take as they are for files of these names.

    Raises:
        UserError: histories of different configs or of another schema version.
    """
    runs, invalid, header = [], [], None
    for path in sorted(Path(dataset_dir).glob("*.h5")):
        try:
            metadata = validate_history(path) if strict else read_metadata(path)
        except HistoryError as e:
            if strict or isinstance(e, HistoryVersionError):
                raise
            log.warning("%s", e)
            invalid.append(path.name)
            continue
        if header is None:
            reference = {key: _plain(metadata.get(key)) for key in FINGERPRINT_KEYS}
            header = _manifest_header(metadata.get("config", {}).get("name"), reference)
        error = _mismatch(reference, metadata, path, Path(dataset_dir))
        if error is not None:
            raise error
        runs.append((reuse or {}).get(path.name) or _run_entry(path, metadata))
    order = {"train": 0, "heldout": 1}
    runs.sort(key=lambda r: (order[r["split"]], r["task_index"], r["seed"]))
    return runs, invalid, header


def _write_manifest(dataset_dir: Path, header: dict | None = None) -> dict:
    """Rebuild ``manifest.json`` from the valid histories present in ``dataset_dir``."""
    runs, invalid, found = _scan(dataset_dir, strict=False, reuse=_unchanged_entries(dataset_dir))
    header = header or found
    if header is None:
        raise UserError(f"no learning histories in {dataset_dir}; run ad-collect first")
    manifest = {**header, "runs": runs, "invalid_files": invalid}
    atomic_write_json(Path(dataset_dir) / MANIFEST_NAME, manifest)
    return manifest


def merge_manifest(dataset_dir: Path) -> dict:
    """Rebuild ``manifest.json`` from every valid history in the folder (e.g. after shards).

    Returns:
        The manifest. Invalid files are listed under ``invalid_files`` and left alone.

    Raises:
        UserError: no histories, or histories of different configs or schema versions.
    """
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise UserError(f"dataset folder {dataset_dir} not found; check the path")
    return _write_manifest(dataset_dir)


# --------------------------------------------------------------------------- inspect


def _number(value: Any) -> str:
    return f"{value:>8.2f}" if value is not None else f"{'-':>8}"


def inspect(dataset_dir: Path, plot: bool = False) -> str:
    """Validate every history of a dataset folder and tabulate its runs.

    Args:
        dataset_dir: the dataset folder.
        plot: also write ``source_curves.png`` (per-task learning curves) into the folder.

    Returns:
        A table: split, task, seed, streams, steps per stream, episodes, first/last return (mean
        over streams of the first/last 10 episodes), optimal return; then per-split means.

    Raises:
        UserError: no histories, a corrupt file, mixed configs, or a file that differs from the
            checksum in the manifest.
    """
    dataset_dir = Path(dataset_dir)
    runs, _, header = _scan(dataset_dir, strict=True) if dataset_dir.is_dir() else ([], [], None)
    if not runs:
        raise UserError(f"no learning histories (*.h5) in {dataset_dir}; run ad-collect first")
    try:
        listed = {run["file"]: run["sha256"] for run in load_manifest(dataset_dir)["runs"]}
    except (UserError, KeyError, TypeError):
        listed = {}
    for run in runs:
        if run["file"] in listed and listed[run["file"]] != run["sha256"]:
            raise UserError(
                f"{dataset_dir / run['file']} differs from the checksum in {MANIFEST_NAME}; re-run "
                "ad-collect with the same config (or merge_manifest) to rebuild the manifest"
            )
    lines = [
        f"{dataset_dir}: {len(runs)} valid histories, family {header['family']}, algorithm "
        f"{header['algorithm']}, {header['n_envs']} streams x "
        f"{header['total_steps'] // header['n_envs']} steps per run",
        f"{'split':<8}{'idx':>5}  {'task':<22}{'seed':>5}{'streams':>8}{'steps':>8}"
        f"{'episodes':>9}{'first':>8}{'last':>8}{'optimal':>8}",
    ]
    for run in runs:
        task = json.dumps(run["task"], separators=(",", ":"))
        task = task if len(task) <= 22 else task[:19] + "..."
        lines.append(
            f"{run['split']:<8}{run['task_index']:>5}  {task:<22}{run['seed']:>5}"
            f"{run['num_streams']:>8}{run['num_steps']:>8}{run['num_episodes']:>9}"
            + "".join(_number(run[k]) for k in ("first_return", "last_return", "optimal_return"))
        )
    for split in ("train", "heldout"):
        part = [r for r in runs if r["split"] == split]
        if part:
            mean = {
                key: np.nanmean([np.nan if r[key] is None else r[key] for r in part])
                for key in ("first_return", "last_return", "optimal_return", "random_return")
            }
            lines.append(
                f"{split}: {len(part)} runs, first-episodes return {mean['first_return']:.2f} -> "
                f"last-episodes {mean['last_return']:.2f} (optimal {mean['optimal_return']:.2f}, "
                f"random {mean['random_return']:.2f})"
            )
    missing = [r["file"] for r in runs if r["file"] not in listed]
    if missing:
        lines.append(
            f"note: {len(missing)} files are not in {MANIFEST_NAME}; re-run ad-collect or "
            "merge_manifest to list them"
        )
    if plot:
        lines.append(f"wrote {plot_source_curves(dataset_dir)}")
    return "\n".join(lines)


def _run_curve(episodes: dict[str, np.ndarray], num_streams: int) -> np.ndarray:
    """Episode returns of one run, mean over streams (as long as its shortest stream)."""
    per_stream = [
        episodes["episode_returns"][episodes["episode_streams"] == s] for s in range(num_streams)
    ]
    length = min(len(r) for r in per_stream)
    return np.mean([r[:length] for r in per_stream], axis=0)


def plot_source_curves(dataset_dir: Path, out_path: Path | None = None) -> Path:
    """Per-task learning curves of the source algorithm (mean over streams and seeds).

    Args:
        dataset_dir: the dataset folder.
        out_path: the PNG to write (default: ``<dataset_dir>/source_curves.png``).

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dataset_dir = Path(dataset_dir)
    out_path = Path(out_path) if out_path is not None else dataset_dir / "source_curves.png"
    curves: dict[tuple[str, int], list[np.ndarray]] = {}
    optimal: dict[str, list[float]] = {}
    for path in sorted(dataset_dir.glob("*.h5")):
        metadata = read_metadata(path)
        run = _run_curve(read_episodes(path), metadata["n_envs"])
        curves.setdefault((metadata["split"], metadata["task_index"]), []).append(run)
        optimal.setdefault(metadata["split"], []).append(metadata.get("optimal_return", np.nan))
    if not curves:
        raise UserError(f"no learning histories (*.h5) in {dataset_dir}; run ad-collect first")
    splits = [s for s in ("train", "heldout") if s in optimal]
    figure = Figure(figsize=(6 * len(splits), 4), constrained_layout=True)
    FigureCanvasAgg(figure)
    for i, split in enumerate(splits):
        ax = figure.add_subplot(1, len(splits), i + 1)
        tasks = []
        for (task_split, _), runs in sorted(curves.items()):
            if task_split != split:
                continue
            length = min(len(r) for r in runs)
            tasks.append(np.mean([r[:length] for r in runs], axis=0))
            ax.plot(np.arange(1, length + 1), tasks[-1], color="tab:blue", alpha=0.25, lw=0.8)
        length = min(len(t) for t in tasks)
        mean = np.mean([t[:length] for t in tasks], axis=0)
        ax.plot(np.arange(1, length + 1), mean, color="tab:blue", lw=2, label="mean over tasks")
        ax.axhline(np.nanmean(optimal[split]), color="k", ls="--", lw=1, label="optimal (mean)")
        ax.set(title=f"{split} tasks ({len(tasks)})", xlabel="episode", ylabel="return")
        ax.legend(loc="lower right")
    figure.savefig(out_path, dpi=100)
    return out_path
