"""Dark Room and Dark Room Hard (Laskin et al. 2022, section 4.1)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.base import (
    Task,
    TaskFamily,
    check_bool,
    check_int,
    check_task_fields,
    grid_cell,
    register_family,
)

# Action ids: no-op, up, down, left, right. "up" decreases y.
MOVES = np.array([[0, 0], [0, -1], [0, 1], [-1, 0], [1, 0]], dtype=np.int64)


def move(position: np.ndarray, action: Any, size: int) -> np.ndarray:
    """The cell reached by ``action`` from ``position``; moves into a wall stay in place."""
    action = int(action)
    if not 0 <= action < len(MOVES):
        raise ValueError(f"action {action} outside Discrete({len(MOVES)})")
    return np.clip(position + MOVES[action], 0, size - 1)


def step_toward(position: np.ndarray, target: np.ndarray) -> int:
    """The action of a shortest path from ``position`` to ``target`` (x first, then y), or the
    no-op once there: the next step then ends on the target again."""
    for axis, (less, more) in ((0, (3, 4)), (1, (1, 2))):
        if target[axis] != position[axis]:
            return more if target[axis] > position[axis] else less
    return 0


class DarkRoomEnv(gym.Env):
    """A dark grid room with an invisible goal cell.

    ## Description
    The agent starts every episode at the centre of a ``size`` x ``size`` grid and must find a goal
    cell it cannot see. The goal is the task: it is fixed at construction and never changes on
    ``reset()``.

    ## Action Space
    ``Discrete(5)``: 0 no-op, 1 up (y - 1), 2 down (y + 1), 3 left (x - 1), 4 right (x + 1). Moves
    into a wall leave the agent in place.

    ## Observation Space
    ``MultiDiscrete([size, size])``: the agent's (x, y) only.

    ## Rewards
    ``hard=False`` (Dark Room): 1 on every step that ends on the goal cell. ``hard=True`` (Dark Room
    Hard): 1 exactly once per episode, on the step that first reaches the goal.

    ## Termination
    Never terminates; truncated after ``episode_length`` steps (20).

    ## Registered Configurations
    ``DarkRoom-v0`` (9x9, dense), ``DarkRoomHard-v0`` (17x17, sparse).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        goal: tuple[int, int] | list[int] = (0, 0),
        size: int = 9,
        episode_length: int = 20,
        hard: bool = False,
    ) -> None:
        self.hard = hard = check_bool("DarkRoom", "hard", hard)
        owner = "DarkRoomHard" if hard else "DarkRoom"
        self.size = check_int(owner, "size", size, 2)
        self.episode_length = check_int(owner, "episode_length", episode_length, 1)
        # Without this check gym.make(..., goal=outside) builds an env that never rewards.
        self.goal = np.asarray(grid_cell(owner, "goal", goal, self.size), dtype=np.int64)
        self.start = np.array([self.size // 2, self.size // 2], dtype=np.int64)
        self.observation_space = spaces.MultiDiscrete([self.size, self.size])
        self.action_space = spaces.Discrete(len(MOVES))
        self._pos = self.start.copy()
        self._t = 0
        self._reached = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._pos = self.start.copy()
        self._t = 0
        self._reached = False
        return self._pos.copy(), {}

    def step(self, action):
        self._pos = move(self._pos, action, self.size)
        self._t += 1
        at_goal = bool((self._pos == self.goal).all())
        if self.hard:
            reward = float(at_goal and not self._reached)
            self._reached |= at_goal
        else:
            reward = float(at_goal)
        truncated = self._t >= self.episode_length
        return self._pos.copy(), reward, False, truncated, {}


class RoomCells:
    """Exploration maps of a family on a ``size`` x ``size`` grid whose observation begins with
    the agent's (x, y): Dark Room and Key-to-Door (see ``TaskFamily.cell_of``)."""

    size: int

    @property
    def grid_size(self) -> tuple[int, int]:
        return (self.size, self.size)

    def cell_of(self, observation: Any) -> tuple[int, int]:
        return (int(observation[0]), int(observation[1]))


@register_family
class DarkRoom(RoomCells, TaskFamily):
    """Dark Room: the task is the goal cell, one of size**2 cells (81 on 9x9)."""

    name = "DarkRoom"
    env_id = "DarkRoom-v0"
    hard = False
    default_size = 9

    def __init__(self, size: int | None = None, episode_length: int = 20) -> None:
        size = check_int(self.name, "size", self.default_size if size is None else size, 2)
        episode_length = check_int(self.name, "episode_length", episode_length, 1)
        super().__init__(size=size, episode_length=episode_length)
        self.size = size
        self._episode_length = episode_length

    @property
    def episode_length(self) -> int:
        return self._episode_length

    def landmarks(self, task: Task) -> dict[str, tuple[int, int]]:
        return {"goal": tuple(self.validate_task(task)["goal"])}

    def all_tasks(self) -> list[Task]:
        return [{"goal": [x, y]} for y in range(self.size) for x in range(self.size)]

    def validate_task(self, task: Any) -> Task:
        task = check_task_fields(self.name, task, ("goal",), "{'goal': [x, y]} with integers")
        return {"goal": grid_cell(self.name, "goal", task["goal"], self.size)}

    def make_env(self, task: Task) -> DarkRoomEnv:
        task = self.validate_task(task)
        return DarkRoomEnv(
            goal=task["goal"], size=self.size, episode_length=self.episode_length, hard=self.hard
        )

    def optimal_return(self, task: Task) -> float:
        goal = np.asarray(self.validate_task(task)["goal"])
        centre = np.array([self.size // 2, self.size // 2])
        distance = int(np.abs(goal - centre).sum())
        if distance > self.episode_length:
            return 0.0
        if self.hard:
            return 1.0
        # Reward on every step from the arrival (step `distance`, or step 1 if the goal is the
        # start, reached by a no-op) to the last step.
        return float(self.episode_length - max(distance, 1) + 1)

    def optimal_action(self, env: gym.Env, task: Task) -> int:
        """Straight to the goal, then stay on it (a no-op ends the next step there again)."""
        return step_toward(env.unwrapped._pos, task["goal"])

    def random_return(self, task: Task) -> float:
        """Exact expectation by dynamic programming over the agent's position distribution."""
        goal = tuple(self.validate_task(task)["goal"])
        n = self.size
        prob = np.zeros((n, n))  # prob[x, y]; for Hard: mass not yet at the goal
        prob[n // 2, n // 2] = 1.0
        expected = 0.0
        for _ in range(self.episode_length):
            nxt = np.zeros_like(prob)
            for step in MOVES:
                xs = np.clip(np.arange(n) + step[0], 0, n - 1)
                ys = np.clip(np.arange(n) + step[1], 0, n - 1)
                np.add.at(nxt, (xs[:, None], ys[None, :]), prob / len(MOVES))
            expected += nxt[goal]
            if self.hard:
                nxt[goal] = 0.0  # rewarded once: drop the mass that has reached the goal
            prob = nxt
        return float(expected)


@register_family
class DarkRoomHard(DarkRoom):
    """Dark Room Hard: 17x17, reward 1 only on first reaching the goal (289 tasks)."""

    name = "DarkRoomHard"
    env_id = "DarkRoomHard-v0"
    hard = True
    default_size = 17
