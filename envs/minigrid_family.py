"""A MiniGrid empty room whose hidden task is the goal cell (image observations)."""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from minigrid.core.constants import DIR_TO_VEC, OBJECT_TO_IDX
from minigrid.core.grid import Grid
from minigrid.core.world_object import Goal
from minigrid.envs import EmptyEnv

from envs.base import (
    Task,
    TaskError,
    TaskFamily,
    check_bool,
    check_cell,
    check_int,
    check_task_fields,
    register_family,
)

START = (1, 1)  # top-left interior cell
START_DIR = 0  # facing right (+x), minigrid's direction 0
NUM_ACTIONS = 3  # minigrid's left, right, forward; pickup/drop/toggle/done do nothing here


def default_episode_length(size: int) -> int:
    """Two steps per interior cell: 50 for the default size 7 (minigrid's own 4 * size**2 = 196
    would make one episode fill a whole AD context)."""
    return 2 * (size - 2) ** 2


class MiniGridEmptyEnv(EmptyEnv):
    """Minigrid's ``EmptyEnv`` with the goal cell as the task, seen through the agent's eyes.

    ## Description
    A ``size`` x ``size`` room (walls included, so (size - 2)**2 interior cells). The agent always
    starts at (1, 1) facing right; the goal cell is the task, fixed at construction and placed by
    ``_gen_grid`` on every reset. With ``visible_goal=False`` (the default) the goal is invisible:
    its encoding in the image is replaced by empty floor, so, as in Dark Room, the agent must find
    it by exploring and remember it across episodes (``render()`` still draws it, for people
    watching). Dynamics are minigrid's own.

    ## Action Space
    ``Discrete(3)``: 0 turn left, 1 turn right, 2 move forward (minigrid's first three actions).

    ## Observation Space
    ``Box(0, 255, (7, 7, 3), uint8)``: minigrid's partial, egocentric view (as ``ImgObsWrapper``
    returns it): (object, colour, state) indices per cell.

    ## Rewards
    Minigrid's ``1 - 0.9 * (step_count / episode_length)`` on moving onto the goal, 0 otherwise.

    ## Termination
    Terminates on reaching the goal; truncated after ``episode_length`` steps (default
    ``2 * (size - 2)**2`` = 50 for size 7).

    ## Registered Configurations
    ``ADMiniGridEmpty-v0`` (size 7, goal (5, 5), invisible).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        goal: tuple[int, int] | list[int] = (5, 5),
        size: int = 7,
        episode_length: int | None = None,
        visible_goal: bool = False,
        render_mode: str | None = None,
    ) -> None:
        size, episode_length, self.visible_goal = check_kwargs(
            "MiniGridEmpty", size, episode_length, visible_goal
        )
        self.goal = tuple(parse_goal("MiniGridEmpty", goal, size))
        super().__init__(
            size=size,
            agent_start_pos=START,
            agent_start_dir=START_DIR,
            max_steps=episode_length,
            render_mode=render_mode,
        )
        self.action_space = spaces.Discrete(NUM_ACTIONS)
        self.observation_space = self.observation_space["image"]

    def _gen_grid(self, width: int, height: int) -> None:
        self.grid = Grid(width, height)
        self.grid.wall_rect(0, 0, width, height)
        self.put_obj(Goal(), *self.goal)
        self.agent_pos = START
        self.agent_dir = START_DIR
        self.mission = self._gen_mission()

    def _image(self, observation: dict) -> np.ndarray:
        image = observation["image"]  # (7, 7, 3) uint8
        if not self.visible_goal:
            hidden = image[..., 0] == OBJECT_TO_IDX["goal"]
            image[hidden] = (OBJECT_TO_IDX["empty"], 0, 0)
        return image

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        observation, info = super().reset(seed=seed, options=options)
        return self._image(observation), info

    def step(self, action):
        action = int(action)
        if not 0 <= action < NUM_ACTIONS:
            raise ValueError(f"action {action} outside Discrete({NUM_ACTIONS})")
        observation, reward, terminated, truncated, info = super().step(action)
        return self._image(observation), float(reward), terminated, truncated, info


def check_kwargs(
    owner: str, size: Any, episode_length: Any, visible_goal: Any
) -> tuple[int, int, bool]:
    """The room size, episode length (None: the default for the size) and goal visibility,
    checked; a one-line TaskError names the first bad one."""
    size = check_int(owner, "size", size, 4)
    if episode_length is None:
        episode_length = default_episode_length(size)
    # check_env needs at least one step before truncation.
    episode_length = check_int(owner, "episode_length", episode_length, 2)
    return size, episode_length, check_bool(owner, "visible_goal", visible_goal)


def parse_goal(owner: str, goal: Any, size: int) -> list[int]:
    """The goal ``[x, y]``: an interior cell other than the start, else a one-line TaskError."""
    region = f"the interior of the {size}x{size} room (walls on the border)"
    goal = check_cell(owner, "goal", goal, 1, size - 2, region)
    if tuple(goal) == START:
        raise TaskError(f"{owner} goal {goal} is the start cell; choose another interior cell")
    return goal


def _transitions(size: int, goal: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Minigrid's dynamics on (x, y, dir) states of the empty room, for BFS and the DP.

    Returns:
        ``nxt[s, a]``, the next state index (s = (x * size + y) * 4 + dir), and ``hit[s, a]``, True
        where the action moves onto the goal (the episode terminates there).
    """
    num_states = size * size * 4
    nxt = np.zeros((num_states, NUM_ACTIONS), dtype=np.int64)
    hit = np.zeros((num_states, NUM_ACTIONS), dtype=bool)
    for x in range(size):
        for y in range(size):
            for d in range(4):
                s = (x * size + y) * 4 + d
                nxt[s, 0] = (x * size + y) * 4 + (d - 1) % 4  # left
                nxt[s, 1] = (x * size + y) * 4 + (d + 1) % 4  # right
                fx, fy = x + int(DIR_TO_VEC[d][0]), y + int(DIR_TO_VEC[d][1])
                if 1 <= fx <= size - 2 and 1 <= fy <= size - 2:  # not a wall
                    nxt[s, 2] = (fx * size + fy) * 4 + d
                    hit[s, 2] = (fx, fy) == goal
                else:
                    nxt[s, 2] = s
    return nxt, hit


