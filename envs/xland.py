"""XLand-MiniGrid as the tasks of an XLand-100B file: the family that trains on its histories.

XLand-100B (Nikulin et al. 2024, arXiv 2406.08973) stores one HDF5 group per task ("0" .. "N-1",
each a ruleset of an XLand-MiniGrid benchmark). Here a task is a group of the file,
``{"group": g}``, so the train / validation / test split is a split over the file's rulesets;
``ad.data.xland`` reads the histories. The observation is the agent's 5 x 5 egocentric view
of (tile, colour) codes, unpacked from the file's packed bytes; six actions (forward, turn right,
turn left, pick up, put down, toggle). Rolling a model out needs XLand-MiniGrid's own envs
(``xminigrid``, JAX), which this project does not wrap yet: ``make_env`` says so. Not a
registered family (it has no env to collect or evaluate with): configs name it
``env.family: envs.xland:XLandMiniGrid``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.spaces import Box, Discrete

from envs.base import TaskFamily
from envs.tasks import Task, TaskError

# xminigrid >= 0.8's constants (the datasets' code pins xminigrid ~= 0.8): a cell is
# (tile, colour), packed into one byte as tile * NUM_COLORS + colour.
NUM_TILES = 15
NUM_COLORS = 14
NUM_ACTIONS = 6
VIEW_SIZE = 5


def observation_space() -> Box:
    """The unpacked view: (5, 5, 2) integer codes, tile then colour."""
    return Box(0, max(NUM_TILES, NUM_COLORS) - 1, (VIEW_SIZE, VIEW_SIZE, 2), np.uint8)


class XLandMiniGrid(TaskFamily):
    """The rulesets of one XLand-100B file: ``num_tasks`` groups on ``grid_size`` grids.

    Args:
        num_tasks: the file's number of groups (every one is a task).
        grid_size: 9 (``XLand-MiniGrid-R1-9x9``) or 13 (``-R1-13x13``); episodes last at most
            3 * grid_size**2 steps, as XLand-MiniGrid's default.
    """

    name = "XLandMiniGrid"
    default_num_test: ClassVar[int] = 64
    default_num_validation: ClassVar[int] = 32

    def __init__(self, num_tasks: int = 1, grid_size: int = 9) -> None:
        if not isinstance(num_tasks, int) or num_tasks < 1:
            raise TaskError(f"XLandMiniGrid num_tasks={num_tasks!r}: give the file's group count")
        if grid_size not in (9, 13):
            raise TaskError(f"XLandMiniGrid grid_size={grid_size!r}: use 9 or 13")
        super().__init__(num_tasks=num_tasks, grid_size=grid_size)
        self.num_tasks, self.size = num_tasks, grid_size

    def all_tasks(self) -> list[Task]:
        return [{"group": g} for g in range(self.num_tasks)]

    def validate_task(self, task: Any) -> Task:
        group = task.get("group") if isinstance(task, dict) else None
        if not isinstance(group, int) or not 0 <= group < self.num_tasks:
            raise TaskError(
                f"XLandMiniGrid task {task!r}: expected {{'group': 0..{self.num_tasks - 1}}}"
            )
        return {"group": group}

    @property
    def episode_length(self) -> int:
        return 3 * self.size**2

    def make_env(self, task: Task) -> gym.Env:
        raise TaskError(
            "XLandMiniGrid trains from an XLand-100B file only: rolling out needs XLand-MiniGrid's "
            "envs (xminigrid), which ad does not wrap yet; evaluate with the dataset's own code"
        )

    def optimal_return(self, task: Task) -> float | None:
        return None

    def random_return(self, task: Task) -> float:
        raise TaskError("XLandMiniGrid has no env here to estimate a random return with")

    @property
    def spaces(self) -> tuple[Box, Discrete]:
        """(observation space, action space) of every task."""
        return observation_space(), Discrete(NUM_ACTIONS)
