"""A task family of your own, outside the package: Gymnasium's FrozenLake with a hidden goal.

Plugged in from a config by ``module:Class``, with this folder on ``PYTHONPATH`` or this file in
the working directory (see docs/own-family.md, "Your own task family")::

    env:
      family: frozen_lake_family:FrozenLakeGoals
      family_kwargs: {size: 4, is_slippery: false}

The task parameter is FrozenLake's ``desc`` (the map): the lake has no holes and the goal ``G``
sits on a hidden cell, so an agent must find it by exploring and then walk there every episode.
The family implements only what a family must provide; ``optimal_return`` and ``random_return``
are left to the defaults (random: seeded rollouts; optimal: unknown, so evaluation normalises by
the source algorithm's best return on the same tasks).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from envs.base import TaskFamily, check_int, grid_cell
from envs.tasks import Task, TaskError


class FrozenLakeGoals(TaskFamily):
    """FrozenLake-v1 without holes; the task is the goal cell ``[row, col]``, never the start.

    Args:
        size: the lake is ``size`` x ``size``; the start is the top-left cell.
        is_slippery: FrozenLake's slippery ice (the move goes sideways with probability 2/3).
        episode_length: steps before an episode is truncated (default ``4 * size``).
    """

    default_num_test = 3
    default_num_validation = 2

    def __init__(
        self, size: int = 4, is_slippery: bool = False, episode_length: int | None = None
    ) -> None:
        size = check_int(self.name, "size", size, 2)
        episode_length = 4 * size if episode_length is None else episode_length
        episode_length = check_int(self.name, "episode_length", episode_length, 1)
        if not isinstance(is_slippery, bool):
            raise TaskError(f"{self.name} is_slippery must be true or false, got {is_slippery!r}")
        # Every keyword argument goes on to TaskFamily, which stores it with the data.
        super().__init__(size=size, is_slippery=is_slippery, episode_length=episode_length)
        self.size, self.is_slippery, self._episode_length = size, is_slippery, episode_length

    @property
    def episode_length(self) -> int:
        return self._episode_length

    def all_tasks(self) -> list[Task]:
        cells = [[row, col] for row in range(self.size) for col in range(self.size)]
        return [{"goal": cell} for cell in cells if cell != [0, 0]]

    def validate_task(self, task: Any) -> Task:
        if not isinstance(task, dict) or set(task) != {"goal"}:
            raise TaskError(f"{self.name} task must be {{'goal': [row, col]}}, got {task!r}")
        goal = grid_cell(self.name, "goal", task["goal"], self.size)
        if goal == [0, 0]:
            raise TaskError(f"{self.name} goal [0, 0] is the start cell; choose another cell")
        return {"goal": goal}

    def make_env(self, task: Task) -> gym.Env:
        row, col = self.validate_task(task)["goal"]
        desc = [["F"] * self.size for _ in range(self.size)]
        desc[0][0], desc[row][col] = "S", "G"
        return gym.make(
            "FrozenLake-v1",
            desc=["".join(line) for line in desc],
            is_slippery=self.is_slippery,
            max_episode_steps=self.episode_length,
        )
