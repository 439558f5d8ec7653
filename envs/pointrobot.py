"""The point robot of meta-RL (PEARL, Rakelly et al. 2019; VariBAD, Zintgraf et al. 2020).

The first continuous-control family (issue 13): 2-D displacements as actions, the position as
observation, a hidden goal on the upper half of the unit circle as the task.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.base import TaskFamily, check_int, check_task_fields, register_family
from envs.tasks import Task, TaskError

MAX_STEP = 0.1  # each coordinate of an action is clipped to [-MAX_STEP, MAX_STEP]
REWARD_TYPES = ("sparse", "dense")
# Lattice points per MAX_STEP in random_return's quadrature; errors are ~1e-4 of the return.
_RESOLUTION = 50
_MAX_GRID = 256  # points per axis of the dense return's 2-D sum


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def check_point(owner: str, field: str, point: Any) -> list[float]:
    """``point`` as ``[x, y]`` Python floats, or a one-line TaskError.

    Args:
        owner: the family or env name, for the message.
        field: what the point is ("goal").
        point: the value given: a sequence of two finite real numbers.
    """
    if isinstance(point, np.ndarray):
        point = point.tolist()
    if (
        not isinstance(point, (list, tuple))
        or len(point) != 2
        or not all(_is_real(v) and math.isfinite(v) for v in point)
    ):
        raise TaskError(f"{owner} {field} must be [x, y] with two finite numbers, got {point!r}")
    return [float(point[0]), float(point[1])]


def check_kwargs(owner: str, episode_length: Any, goal_radius: Any, reward_type: Any) -> tuple:
    """(episode_length, goal_radius, reward_type) checked, or a one-line TaskError."""
    episode_length = check_int(owner, "episode_length", episode_length, 1)
    if not (_is_real(goal_radius) and math.isfinite(goal_radius) and goal_radius > 0):
        raise TaskError(f"{owner} goal_radius must be a positive number, got {goal_radius!r}")
    if reward_type not in REWARD_TYPES:
        raise TaskError(f"{owner} reward_type must be 'sparse' or 'dense', got {reward_type!r}")
    return episode_length, float(goal_radius), reward_type


def move(position: np.ndarray, action: Any, bound: float) -> np.ndarray:
    """The position after ``action``, clipped per coordinate to [-MAX_STEP, MAX_STEP].

    Args:
        position: (2,) float64.
        action: two finite numbers.
        bound: the observation box's half-width; the clip to it only guards rounding, since
            ``episode_length`` steps never reach further.
    """
    action = np.asarray(action, dtype=np.float64)
    if action.shape != (2,) or not np.isfinite(action).all():
        raise ValueError(f"action {action!r} is not two finite numbers")
    return np.clip(position + np.clip(action, -MAX_STEP, MAX_STEP), -bound, bound)


def reward(position: np.ndarray, goal: np.ndarray, goal_radius: float, dense: bool) -> float:
    """Minus the distance to the goal (dense), or 1 within ``goal_radius`` of it (sparse)."""
    distance = float(np.hypot(*(position - goal)))
    return -distance if dense else float(distance <= goal_radius)


def greedy_action(position: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """Each coordinate as far toward the goal as the clip allows.

    After t steps from the origin this puts the robot at the point of the reachable square
    [-t MAX_STEP, t MAX_STEP]^2 nearest the goal, for every t at once: optimal for both rewards.
    """
    return np.clip(goal - position, -MAX_STEP, MAX_STEP)


class PointRobotEnv(gym.Env):
    """A point in the plane that must find a hidden goal.

    ## Description
    The robot starts every episode at the origin. The goal is the task: a point (on the upper half
    of the unit circle for the family's tasks) fixed at construction that never changes on
    ``reset()``. As in PEARL's sparse point robot, the goal is invisible.

    ## Action Space
    ``Box(-0.1, 0.1, (2,), float32)``: a displacement (dx, dy); each coordinate is clipped to
    [-0.1, 0.1], so the robot moves at most 0.1 along each axis per step (sqrt(0.02) diagonally).

    ## Observation Space
    ``Box(-0.1 L, 0.1 L, (2,), float32)`` for episode length L: the position (x, y), which
    cannot leave that box within an episode.

    ## Rewards
    ``reward_type="sparse"``: 1 on every step that ends within ``goal_radius`` (0.2) of the goal,
    else 0. ``reward_type="dense"``: minus the distance to the goal after the step.

    ## Termination
    Never terminates; truncated after ``episode_length`` steps (20).

    ## Registered Configurations
    ``PointRobot-v0`` (goal (0, 1), sparse; pass ``reward_type="dense"`` for the dense variant).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        goal: tuple[float, float] | list[float] = (0.0, 1.0),
        episode_length: int = 20,
        goal_radius: float = 0.2,
        reward_type: str = "sparse",
    ) -> None:
        owner = "PointRobot"
        self.episode_length, self.goal_radius, self.reward_type = check_kwargs(
            owner, episode_length, goal_radius, reward_type
        )
        self.goal = np.asarray(check_point(owner, "goal", goal), dtype=np.float64)
        self.bound = MAX_STEP * self.episode_length
        self.observation_space = spaces.Box(-self.bound, self.bound, (2,), np.float32)
        self.action_space = spaces.Box(-MAX_STEP, MAX_STEP, (2,), np.float32)
        self._position = np.zeros(2)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._position = np.zeros(2)
        self._t = 0
        return self._position.astype(np.float32), {}

    def step(self, action):
        self._position = move(self._position, action, self.bound)
        self._t += 1
        value = reward(self._position, self.goal, self.goal_radius, self.reward_type == "dense")
        truncated = self._t >= self.episode_length
        return self._position.astype(np.float32), value, False, truncated, {}


