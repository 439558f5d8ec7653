"""What evaluation measures returns against: the source algorithm's curve and reference returns.

The source algorithm learning the evaluated tasks from scratch comes from the run's collected
histories, found from any working directory. Each task's optimal and random returns come from
its family; a family without an optimal return is normalised by the source's best return.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ad.errors import UserError
from ad.evaluation.metrics import curve_stats, normalise
from ad.evaluation.summary import SourceCurve
from envs.base import TaskFamily
from envs.tasks import Task, task_key


def source_dataset_dir(run: Any) -> Path:
    """The run's history dataset, found from any working directory.

    Training stores the dataset's path relative to the run folder and absolute in the checkpoint
    (the family's ``dataset_dir``), beside the config's path (relative to the directory the run
    was started from); the first of those holding a manifest wins, so a moved project tree (run
    and data together) and a moved run both work.
    """
    stored = run.record.dataset_dir
    candidates = [run.run_dir / stored["from_run"], Path(stored["absolute"])]
    candidates.append(run.config.dataset_dir)
    for path in candidates:
        if (path / "manifest.json").is_file():
            return path
    return candidates[0]


def source_streams(
    dataset_dir: Path, tasks: list[Task], label: str, warnings: list[str]
) -> list[tuple[str, np.ndarray]]:
    """Per-stream episode returns of the source algorithm learning the evaluated tasks.

    Uses the runs in ``dataset_dir``'s manifest whose split is ``label`` and whose task is among
    ``tasks``; every stream of every run is one sample.

    Args:
        warnings: a line is appended when there are no such histories (the report shows it).

    Returns:
        (task key, history file, episode returns (E_s,)) per stream; empty without histories.
    """
    from ad.data.histories import stream_returns
    from ad.data.history_reader import HistoryReader
    from ad.data.manifest import load_manifest
    from ad.data.xland import is_xland_file

    if is_xland_file(dataset_dir):
        return _xland_streams(Path(dataset_dir), tasks)
    try:
        manifest = load_manifest(dataset_dir)
    except UserError as e:
        warnings.append(f"no source-algorithm curve: {e}")
        return []
    wanted = {task_key(t) for t in tasks}
    runs = [r for r in manifest["runs"] if r["split"] == label and task_key(r["task"]) in wanted]
    streams = []
    for run in runs:
        with HistoryReader(Path(dataset_dir) / run["file"]) as reader:
            episodes = reader.episodes()  # per-episode summaries, without the step data
            num_streams = reader.num_streams
        for returns in stream_returns(episodes, num_streams):
            streams.append((task_key(run["task"]), run["file"], np.asarray(returns, float)))
    if min((len(r) for _, _, r in streams), default=0) == 0:
        warnings.append(
            f"no source-algorithm curve: no {label} histories of these tasks in {dataset_dir}; "
            f"collect them (collect.splits with {label!r}) to compare with the source algorithm"
        )
        return []
    return streams


def _xland_streams(path: Path, tasks: list[Task]) -> list[tuple[str, str, np.ndarray]]:
    """Every history of the tasks' groups of an XLand-100B file as a stream: the dataset's own
    PPO learning those rulesets."""
    from ad.data.xland import episode_returns

    return [
        (task_key(task), path.name, returns)
        for task in tasks
        for returns in episode_returns(path, task["group"])
    ]


def source_best_returns(streams: list[tuple[str, str, np.ndarray]]) -> dict[str, float]:
    """Per task key: the best episode of the source's mean curve over that task's streams."""
    best = {}
    for key in dict.fromkeys(k for k, _, _ in streams):
        curves = [r for k, _, r in streams if k == key]
        length = min(len(r) for r in curves)
        best[key] = float(np.stack([r[:length] for r in curves]).mean(0).max())
    return best


def task_references(
    family: TaskFamily,
    tasks: list[Task],
    streams: list[tuple[str, str, np.ndarray]],
    warnings: list[str],
) -> tuple[np.ndarray, np.ndarray, str]:
    """(optimal, random) reference returns of each task, each (T,), and where optimal came from.

    A family that does not know its optimal return (None) is normalised by the source
    algorithm's best return on the same task ("source_best"), with a line in ``warnings``;
    without a source curve either, normalised scores are NaN.
    """
    optimal = [family.optimal_return(t) for t in tasks]
    random = np.array([family.random_return(t) for t in tasks], dtype=float)
    if all(v is not None for v in optimal):
        return np.array(optimal, dtype=float), random, "family"
    best = source_best_returns(streams)
    optimal = [
        best.get(task_key(t), np.nan) if v is None else v
        for t, v in zip(tasks, optimal, strict=True)
    ]
    warnings.append(
        f"{family.name} has no optimal return; normalised scores use the best return of the "
        "source algorithm on the same tasks (its best episode, mean over streams)"
        + ("" if streams else ", which is missing, so they are n/a")
    )
    return np.array(optimal, dtype=float), random, "source_best"


def source_learner_streams(dataset_dir: Path) -> int | None:
    """How many streams of each source run fed one learner (``streams_per_learner`` of the
    dataset's algorithm and n_envs); None without a readable manifest."""
    from ad.data.manifest import load_manifest
    from ad.data.sources import streams_per_learner

    try:
        manifest = load_manifest(dataset_dir)
    except UserError:
        return None
    algorithm, n_envs = manifest.get("algorithm"), manifest.get("n_envs")
    if not isinstance(algorithm, str) or not isinstance(n_envs, int):
        return None
    return streams_per_learner(algorithm, n_envs)


def source_summary(
    streams: list[tuple[str, str, np.ndarray]],
    tasks: list[Task],
    references: tuple,
    seed: int,
    streams_per_learner: int | None = None,
) -> SourceCurve | None:
    """The source algorithm learning the evaluated tasks from scratch (see ``source_streams``).

    Every stream is one sample, truncated to the shortest stream. Episodes are counted per
    stream (the source also learned from its other streams, so this flatters it);
    ``SourceCurve.learner_episode_to_80`` counts them by the learner's whole experience.

    Args:
        references: (optimal, random) of each task of ``tasks``, as ``task_references`` gives.
        streams_per_learner: streams that fed one learner (:func:`source_learner_streams`).

    Returns:
        ``curve_stats`` of the streams plus run/task/stream counts; None without streams.
    """
    if not streams:
        return None
    index = {task_key(t): i for i, t in enumerate(tasks)}
    optimal, random = (np.asarray(r, dtype=float) for r in references)
    length = min(len(r) for _, _, r in streams)
    samples = np.stack([r[:length] for _, _, r in streams])  # (N, E)
    rows = np.array([index[k] for k, _, _ in streams])
    normalised = normalise(samples, optimal[rows], random[rows])
    groups = np.array([k for k, _, _ in streams])
    return SourceCurve(
        **curve_stats(samples, normalised, seed, groups).curve_fields(),
        num_runs=len({f for _, f, _ in streams}),
        num_streams=len(streams),
        num_episodes=length,
        num_tasks=len(set(groups.tolist())),
        streams_per_learner=streams_per_learner,
    )
