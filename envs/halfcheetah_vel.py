"""HalfCheetah with a target velocity (HalfCheetahVel of MAML, Finn et al. 2017; PEARL, Rakelly et
al. 2019; VariBAD, Zintgraf et al. 2020): the MuJoCo family of issue 13.

The task is a target forward velocity; the reward is ``-|v - v_target| - ctrl_cost_weight |a|^2``
as in those papers. MuJoCo comes with the optional extra ``pip install -e ".[mujoco]"``
(gymnasium[mujoco]); this module imports it only when an env is made, so the project (and this
family's task sampling, splitting and validation) works without it.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.base import TaskFamily, check_int, check_task_fields, register_family
from envs.tasks import Task, TaskError

MUJOCO_HINT = 'install the MuJoCo extra: pip install -e ".[mujoco]"'


def _positive(owner: str, field: str, value: Any) -> float:
    real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )
    if not (real and math.isfinite(value) and value > 0):
        raise TaskError(f"{owner} {field} must be a positive number, got {value!r}")
    return float(value)


def _half_cheetah(ctrl_cost_weight: float) -> gym.Env:
    """Gymnasium's HalfCheetah-v5 model without its time limit (the family truncates)."""
    try:
        from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
    except ImportError as e:  # gymnasium without mujoco raises DependencyNotInstalled (ImportError)
        raise TaskError(f"HalfCheetahVel needs MuJoCo ({e}); {MUJOCO_HINT}") from None
    # forward_reward_weight 1: info["x_velocity"] is the velocity the reward below compares.
    return HalfCheetahEnv(ctrl_cost_weight=ctrl_cost_weight, reset_noise_scale=0.1)


class HalfCheetahVelEnv(gym.Env):
    """The MuJoCo half cheetah rewarded for running at a hidden target velocity.

    ## Description
    Gymnasium's ``HalfCheetah-v5`` body and physics (dt 0.05 s); the task is the target forward
    velocity, fixed at construction, never changed on ``reset()`` and not observed.

    ## Action Space
    ``Box(-1, 1, (6,), float32)``: torques of the six joints.

    ## Observation Space
    ``Box(-inf, inf, (17,), float32)``: HalfCheetah-v5's observation (joint positions without the
    x coordinate, and velocities).

    ## Rewards
    ``-|v - velocity| - ctrl_cost_weight * sum(action**2)`` with v the forward velocity of the
    torso over the step (``ctrl_cost_weight`` 0.05, as in MAML and PEARL).

    ## Termination
    Never terminates; truncated after ``episode_length`` steps (200, as in PEARL and VariBAD).

    ## Registered Configurations
    ``HalfCheetahVel-v0`` (velocity 1.0).
    """

    metadata = {"render_modes": []}

    def __init__(
        self, velocity: float = 1.0, episode_length: int = 200, ctrl_cost_weight: float = 0.05
    ) -> None:
        owner = "HalfCheetahVel"
        self.velocity = float(velocity)
        self.episode_length = check_int(owner, "episode_length", episode_length, 1)
        self.ctrl_cost_weight = _positive(owner, "ctrl_cost_weight", ctrl_cost_weight)
        self._cheetah = _half_cheetah(self.ctrl_cost_weight)
        shape = self._cheetah.observation_space.shape
        self.observation_space = spaces.Box(-np.inf, np.inf, shape, np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, self._cheetah.action_space.shape, np.float32)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        # The body's reset noise comes from the inner env: seed it from this env's generator at
        # every reset, so that episodes after the first (reset without a seed) are reproducible.
        obs, _ = self._cheetah.reset(seed=int(self.np_random.integers(2**31)))
        self._t = 0
        return obs.astype(np.float32), {}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        obs, _, _, _, info = self._cheetah.step(action)
        self._t += 1
        velocity = float(info["x_velocity"])
        ctrl_cost = self.ctrl_cost_weight * float(np.square(action).sum())
        value = -abs(velocity - self.velocity) - ctrl_cost
        truncated = self._t >= self.episode_length
        return obs.astype(np.float32), value, False, truncated, {"x_velocity": velocity}

    def close(self) -> None:
        self._cheetah.close()


@register_family
class HalfCheetahVel(TaskFamily):
    """HalfCheetahVel: the task is a target velocity uniform in [0, ``max_velocity``] (3 m/s as in
    PEARL and VariBAD). The optimal return is unknown (None): evaluation normalises by the source
    algorithm's best return, and says so."""

    name = "HalfCheetahVel"
    env_id = "HalfCheetahVel-v0"
    default_num_validation = 8
    default_num_test = 8
    default_num_train = 40
    random_return_episodes = 10  # 2,000 MuJoCo steps per task (~1 s), not the default 200 episodes

    def __init__(
        self,
        episode_length: int = 200,
        max_velocity: float = 3.0,
        ctrl_cost_weight: float = 0.05,
    ) -> None:
        owner = self.name
        episode_length = check_int(owner, "episode_length", episode_length, 1)
        max_velocity = _positive(owner, "max_velocity", max_velocity)
        ctrl_cost_weight = _positive(owner, "ctrl_cost_weight", ctrl_cost_weight)
        super().__init__(
            episode_length=episode_length,
            max_velocity=max_velocity,
            ctrl_cost_weight=ctrl_cost_weight,
        )
        self._episode_length = episode_length
        self.max_velocity = max_velocity
        self.ctrl_cost_weight = ctrl_cost_weight

    @property
    def episode_length(self) -> int:
        return self._episode_length

    def sample_tasks(self, rng: np.random.Generator, num: int, split: str) -> list[Task]:
        return [{"velocity": float(v)} for v in rng.uniform(0.0, self.max_velocity, size=num)]

    def validate_task(self, task: Any) -> Task:
        example = f"{{'velocity': v}} with v in [0, {self.max_velocity:g}]"
        task = check_task_fields(self.name, task, ("velocity",), example)
        v = task["velocity"]
        real = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
            v, (bool, np.bool_)
        )
        if not (real and math.isfinite(v) and 0.0 <= v <= self.max_velocity):
            raise TaskError(f"{self.name} task must be {example}, got {task!r}")
        return {"velocity": float(v)}

    def make_env(self, task: Task) -> HalfCheetahVelEnv:
        task = self.validate_task(task)
        return HalfCheetahVelEnv(task["velocity"], self.episode_length, self.ctrl_cost_weight)