@register_family
class PointRobot(TaskFamily):
    """Point robot: the task is a goal at an angle uniform in [0, pi] on the unit circle."""

    name = "PointRobot"
    env_id = "PointRobot-v0"
    default_num_validation = 16

    def __init__(
        self, episode_length: int = 20, goal_radius: float = 0.2, reward_type: str = "sparse"
    ) -> None:
        episode_length, goal_radius, reward_type = check_kwargs(
            self.name, episode_length, goal_radius, reward_type
        )
        super().__init__(
            episode_length=episode_length, goal_radius=goal_radius, reward_type=reward_type
        )
        self._episode_length = episode_length
        self.goal_radius = goal_radius
        self.reward_type = reward_type

    @property
    def episode_length(self) -> int:
        return self._episode_length

    def sample_tasks(self, rng: np.random.Generator, num: int, split: str) -> list[Task]:
        # Every split's goals come from the same distribution (separate seeded streams).
        angles = rng.uniform(0.0, math.pi, size=num)
        return [{"goal": [float(np.cos(a)), float(np.sin(a))]} for a in angles]

    def validate_task(self, task: Any) -> Task:
        example = "{'goal': [cos(a), sin(a)]} with a in [0, pi]"
        task = check_task_fields(self.name, task, ("goal",), example)
        goal = check_point(self.name, "goal", task["goal"])
        # A tolerance, so that goals written by hand with a few digits are accepted.
        if abs(math.hypot(*goal) - 1.0) > 1e-6 or goal[1] < -1e-6:
            raise TaskError(
                f"{self.name} goal {goal} is not on the upper half of the unit circle; "
                "use [cos(a), sin(a)] with a in [0, pi]"
            )
        return {"goal": goal}

    def make_env(self, task: Task) -> PointRobotEnv:
        task = self.validate_task(task)
        return PointRobotEnv(task["goal"], self.episode_length, self.goal_radius, self.reward_type)

    # -- pictures of the paths -------------------------------------------------------------------

    def position_of(self, observation: Any) -> tuple[float, float]:
        """The observation is the position itself."""
        x, y = np.asarray(observation, dtype=np.float64).reshape(2)
        return float(x), float(y)

    def landmarks(self, task: Task) -> dict[str, Any]:
        """The goal, and (sparse rewards only: the dense reward has no radius) the goal radius."""
        marks: dict[str, Any] = {"goal": tuple(self.validate_task(task)["goal"])}
        if self.reward_type == "sparse":
            marks["goal_radius"] = self.goal_radius
        return marks

    # -- reference returns ----------------------------------------------------------------------

    def steps_to_goal(self, task: Task) -> int | None:
        """The fewest steps after which the robot can be within ``goal_radius`` of the goal.

        The per-coordinate clip makes the set reachable in k steps from the origin the square
        [-0.1 k, 0.1 k]^2 (not a disk: the fastest way is not always the straight line), so this is
        the first k whose square comes within ``goal_radius`` of the goal; None if no k <= the
        episode length does.
        """
        goal = np.abs(np.asarray(self.validate_task(task)["goal"]))
        for steps in range(1, self.episode_length + 1):
            gap = np.maximum(goal - MAX_STEP * steps, 0.0)  # to the square's nearest point
            if math.hypot(*gap) <= self.goal_radius:
                return steps
        return None

    def optimal_return(self, task: Task) -> float:
        """Sparse: reach the goal's disk in :meth:`steps_to_goal` and stay, one reward per step.
        Dense: the return of :func:`greedy_action`, which is nearest the goal at every step."""
        task = self.validate_task(task)
        if self.reward_type == "sparse":
            steps = self.steps_to_goal(task)
            return 0.0 if steps is None else float(self.episode_length - steps + 1)
        goal = np.asarray(task["goal"])
        bound = MAX_STEP * self.episode_length
        position, total = np.zeros(2), 0.0
        for _ in range(self.episode_length):  # the env's own dynamics and reward
            position = move(position, greedy_action(position, goal), bound)
            total += reward(position, goal, self.goal_radius, dense=True)
        return total

    def optimal_action(self, env: gym.Env, task: Task) -> np.ndarray:
        """:func:`greedy_action` from the robot's position (optimal for both rewards)."""
        goal = np.asarray(task["goal"])
        return greedy_action(env.unwrapped._position, goal)

    def random_return(self, task: Task) -> float:
        """Expected return of uniformly random actions on the action box, by quadrature.

        After t steps each coordinate is a sum of t independent U(-0.1, 0.1) displacements; its
        distribution is computed on a lattice (``_RESOLUTION`` points per 0.1, exact up to the
        lattice's O(h^2) error) and the expected reward of step t summed over its two
        independent coordinates. Deterministic, and within ~1e-4 of the return (the tests check
        it against a Monte-Carlo estimate).
        """
        goal = np.asarray(self.validate_task(task)["goal"])
        h = MAX_STEP / _RESOLUTION
        expected = 0.0
        for pmf in self._coordinate_pmfs:
            half = (len(pmf) - 1) // 2
            points = h * np.arange(-half, half + 1)  # (n,) lattice positions of one coordinate
            if self.reward_type == "sparse":
                expected += _disk_probability(pmf, points, h, goal, self.goal_radius)
            else:
                expected -= _mean_distance(pmf, points, goal)
        return float(expected)

    @cached_property
    def _coordinate_pmfs(self) -> list[np.ndarray]:
        """The lattice pmf of one coordinate after t = 1 .. episode_length random steps."""
        # U(-0.1, 0.1) as trapezoid weights on 2 R + 1 lattice points (the ends count half).
        uniform = np.ones(2 * _RESOLUTION + 1)
        uniform[[0, -1]] = 0.5
        uniform /= uniform.sum()
        pmfs, pmf = [], np.ones(1)
        for _ in range(self.episode_length):
            pmf = np.convolve(pmf, uniform)
            pmfs.append(pmf)
        return pmfs


