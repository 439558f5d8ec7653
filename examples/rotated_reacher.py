"""A continuous family of our own design, unlike every shipped one: a reacher with rotated controls.

A point in the plane starts at the origin and must reach a visible, fixed target at (1, 0); the
task is a hidden angle theta by which every action is rotated before it moves the point (Box(2)
actions, each coordinate clipped to +-0.1). Reward: minus the distance to the target after each
step, for ``episode_length`` steps. What an in-context learner must infer is the dynamics, not the
goal (the point robot hides the goal): one step shows how the controls turn, and the rest of the
episodes should head straight for the target.

Plugged in by ``module:Class`` (``env.family: rotated_reacher:RotatedReacher`` with this folder on
``PYTHONPATH``); ``examples/rotated_reacher.yaml`` names only the family and the source.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.base import TaskFamily, check_int
from envs.tasks import Task, TaskError

MAX_STEP = 0.1
TARGET = np.array([1.0, 0.0])


def rotation(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


class RotatedReacherEnv(gym.Env):
    """Observation: the point's position (2,); action: a displacement before the rotation."""

    metadata = {"render_modes": []}

    def __init__(self, theta: float, episode_length: int) -> None:
        self.turn, self.episode_length = rotation(theta), episode_length
        high = np.full(2, np.float32(MAX_STEP * episode_length), np.float32)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)
        self.action_space = spaces.Box(-MAX_STEP, MAX_STEP, (2,), np.float32)
        self.position, self.t = np.zeros(2), 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.position, self.t = np.zeros(2), 0
        return self.position.astype(np.float32), {}

    def step(self, action):
        action = np.clip(np.asarray(action, np.float64).reshape(2), -MAX_STEP, MAX_STEP)
        self.position = self.position + self.turn @ action
        self.t += 1
        reward = -float(np.linalg.norm(TARGET - self.position))
        return self.position.astype(np.float32), reward, False, self.t >= self.episode_length, {}


def greedy_action(position: np.ndarray, theta: float) -> np.ndarray:
    """The target's direction in the controls' frame, each coordinate as far as the clip allows:
    the point robot's optimal greedy step, in the rotated frame."""
    return np.clip(rotation(-theta) @ (TARGET - position), -MAX_STEP, MAX_STEP)


class RotatedReacher(TaskFamily):
    """The task is the rotation angle, uniform in [0, 2 pi).

    Args:
        episode_length: steps per episode.
    """

    def __init__(self, episode_length: int = 20) -> None:
        episode_length = check_int(self.name, "episode_length", episode_length, 1)
        super().__init__(episode_length=episode_length)
        self._episode_length = episode_length

    @property
    def episode_length(self) -> int:
        return self._episode_length

    def sample_tasks(self, rng: np.random.Generator, num: int, split: str) -> list[Task]:
        return [{"theta": float(t)} for t in rng.uniform(0.0, 2 * math.pi, size=num)]

    def validate_task(self, task: Any) -> Task:
        theta = task.get("theta") if isinstance(task, dict) and set(task) == {"theta"} else None
        if isinstance(theta, bool) or not isinstance(theta, (int, float)):
            raise TaskError(f"{self.name} task must be {{'theta': angle in radians}}, got {task!r}")
        if not math.isfinite(theta):
            raise TaskError(f"{self.name} theta must be finite, got {theta!r}")
        return {"theta": float(theta) % (2 * math.pi)}

    def make_env(self, task: Task) -> RotatedReacherEnv:
        return RotatedReacherEnv(self.validate_task(task)["theta"], self.episode_length)

    def optimal_action(self, env: gym.Env, task: Task) -> np.ndarray:
        return greedy_action(env.unwrapped.position, self.validate_task(task)["theta"])

    def optimal_return(self, task: Task) -> float:
        """The greedy step's return (optimal: the reachable set of each step is a rotated square,
        and the greedy step is nearest the target after every step)."""
        env = self.make_env(task)
        env.reset(seed=0)
        theta, total = self.validate_task(task)["theta"], 0.0
        for _ in range(self.episode_length):
            _, reward, _, _, _ = env.step(greedy_action(env.position, theta))
            total += reward
        return total
