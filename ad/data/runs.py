"""The runs of a collection: the plan, and one run (learn, record, write its history).

A run is planned as a *job*, a plain dict (split, task index, task, seed, file name; collect adds
the config as a dict, the dataset folder and the package versions), and :func:`run_one` turns a
job into a *result* dict without raising. Both are picklable, so any executor can run the jobs:
:func:`ad.data.pool.execute` here or in a process pool, or any other that calls ``run_one``.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ad.config import ExperimentConfig, config_from_dict
from ad.data.histories import write_history
from ad.data.manifest import config_fingerprint, run_file_name
from ad.errors import UserError
from envs.base import has_oracle
from envs.split import SPLITS

# Where the recorder of a job reports its steps, called as (job slot, env steps); set by the
# executor of the jobs in this process (set_step_reporter), else nowhere.
_report_steps: Callable[[int, int], None] | None = None


def plan_runs(cfg: ExperimentConfig, split: Any) -> list[dict]:
    """Every run of the config, in a fixed order: split (train, validation, test), task index,
    seed."""
    seeds = cfg.collect.seeds
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise UserError(f"collect.seeds must be integers >= 0, got {seeds}; fix the config")
    seeds = list(dict.fromkeys(seeds))  # a repeated seed would be the same run twice
    runs = []
    for split_name in SPLITS:
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


def check_source(cfg: ExperimentConfig, family: Any, task: dict) -> None:
    """Fail fast in this process on an unknown algorithm, an action space it cannot act in, bad
    kwargs.

    Raises:
        UserError: what the configured source algorithm cannot do, as one line.
    """
    from ad.data.recording import RecordingVecEnv
    from ad.data.sources import check_action_space, make_source, resolve_source

    resolve_source(cfg.collect.algorithm)
    check_action_space(family.make_env(task).action_space, cfg.collect.algorithm)
    streams = family.make_vec_env(task, cfg.collect.n_envs)
    venv = RecordingVecEnv(streams, 1)
    try:
        with single_thread():
            oracle = stream_oracle(family, task, streams)
            make_source(cfg.collect.algorithm, venv, 0, cfg.collect.algorithm_kwargs, oracle)
    finally:
        venv.close()


def stream_oracle(family: Any, task: dict, streams: Any) -> Callable[[], np.ndarray] | None:
    """The family's optimal action in every stream's current state, as one array (None: the
    family has no oracle)."""
    if not has_oracle(family):
        return None
    return lambda: np.stack([np.asarray(family.optimal_action(env, task)) for env in streams.envs])


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


def run_steps(config: dict) -> int:
    """Env steps of one run of a config (a plain dict): T steps of each of the S streams."""
    n_envs = config["collect"]["n_envs"]
    return config["collect"]["total_steps"] // n_envs * n_envs


def set_step_reporter(report: Callable[[int, int], None] | None) -> None:
    """Where the recorders of the runs in this process report their progress from now on.

    Args:
        report: called as ``(job slot, env steps since the last report)`` about every 1000
            steps; None: nowhere.
    """
    global _report_steps
    _report_steps = report


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run in this process with one torch thread, as a pool worker would (same numerics)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
        on_steps: progress callback of :class:`ad.data.recording.RecordingVecEnv`.

    Returns:
        The source algorithm after learning, and the full recorder (its ``arrays()``), closed.
    """
    from ad.data.recording import RecordingVecEnv
    from ad.data.sources import make_source

    n_envs = cfg.collect.n_envs
    num_steps = cfg.collect.total_steps // n_envs
    streams = family.make_vec_env(task, n_envs)
    oracle = stream_oracle(family, task, streams)
    venv = RecordingVecEnv(streams, num_steps, on_steps=on_steps, oracle=oracle)
    try:
        venv.seed(seed)  # stream i resets with seed + i on its first reset
        source = make_source(
            cfg.collect.algorithm, venv, seed, cfg.collect.algorithm_kwargs, oracle
        )
        source.learn(n_envs * num_steps)
        if not venv.full:
            raise RuntimeError(
                f"{cfg.collect.algorithm} stopped after {venv.t} of {num_steps} steps per stream"
            )
    finally:
        venv.close()
    return source, venv


def _learn_and_write(job: dict) -> tuple[int, int]:
    from ad.data.spaces import num_actions, space_to_json

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
        "num_actions": num_actions(venv.action_space),
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
