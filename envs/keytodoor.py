"""Dark Key-to-Door (Laskin et al. 2022, section 4.1)."""

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
from envs.darkroom import MOVES, RoomCells, move, step_toward


class DarkKeyToDoorEnv(gym.Env):
    """A dark grid room with an invisible key and an invisible door.

    ## Description
    Each episode starts on a uniformly random cell of a ``size`` x ``size`` grid (drawn from
    ``self.np_random``, so seeded resets are reproducible). The agent must first step onto the key
    cell, then onto the door cell; it sees neither. The key and door cells are the task: fixed at
    construction, never changed on ``reset()``. ``key == door`` is allowed (the paper counts all
    81**2 = 6561 pairs): the agent then collects the key on arrival and opens the door with one more
    step that ends on the same cell (e.g. a no-op).

    ## Action Space
    ``Discrete(5)``: 0 no-op, 1 up (y - 1), 2 down (y + 1), 3 left (x - 1), 4 right (x + 1), as in
    Dark Room. Moves into a wall leave the agent in place.

    ## Observation Space
    ``MultiDiscrete([size, size])``: the agent's (x, y) only (not whether it holds the key).
    With ``observe_return=True``, ``MultiDiscrete([size, size, 3])``: (x, y, the episode's return
    so far), the sum of the rewards the agent has received this episode (0 before the key, 1
    holding it, 2 once the door is open); it adds nothing the rewards did not already show.

    ## Rewards
    Events happen at the end of a step, on the cell the agent is on then (the start cell itself
    counts only once a step ends there, as in Dark Room). 1 on the first step that ends on the
    key; 1 on the first step that ends on the door while already holding the key from an earlier
    step; 0 on every other step, including every later visit to the key or the door. The door
    without the key gives nothing. Returns are 0, 1 or 2.

    ## Termination
    Never terminates, not even on opening the door: every episode is truncated after
    ``episode_length`` steps (50), so that a context of 200 steps always holds 4 episodes (the
    paper's setting).

    ## Registered Configurations
    ``DarkKeyToDoor-v0`` (9x9, key (0, 0), door (8, 8); use the family for other tasks).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        key: tuple[int, int] | list[int] = (0, 0),
        door: tuple[int, int] | list[int] = (8, 8),
        size: int = 9,
        episode_length: int = 50,
        observe_return: bool = False,
    ) -> None:
        self.size = check_int("DarkKeyToDoor", "size", size, 2)
        self.observe_return = check_bool("DarkKeyToDoor", "observe_return", observe_return)
        self.episode_length = check_int("DarkKeyToDoor", "episode_length", episode_length, 1)
        self.key = np.asarray(grid_cell("DarkKeyToDoor", "key", key, self.size))
        self.door = np.asarray(grid_cell("DarkKeyToDoor", "door", door, self.size))
        levels = [self.size, self.size] + ([3] if self.observe_return else [])
        self.observation_space = spaces.MultiDiscrete(levels)
        self.action_space = spaces.Discrete(len(MOVES))
        self._pos = np.zeros(2, dtype=np.int64)
        self._t = 0
        self._has_key = False
        self._opened = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._pos = self.np_random.integers(0, self.size, size=2).astype(np.int64)
        self._t = 0
        self._has_key = False
        self._opened = False
        return self._observation(), {}

    def step(self, action):
        self._pos = move(self._pos, action, self.size)
        self._t += 1
        reward = 0.0
        # The door check uses the key state from *before* this step, so key == door needs a
        # second step on that cell (matches random_return's dynamic programme).
        if self._has_key and not self._opened and (self._pos == self.door).all():
            reward, self._opened = 1.0, True
        elif not self._has_key and (self._pos == self.key).all():
            reward, self._has_key = 1.0, True
        truncated = self._t >= self.episode_length
        return self._observation(), reward, False, truncated, {}

    def _observation(self) -> np.ndarray:
        if not self.observe_return:
            return self._pos.copy()
        return np.append(self._pos, int(self._has_key) + int(self._opened))


@register_family
class DarkKeyToDoor(RoomCells, TaskFamily):
    """Dark Key-to-Door: the task is the (key, door) cell pair, size**4 tasks (6561 on 9x9).

    ``observe_return=True`` adds the episode's return so far to the observation (see the env).
    Tasks are enumerated key-major in row-major cell order; the default split keeps 100 of them
    for test and 50 for validation (the paper trains on fewer than 2000: set ``num_train_tasks`` in the config).
    """

    name = "DarkKeyToDoor"
    env_id = "DarkKeyToDoor-v0"
    default_num_test = 100
    default_num_validation = 50
    # The paper trains on fewer than 2000 of the 6561 pairs; 1212 and 2424 tasks gave its best results.
    default_num_train = 2000

    def __init__(
        self, size: int = 9, episode_length: int = 50, observe_return: bool | None = None
    ) -> None:
        size = check_int(self.name, "size", size, 2)
        episode_length = check_int(self.name, "episode_length", episode_length, 1)
        # recorded only when given, so that datasets made before the option keep their kwargs
        given = {} if observe_return is None else {"observe_return": observe_return}
        super().__init__(size=size, episode_length=episode_length, **given)
        self.size = size
        self._episode_length = episode_length
        self.observe_return = observe_return is not None and check_bool(
            self.name, "observe_return", observe_return
        )

    @property
    def episode_length(self) -> int:
        return self._episode_length

    def landmarks(self, task: Task) -> dict[str, tuple[int, int]]:
        task = self.validate_task(task)
        return {"key": tuple(task["key"]), "door": tuple(task["door"])}

    def _cells(self) -> list[list[int]]:
        return [[x, y] for y in range(self.size) for x in range(self.size)]

    def all_tasks(self) -> list[Task]:
        cells = self._cells()
        return [{"key": list(k), "door": list(d)} for k in cells for d in cells]

    def validate_task(self, task: Any) -> Task:
        task = check_task_fields(
            self.name, task, ("key", "door"), "{'key': [x, y], 'door': [x, y]}"
        )
        return {
            "key": grid_cell(self.name, "key", task["key"], self.size),
            "door": grid_cell(self.name, "door", task["door"], self.size),
        }

    def make_env(self, task: Task) -> DarkKeyToDoorEnv:
        task = self.validate_task(task)
        return DarkKeyToDoorEnv(
            key=task["key"],
            door=task["door"],
            size=self.size,
            episode_length=self.episode_length,
            observe_return=self.observe_return,
        )

    def optimal_return(self, task: Task) -> float:
        """Mean over the uniform start cell of the best return from that start.

        From start s the key can first be collected at step max(|s - key|_1, 1) and the door then
        opened max(|key - door|_1, 1) steps later (no obstacles: Manhattan paths are shortest).
        """
        task = self.validate_task(task)
        key, door = np.asarray(task["key"]), np.asarray(task["door"])
        starts = np.asarray(self._cells())  # (size**2, 2)
        to_key = np.maximum(np.abs(starts - key).sum(axis=1), 1)
        to_door = to_key + max(int(np.abs(key - door).sum()), 1)
        returns = (to_key <= self.episode_length).astype(float) + (to_door <= self.episode_length)
        return float(returns.mean())

    def optimal_action(self, env: gym.Env, task: Task) -> int:
        """Straight to the key, then straight to the door (a no-op once on it)."""
        env = env.unwrapped
        return step_toward(env._pos, task["door"] if env._has_key else task["key"])

    def random_return(self, task: Task) -> float:
        """Exact expectation by dynamic programming over (cell, holds key) distributions."""
        task = self.validate_task(task)
        n = self.size
        key = task["key"][0] * n + task["key"][1]  # flat index x * n + y
        door = task["door"][0] * n + task["door"][1]
        # One-step transition matrix of the uniformly random policy on flat cells.
        xs, ys = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        transition = np.zeros((n * n, n * n))
        for step in MOVES:
            nx = np.clip(xs + step[0], 0, n - 1)
            ny = np.clip(ys + step[1], 0, n - 1)
            np.add.at(transition, ((xs * n + ys).ravel(), (nx * n + ny).ravel()), 1 / len(MOVES))
        no_key = np.full(n * n, 1 / (n * n))  # uniform random start
        has_key = np.zeros(n * n)
        expected = 0.0
        for _ in range(self.episode_length):
            no_key, has_key = no_key @ transition, has_key @ transition
            expected += has_key[door]
            has_key[door] = 0.0  # opened the door: no more reward this episode
            expected += no_key[key]
            has_key[key] += no_key[key]
            no_key[key] = 0.0
        return float(expected)
