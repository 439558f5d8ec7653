"""Pictures of in-context exploration (issue 11, point 5): where one rollout row goes, episode by
episode, for families whose observations are grid cells (``TaskFamily.cell_of``).

``ad-eval`` keeps the trace of row 0 (the first task, the first evaluation seed) during its main
rollout and writes, for episodes 1, 5, 20 and the last, the visits per cell: ``exploration.npz``
(the counts) and ``exploration.png`` (one heat map per episode, the task's goal, key and door
marked). A visit is the cell the agent acts from, so an episode of n steps counts n visits.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from ad.utils import atomic_write_bytes
from envs.base import TaskFamily
from envs.tasks import Task

PANEL_EPISODES = (1, 5, 20)  # and the last


def draws_exploration(family: TaskFamily) -> bool:
    """Whether the family's observations name grid cells (``grid_size`` and ``cell_of``)."""
    return family.grid_size is not None


def panel_episodes(num_episodes: int, chosen: tuple[int, ...] = PANEL_EPISODES) -> list[int]:
    """Episodes ``chosen`` (default 1, 5, 20) and the last, those of them that a rollout of
    ``num_episodes`` has."""
    return sorted({e for e in (*chosen, num_episodes) if e <= num_episodes})


def episode_spans(dones: np.ndarray, episodes: list[int]) -> list[tuple[int, int]]:
    """[start, end) step indices of each of ``episodes`` (1-based, complete) in one row's trace.

    Args:
        dones: (N,) bool, whether each step ended an episode.
        episodes: 1-based episode numbers, each a complete episode of the trace.
    """
    ends = np.flatnonzero(dones) + 1  # exclusive end of each complete episode
    starts = np.concatenate([[0], ends[:-1]])
    return [(int(starts[e - 1]), int(ends[e - 1])) for e in episodes]


def episode_visits(
    family: TaskFamily, observations: np.ndarray, dones: np.ndarray, episodes: list[int]
) -> np.ndarray:
    """Visits per cell in each of ``episodes`` of one row's trace.

    Args:
        family: a family with ``grid_size`` and ``cell_of``.
        observations: (N, *obs_shape) the observations the row acted on, step by step.
        dones: (N,) bool, whether each step ended an episode.
        episodes: 1-based episode numbers, each a complete episode of the trace.

    Returns:
        (len(episodes), width, height) int64 counts; observations without a cell count nothing.
    """
    width, height = family.grid_size
    counts = np.zeros((len(episodes), width, height), dtype=np.int64)
    for panel, (start, end) in enumerate(episode_spans(dones, episodes)):
        for observation in observations[start:end]:
            cell = family.cell_of(observation)
            if cell is not None:
                counts[panel, cell[0], cell[1]] += 1
    return counts


def write_exploration(
    out_dir: Path, family: TaskFamily, task: Task, trace: dict, num_episodes: int, title: str
) -> Path:
    """exploration.npz and exploration.png of the traced row (row 0 of ``trace``).

    Args:
        out_dir: the evaluation folder.
        family: the task family (with ``grid_size`` and ``cell_of``).
        task: the task of the traced row.
        trace: the rollout's ``transitions`` of one traced row ((1, N, ...) arrays).
        num_episodes: episodes of the evaluation; the row completed at least these.
        title: the figure's title.

    Returns:
        The path of exploration.png.
    """
    from ad.evaluation.plots import plot_exploration

    episodes = panel_episodes(num_episodes)
    counts = episode_visits(family, trace["observations"][0], trace["dones"][0], episodes)
    landmarks = {name: [int(v) for v in cell] for name, cell in family.landmarks(task).items()}
    buffer = io.BytesIO()
    np.savez(
        buffer,
        counts=counts,
        episodes=np.array(episodes),
        landmarks=np.array(json.dumps(landmarks)),
        task=np.array(json.dumps(task)),
    )
    atomic_write_bytes(Path(out_dir) / "exploration.npz", buffer.getvalue())
    return plot_exploration(counts, episodes, landmarks, Path(out_dir) / "exploration.png", title)
