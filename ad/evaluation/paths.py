"""Pictures of in-context exploration for continuous families (issue 13, point 5): the paths of
one rollout row in the plane, for families whose observations hold a position
(``TaskFamily.position_of``), such as the point robot.

``ad-eval`` keeps the trace of row 0 (the first task, the first evaluation seed) during its main
rollout and writes, for episodes 1, 5 and the last: ``paths.npz`` (the positions) and
``paths.png`` (one line per episode on one plot, the task's goal and goal radius marked). An
episode of n steps is n + 1 points: the start, then the position after each step.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from ad.evaluation.exploration import episode_spans, panel_episodes
from ad.utils import atomic_write_bytes
from envs.base import TaskFamily
from envs.tasks import Task

PATH_EPISODES = (1, 5)  # and the last


def draws_paths(family: TaskFamily) -> bool:
    """Whether the family's observations hold a position (its ``position_of`` gives one)."""
    return type(family).position_of is not TaskFamily.position_of


def episode_paths(
    family: TaskFamily, trace: dict, episodes: list[int], row: int = 0
) -> list[np.ndarray]:
    """The positions of each of ``episodes`` of one traced row.

    Args:
        family: a family with ``position_of``.
        trace: a rollout's ``transitions`` ((rows, N, ...) arrays with ``next_observations``).
        episodes: 1-based episode numbers, each a complete episode of the trace.
        row: the traced row.

    Returns:
        Per episode, (n + 1, 2) float64 for n steps: the start and the position after each
        step; observations without a position are left out.
    """
    observations, after = trace["observations"][row], trace["next_observations"][row]
    paths = []
    for start, end in episode_spans(trace["dones"][row], episodes):
        # what the row acted on (the start, then each step's result), and the last step's result
        seen = [*observations[start:end], after[end - 1]]
        points = [p for p in (family.position_of(o) for o in seen) if p is not None]
        paths.append(np.asarray(points, dtype=np.float64).reshape(-1, 2))
    return paths


def write_paths(
    out_dir: Path, family: TaskFamily, task: Task, trace: dict, num_episodes: int, title: str
) -> Path:
    """paths.npz and paths.png of the traced row (row 0 of ``trace``).

    paths.npz holds ``positions`` (all episodes' points, concatenated), ``num_points`` (per
    episode), ``episodes``, ``landmarks`` and ``task`` (JSON).

    Args:
        out_dir: the evaluation folder.
        family: the task family (with ``position_of``).
        task: the task of the traced row.
        trace: the rollout's ``transitions`` of one traced row ((1, N, ...) arrays).
        num_episodes: episodes of the evaluation; the row completed at least these.
        title: the figure's title.

    Returns:
        The path of paths.png.
    """
    from ad.evaluation.plots import plot_paths

    episodes = panel_episodes(num_episodes, PATH_EPISODES)
    paths = episode_paths(family, trace, episodes)
    landmarks = {
        name: float(v) if np.isscalar(v) else [float(c) for c in v]
        for name, v in family.landmarks(task).items()
    }
    buffer = io.BytesIO()
    np.savez(
        buffer,
        positions=np.concatenate(paths),
        num_points=np.array([len(p) for p in paths]),
        episodes=np.array(episodes),
        landmarks=np.array(json.dumps(landmarks)),
        task=np.array(json.dumps(task)),
    )
    atomic_write_bytes(Path(out_dir) / "paths.npz", buffer.getvalue())
    return plot_paths(paths, episodes, landmarks, Path(out_dir) / "paths.png", title)
