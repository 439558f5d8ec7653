"""A discrete family of our own design, unlike every shipped one: a combination lock.

``num_buttons`` buttons; the task is a hidden code of ``code_length`` of them. Each step the agent
presses one: the right next button of the code earns reward 1 and moves the lock on; a wrong one
resets it to the start. Entering the whole code earns its last reward and resets the lock, so an
agent that knows the code earns 1 on every step. The observation is only how far into the code
the lock is. An in-context learner must find the code by trial and error, keep what worked, and
then repeat it: what it has to remember is a sequence, not a place.

Plugged in by ``module:Class`` (``env.family: combination_lock:CombinationLock`` with this
folder on ``PYTHONPATH``); ``examples/combination_lock.yaml`` names only the family and the source.
"""

from __future__ import annotations

import itertools
from typing import Any

import gymnasium as gym
from gymnasium import spaces

from envs.base import TaskFamily, check_int
from envs.tasks import Task, TaskError


class CombinationLockEnv(gym.Env):
    """One code: observation = the lock's progress (0 .. code_length - 1), action = a button."""

    metadata = {"render_modes": []}

    def __init__(self, code: list[int], num_buttons: int, episode_length: int) -> None:
        self.code, self.episode_length = list(code), episode_length
        self.observation_space = spaces.Discrete(len(code))
        self.action_space = spaces.Discrete(num_buttons)
        self.progress, self.t = 0, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.progress, self.t = 0, 0
        return self.progress, {}

    def step(self, action):
        self.t += 1
        if int(action) == self.code[self.progress]:
            reward, self.progress = 1.0, (self.progress + 1) % len(self.code)
        else:
            reward, self.progress = 0.0, 0
        return self.progress, reward, False, self.t >= self.episode_length, {}


class CombinationLock(TaskFamily):
    """Every code of ``code_length`` presses of ``num_buttons`` buttons is a task.

    Args:
        num_buttons: buttons on the lock.
        code_length: presses in the code.
        episode_length: presses per episode.
    """

    default_num_test = 8
    default_num_validation = 4

    def __init__(self, num_buttons: int = 4, code_length: int = 3, episode_length: int = 12):
        num_buttons = check_int(self.name, "num_buttons", num_buttons, 2)
        code_length = check_int(self.name, "code_length", code_length, 1)
        episode_length = check_int(self.name, "episode_length", episode_length, code_length)
        super().__init__(
            num_buttons=num_buttons, code_length=code_length, episode_length=episode_length
        )
        self.num_buttons, self.code_length = num_buttons, code_length
        self._episode_length = episode_length

    @property
    def episode_length(self) -> int:
        return self._episode_length

    def all_tasks(self) -> list[Task]:
        codes = itertools.product(range(self.num_buttons), repeat=self.code_length)
        return [{"code": list(code)} for code in codes]

    def validate_task(self, task: Any) -> Task:
        code = task.get("code") if isinstance(task, dict) and set(task) == {"code"} else None
        if (
            not isinstance(code, list)
            or len(code) != self.code_length
            or not all(isinstance(b, int) and 0 <= b < self.num_buttons for b in code)
        ):
            raise TaskError(
                f"{self.name} task must be {{'code': [{self.code_length} buttons in 0.."
                f"{self.num_buttons - 1}]}}, got {task!r}"
            )
        return {"code": code}

    def make_env(self, task: Task) -> CombinationLockEnv:
        code = self.validate_task(task)["code"]
        return CombinationLockEnv(code, self.num_buttons, self.episode_length)

    def optimal_return(self, task: Task) -> float:
        """The right button on every press."""
        return float(self.episode_length)

    def optimal_action(self, env: gym.Env, task: Task) -> int:
        lock = env.unwrapped
        return int(lock.code[lock.progress])

    def random_return(self, task: Task) -> float:
        """Exact: from any progress a random press is the right one with chance 1 / num_buttons."""
        return self.episode_length / self.num_buttons