def _disk_probability(
    pmf: np.ndarray, points: np.ndarray, h: float, goal: np.ndarray, radius: float
) -> float:
    """P(|(X, Y) - goal| <= radius) for independent X, Y with lattice pmf ``pmf`` at ``points``.

    Sums over X's lattice points the probability that Y lies in the disk's chord there; Y's CDF
    spreads each lattice mass evenly over its cell, which is linear interpolation.
    """
    cell_edges = np.append(points - h / 2, points[-1] + h / 2)  # (n + 1,)
    cdf = np.concatenate([[0.0], np.cumsum(pmf)])  # (n + 1,)
    inside = np.abs(points - goal[0]) <= radius
    chord = np.sqrt(radius**2 - (points[inside] - goal[0]) ** 2)  # half-height at each x
    upper = np.interp(goal[1] + chord, cell_edges, cdf)
    lower = np.interp(goal[1] - chord, cell_edges, cdf)
    return float(np.sum(pmf[inside] * (upper - lower)))


def _mean_distance(pmf: np.ndarray, points: np.ndarray, goal: np.ndarray) -> float:
    """E|(X, Y) - goal| for independent X, Y with lattice pmf ``pmf`` at ``points``."""
    keep = pmf > 1e-15 * pmf.max()  # tails that cannot move the mean distance
    pmf, points = pmf[keep], points[keep]
    if len(pmf) > _MAX_GRID:  # merge neighbours: the distance is smooth on this scale
        groups = np.arange(len(pmf)) * _MAX_GRID // len(pmf)
        mass = np.bincount(groups, weights=pmf)
        points = np.bincount(groups, weights=pmf * points) / mass
        pmf = mass
    dx = (points - goal[0])[:, None]  # (n, 1)
    dy = (points - goal[1])[None, :]  # (1, n)
    return float(pmf @ np.sqrt(dx**2 + dy**2) @ pmf)
