"""The point robot family: dynamics, rewards, reference returns (checked by search and sampling),
determinism, and one-line refusals of bad tasks and arguments."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs import make_family
from envs.pointrobot import MAX_STEP, PointRobotEnv, greedy_action
from envs.tasks import TaskError
from tests.factories import refused_in_one_line

GOAL = [0.28, 0.96]  # a 7-24-25 triangle: on the unit circle, no step ends on the disk's rim


def _goal(angle: float) -> dict:
    return {"goal": [math.cos(angle), math.sin(angle)]}


def _episode(env: gym.Env, policy) -> tuple[list[float], list[np.ndarray]]:
    """(rewards, observations after each step) of one episode of ``policy(observation)``."""
    observation, _ = env.reset()
    rewards, observations = [], []
    while True:
        observation, reward, terminated, truncated, _ = env.step(policy(observation))
        rewards.append(reward)
        observations.append(observation)
        assert not terminated
        if truncated:
            return rewards, observations


def _greedy(goal):
    # The observation is float32; the greedy policy of the reference returns sees the float64
    # position. Steering from the observation reaches the same cells up to float32 rounding.
    return lambda observation: greedy_action(np.asarray(observation, dtype=np.float64), goal)


# --------------------------------------------------------------------------- the env


@pytest.mark.parametrize("reward_type", ["sparse", "dense"])
def test_check_env_and_spaces(reward_type):
    family = make_family("PointRobot", reward_type=reward_type)
    for env in (family.make_env(_goal(1.0)), gym.make("PointRobot-v0", reward_type=reward_type)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check_env(env.unwrapped, skip_render_check=True)
        assert env.action_space == gym.spaces.Box(-0.1, 0.1, (2,), np.float32)
        assert env.observation_space == gym.spaces.Box(-2.0, 2.0, (2,), np.float32)


def test_same_seed_same_trajectory_and_task_fixed_across_resets():
    def rollout(action_seed):
        env = gym.make("PointRobot-v0", goal=GOAL)
        env.action_space.seed(action_seed)
        env.reset(seed=3)
        steps = []
        for i in range(100):  # five episodes
            observation, reward, _, truncated, _ = env.step(env.action_space.sample())
            steps.append((observation.tobytes(), reward))
            if truncated:
                observation, _ = env.reset(seed=i if i % 2 else None)
                assert observation.tolist() == [0.0, 0.0]
        return steps

    assert rollout(7) == rollout(7)
    assert rollout(7) != rollout(8)
    env = make_family("PointRobot").make_env({"goal": GOAL})
    for i in range(10):
        env.reset(seed=i if i % 2 else None)
        rewards, _ = _episode(env, _greedy(np.array(GOAL)))
        assert sum(rewards) == 13.0 and env.goal.tolist() == GOAL


def test_actions_are_clipped_per_coordinate():
    env = PointRobotEnv(goal=GOAL)
    env.reset(seed=0)
    observation = env.step(np.array([1.0, -5.0]))[0]
    assert observation.dtype == np.float32 and observation.tolist() == pytest.approx([0.1, -0.1])
    observation = env.step([0.05, 0.1])[0]
    assert observation.tolist() == pytest.approx([0.15, 0.0], abs=1e-7)
    observation = env.step(np.array([-0.3, 0.02], dtype=np.float32))[0]
    assert observation.tolist() == pytest.approx([0.05, 0.02], abs=1e-7)


@pytest.mark.parametrize(
    "action",
    [[np.nan, 0.0], [0.1], [[0.1, 0.1]], [np.inf, 0.0]],
    ids=["nan", "one-number", "nested", "inf"],
)
def test_bad_actions_are_refused(action):
    env = PointRobotEnv(goal=GOAL)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="two finite numbers"):
        env.step(np.array(action))


def test_full_speed_reaches_the_observation_box_corner():
    env = PointRobotEnv(goal=GOAL, episode_length=7)
    _, observations = _episode(env, lambda _: np.array([0.1, -0.1]))
    assert len(observations) == 7
    assert observations[-1].tolist() == pytest.approx([0.7, -0.7])
    assert all(o in env.observation_space for o in observations)


def test_sparse_reward_is_one_within_the_radius():
    env = make_family("PointRobot").make_env({"goal": GOAL})
    rewards, observations = _episode(env, _greedy(np.array(GOAL)))
    distances = [math.dist(o, GOAL) for o in observations]
    # Greedy: x stops at 0.28 after 3 steps, y climbs 0.1 per step: within 0.2 from step 8 on.
    assert rewards == [0.0] * 7 + [1.0] * 13
    assert [d <= 0.2 for d in distances] == [r == 1.0 for r in rewards]
    wide = PointRobotEnv(goal=GOAL, goal_radius=0.5)
    assert _episode(wide, _greedy(np.array(GOAL)))[0] == [0.0] * 4 + [1.0] * 16


def test_dense_reward_is_minus_the_distance():
    env = make_family("PointRobot", reward_type="dense").make_env({"goal": GOAL})
    rewards, observations = _episode(env, lambda _: np.array([0.03, 0.07]))
    expected = [-math.hypot(0.03 * t - GOAL[0], 0.07 * t - GOAL[1]) for t in range(1, 21)]
    assert rewards == pytest.approx(expected, abs=1e-6)
    assert all(isinstance(r, float) for r in rewards)


def test_episode_length_is_a_family_kwarg():
    family = make_family("PointRobot", episode_length=35)
    assert family.episode_length == 35
    rewards, _ = _episode(family.make_env({"goal": GOAL}), lambda _: np.zeros(2))
    assert len(rewards) == 35 and sum(rewards) == 0.0
    assert family.make_env({"goal": GOAL}).observation_space.high.tolist() == [3.5, 3.5]


# --------------------------------------------------------------------------- optimal returns


def _best_on_a_lattice(family, goal: np.ndarray, dense: bool) -> float:
    """The best return over every action sequence with coordinates in {-0.1, -0.05, ..., 0.1}:
    25 actions a step, 25**L sequences, searched exactly by dynamic programming over the cells
    (multiples of 0.05) they reach."""
    n = 2 * 2 * family.episode_length + 1  # cells -2L..2L per axis, in units of 0.05
    cells = 0.05 * (np.arange(n) - n // 2)
    distance = np.hypot(cells[:, None] - goal[0], cells[None, :] - goal[1])  # (n, n)
    step_reward = -distance if dense else (distance <= family.goal_radius).astype(float)
    best = np.full((n, n), -np.inf)
    best[n // 2, n // 2] = 0.0
    for _ in range(family.episode_length):
        padded = np.pad(best, 2, constant_values=-np.inf)
        shifted = [
            padded[2 + i : 2 + i + n, 2 + j : 2 + j + n] for i in range(-2, 3) for j in range(-2, 3)
        ]
        best = np.max(shifted, axis=0) + step_reward
    return float(best.max())


@pytest.mark.parametrize("reward_type", ["sparse", "dense"])
def test_optimal_return_is_reached_by_greedy_and_beaten_by_no_search(reward_type):
    family = make_family("PointRobot", reward_type=reward_type)
    matches = 0
    for task in family.split(0).test:
        goal = np.array(task["goal"])
        optimal = family.optimal_return(task)
        rewards, _ = _episode(family.make_env(task), _greedy(goal))
        assert sum(rewards) == pytest.approx(optimal, abs=1e-6)
        best = _best_on_a_lattice(family, goal, reward_type == "dense")
        assert best <= optimal + 1e-9
        matches += best == optimal
        if reward_type == "sparse":
            first = rewards.index(1.0) + 1
            assert first == family.steps_to_goal(task) and optimal == 21 - first
    if reward_type == "sparse":  # the lattice search often finds the optimum itself
        assert matches >= 4


def test_fastest_way_is_not_the_straight_line():
    """At angle 0.9 the straight line at full speed (0.1 / sin(0.9) per step) needs 7 steps to
    come within 0.2; moving both coordinates at full speed gets there in 6."""
    family = make_family("PointRobot")
    task = _goal(0.9)
    goal = np.array(task["goal"])
    speed = MAX_STEP / np.abs(goal).max()  # along the line, as fast as the clip allows

    def straight_line(observation):
        step = goal - observation
        return step * min(1.0, speed / np.linalg.norm(step))

    straight, _ = _episode(family.make_env(task), straight_line)
    assert straight.index(1.0) + 1 == 7 and sum(straight) == 14
    assert family.steps_to_goal(task) == 6 and family.optimal_return(task) == 15.0


@pytest.mark.parametrize(
    "kwargs, goal, steps",
    [
        ({}, [0.0, 1.0], 8),  # straight up: 0.8 to travel
        ({"goal_radius": 1.5}, [0.0, 1.0], 1),  # the origin is already inside
        ({"episode_length": 5}, [0.0, 1.0], None),  # too far for 5 steps: return 0
        ({"goal_radius": 0.05}, [1.0, 0.0], 10),
    ],
)
def test_steps_to_goal(kwargs, goal, steps):
    family = make_family("PointRobot", **kwargs)
    assert family.steps_to_goal({"goal": goal}) == steps
    expected = 0.0 if steps is None else family.episode_length - steps + 1
    assert family.optimal_return({"goal": goal}) == expected


# --------------------------------------------------------------------------- random returns


def _monte_carlo(family, goal: np.ndarray, episodes: int, seed: int) -> np.ndarray:
    """Returns of ``episodes`` uniformly random episodes, vectorised: (episodes,)."""
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-MAX_STEP, MAX_STEP, size=(episodes, family.episode_length, 2))
    distance = np.linalg.norm(np.cumsum(actions, axis=1) - goal, axis=-1)  # (episodes, L)
    if family.reward_type == "dense":
        return -distance.sum(1)
    return (distance <= family.goal_radius).sum(1).astype(float)


def test_monte_carlo_helper_is_the_env():
    family = make_family("PointRobot", reward_type="dense")
    env = family.make_env({"goal": GOAL})
    actions = np.random.default_rng(0).uniform(-MAX_STEP, MAX_STEP, size=(20, 2))
    remaining = iter(actions)
    rewards, _ = _episode(env, lambda _: next(remaining))
    expected = -np.linalg.norm(np.cumsum(actions, axis=0) - GOAL, axis=-1)
    assert rewards == pytest.approx(expected.tolist(), abs=1e-12)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"reward_type": "dense"},
        {"reward_type": "sparse", "goal_radius": 0.5},
        {"reward_type": "sparse", "goal_radius": 0.3, "episode_length": 40},
        {"reward_type": "dense", "episode_length": 5},
    ],
    ids=str,
)
def test_random_return_matches_monte_carlo(kwargs):
    family = make_family("PointRobot", **kwargs)
    for i, task in enumerate([_goal(0.4), {"goal": GOAL}]):
        returns = _monte_carlo(family, np.array(task["goal"]), 50_000, seed=i)
        stderr = returns.std() / math.sqrt(len(returns))
        estimate = family.random_return(task)
        assert abs(returns.mean() - estimate) < 4 * stderr, (
            returns.mean(),
            estimate,
            stderr,
        )
        assert estimate < family.optimal_return(task)
        assert family.random_return(task) == estimate  # deterministic


def test_random_rollouts_never_beat_the_optimum():
    for reward_type in ("sparse", "dense"):
        family = make_family("PointRobot", reward_type=reward_type, goal_radius=0.5)
        for task in family.split(1).test[:4]:
            returns = _monte_carlo(family, np.array(task["goal"]), 20_000, seed=0)
            assert returns.max() <= family.optimal_return(task) + 1e-9


def test_default_sparse_random_return_is_small_but_not_zero():
    family = make_family("PointRobot")
    value = family.random_return({"goal": GOAL})
    assert 1e-4 < value < 1e-2  # uniformly random actions rarely come within 0.2 of the goal


# --------------------------------------------------------------------------- tasks and errors


def test_sampled_goals_cover_the_upper_half_circle():
    family = make_family("PointRobot")
    split = family.split(0, num_train=2000)
    goals = np.array([t["goal"] for t in split.train])
    assert np.allclose(np.hypot(goals[:, 0], goals[:, 1]), 1.0) and (goals[:, 1] >= 0).all()
    angles = np.arctan2(goals[:, 1], goals[:, 0])
    assert np.histogram(angles, bins=4, range=(0, math.pi))[0].min() > 400  # uniform in angle
    assert family.all_tasks() is None


def _one_line_task_error(call, *words: str) -> None:
    refused_in_one_line(call, *words, error=TaskError)


@pytest.mark.parametrize(
    "task, words",
    [
        ({"goal": [0.0, -1.0]}, ("upper half of the unit circle", "[0, pi]")),
        ({"goal": [0.5, 0.5]}, ("upper half of the unit circle",)),
        ({"goal": [2.0, 0.0]}, ("upper half of the unit circle",)),
        ({"goal": [float("nan"), 1.0]}, ("two finite numbers",)),
        ({"goal": [0.0, float("inf")]}, ("two finite numbers",)),
        ({"goal": [True, 0.0]}, ("two finite numbers",)),
        ({"goal": "up"}, ("two finite numbers",)),
        ({"goal": [1.0]}, ("two finite numbers",)),
        ({"angle": 1.0}, ("PointRobot task must be",)),
        ({"goal": [0.0, 1.0], "radius": 1}, ("PointRobot task must be",)),
    ],
    ids=str,
)
def test_bad_task_refused_in_one_line(task, words):
    family = make_family("PointRobot")
    for method in (family.validate_task, family.make_env, family.optimal_return):
        _one_line_task_error(lambda m=method: m(task), *words)
    _one_line_task_error(lambda: family.random_return(task), *words)


def test_goals_written_by_hand_and_numpy_values_are_accepted():
    family = make_family("PointRobot")
    assert family.validate_task({"goal": [0.6, 0.8]}) == {"goal": [0.6, 0.8]}
    task = family.validate_task({"goal": np.array([1.0, 0.0])})
    assert task == {"goal": [1.0, 0.0]} and type(task["goal"][0]) is float
    assert family.validate_task({"goal": (np.float32(0.0), 1)}) == {"goal": [0.0, 1.0]}
    assert family.validate_task({"goal": [0.7071068, 0.7071068]})["goal"] == [0.7071068] * 2


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"episode_length": 0}, ("episode_length", "integer >= 1")),
        ({"episode_length": 2.5}, ("episode_length",)),
        ({"goal_radius": 0}, ("goal_radius", "positive")),
        ({"goal_radius": -0.1}, ("goal_radius",)),
        ({"goal_radius": float("nan")}, ("goal_radius",)),
        ({"goal_radius": "0.2"}, ("goal_radius",)),
        ({"reward_type": "shaped"}, ("reward_type", "'sparse' or 'dense'")),
        ({"reward_type": None}, ("reward_type",)),
    ],
    ids=str,
)
def test_bad_kwargs_refused_in_one_line(kwargs, words):
    _one_line_task_error(lambda: make_family("PointRobot", **kwargs), *words)
    _one_line_task_error(lambda: gym.make("PointRobot-v0", **kwargs), *words)


def test_bad_gym_make_goal_refused_in_one_line():
    _one_line_task_error(lambda: gym.make("PointRobot-v0", goal=(0.0, np.nan)), "finite")
    _one_line_task_error(lambda: make_family("PointRobot", bogus=1), "bogus")