@functools.lru_cache(maxsize=64)
def _steps_left(size: int, goal: tuple[int, int]) -> np.ndarray:
    """``steps[s, a]``: the fewest steps to the goal from state s when its first action is a
    (inf where the goal cannot be reached), by relaxation over :func:`_transitions`."""
    nxt, hit = _transitions(size, goal)
    best = np.full(len(nxt), np.inf)  # fewest steps from each state
    while True:
        steps = np.where(hit, 1.0, 1.0 + best[nxt])  # (states, actions)
        if np.array_equal(steps.min(axis=1), best):
            return steps
        best = steps.min(axis=1)


@register_family
class MiniGridEmpty(TaskFamily):
    """Goal cells of a minigrid empty room: (size - 2)**2 - 1 tasks (24 for size 7).

    Tasks are the interior cells except the start, in row-major order; the default split keeps 4
    of them for test and 4 for validation (16 train).
    """

    name = "MiniGridEmpty"
    env_id = "ADMiniGridEmpty-v0"
    default_num_test = 4
    default_num_validation = 4

    def __init__(
        self, size: int = 7, episode_length: int | None = None, visible_goal: bool = False
    ) -> None:
        size, episode_length, visible_goal = check_kwargs(
            self.name, size, episode_length, visible_goal
        )
        super().__init__(size=size, episode_length=episode_length, visible_goal=visible_goal)
        self.size = size
        self._episode_length = episode_length
        self.visible_goal = visible_goal

    @property
    def episode_length(self) -> int:
        return self._episode_length

    def all_tasks(self) -> list[Task]:
        interior = range(1, self.size - 1)
        return [{"goal": [x, y]} for y in interior for x in interior if (x, y) != START]

    def validate_task(self, task: Any) -> Task:
        task = check_task_fields(self.name, task, ("goal",), "{'goal': [x, y]} with integers")
        return {"goal": parse_goal(self.name, task["goal"], self.size)}

    def make_env(self, task: Task) -> MiniGridEmptyEnv:
        return MiniGridEmptyEnv(
            goal=self.validate_task(task)["goal"],
            size=self.size,
            episode_length=self.episode_length,
            visible_goal=self.visible_goal,
        )

    def _reward(self, steps: int) -> float:
        return 1.0 - 0.9 * steps / self.episode_length  # minigrid's MiniGridEnv._reward

    def optimal_return(self, task: Task) -> float:
        """Minigrid's reward for the fewest steps to the goal (0 if it takes longer than an
        episode)."""
        goal = tuple(self.validate_task(task)["goal"])
        start = (START[0] * self.size + START[1]) * 4 + START_DIR
        steps = _steps_left(self.size, goal)[start].min()
        return self._reward(int(steps)) if steps <= self.episode_length else 0.0

    def optimal_action(self, env: gym.Env, task: Task) -> int:
        """The first action of a shortest path to the goal (turns count as steps)."""
        env, goal = env.unwrapped, tuple(task["goal"])
        x, y = env.agent_pos
        state = (int(x) * self.size + int(y)) * 4 + int(env.agent_dir)
        return int(np.argmin(_steps_left(self.size, goal)[state]))

    def random_return(self, task: Task) -> float:
        """Exact expectation by dynamic programming over (x, y, dir) distributions."""
        goal = tuple(self.validate_task(task)["goal"])
        nxt, hit = _transitions(self.size, goal)
        prob = np.zeros(len(nxt))
        prob[(START[0] * self.size + START[1]) * 4 + START_DIR] = 1.0
        expected = 0.0
        for t in range(1, self.episode_length + 1):
            moved = np.zeros_like(prob)
            for a in range(NUM_ACTIONS):
                share = prob / NUM_ACTIONS
                expected += share[hit[:, a]].sum() * self._reward(t)
                # Mass that reached the goal has terminated; the rest moves on.
                np.add.at(moved, nxt[~hit[:, a], a], share[~hit[:, a]])
            prob = moved
        return float(expected)
