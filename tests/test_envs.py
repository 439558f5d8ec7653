"""Task families: env API conformance, task definitions, splits, reference returns, errors."""

from __future__ import annotations

import copy
import importlib.util
import os
import subprocess
import warnings

import gymnasium as gym
import numpy as np
import pytest
import yaml
from gymnasium.envs.registration import registry
from gymnasium.utils.env_checker import check_env

import envs
from ad.config import config_from_dict
from ad.data.histories import read_history
from ad.data.manifest import load_manifest
from ad.errors import user_errors
from envs import DarkRoom, make_family
from tests.factories import ROOT, SCRIPTS, refused_in_one_line

ENV_IDS = sorted(
    spec.id
    for spec in registry.values()
    if isinstance(spec.entry_point, str) and spec.entry_point.startswith("envs.")
)
# The families defined in envs/ (other test modules may register toy families of their own).
FAMILIES = [n for n in envs.family_names() if type(make_family(n)).__module__.startswith("envs.")]
# HalfCheetahVel makes envs only with the mujoco extra (tests/test_halfcheetah_vel.py without it).
if importlib.util.find_spec("mujoco") is None:
    FAMILIES.remove("HalfCheetahVel")
    ENV_IDS.remove("HalfCheetahVel-v0")
STOCHASTIC_ENV_IDS = {"DarkKeyToDoor-v0", "Bandit-v0"}  # random start cell / Bernoulli rewards
UP, DOWN, LEFT, RIGHT, NOOP = 1, 2, 3, 4, 0  # Dark Room action ids
TURN_RIGHT, FORWARD = 1, 2  # MiniGrid action ids


def test_every_family_has_a_registered_env_id():
    assert {
        "DarkRoom",
        "DarkRoomHard",
        "DarkRoomPixels",
        "DarkKeyToDoor",
        "Bandit",
        "MiniGridEmpty",
        "PointRobot",
    } <= set(FAMILIES)
    for name in FAMILIES:
        family = make_family(name)
        assert family.env_id in ENV_IDS
        task = family.split(0).test[0]
        assert type(gym.make(family.env_id).unwrapped) is type(family.make_env(task))


# --------------------------------------------------------------------------- API conformance


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_check_env_via_gym_make(env_id):
    env = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning fails the test
        # except that of MuJoCo's unbounded observations (gymnasium's own HalfCheetah has them)
        warnings.filterwarnings("ignore", ".*A Box observation space m.*infinity")
        check_env(env.unwrapped)
        env.reset(seed=0)  # the wrapped env runs gymnasium's passive checker on every call
        for _ in range(30):
            if any(env.step(env.action_space.sample())[2:4]):
                env.reset()


@pytest.mark.parametrize("name", FAMILIES)
def test_check_env_via_family(name):
    family = make_family(name)
    for task in family.split(0).test[:2]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            warnings.filterwarnings("ignore", ".*A Box observation space m.*infinity")  # MuJoCo
            check_env(family.make_env(task), skip_render_check=True)  # no spec: no render modes


def _rollout(env: gym.Env, env_seed: int, action_seed: int, steps: int = 200) -> list:
    env.action_space.seed(action_seed)
    observation, _ = env.reset(seed=env_seed)
    trajectory = [np.asarray(observation).tobytes()]
    for _ in range(steps):
        action = env.action_space.sample()
        observation, reward, terminated, truncated, _ = env.step(action)
        trajectory.append(
            (np.asarray(observation).tobytes(), np.asarray(action).tobytes(), reward, terminated)
        )
        if terminated or truncated:
            observation, _ = env.reset()  # no seed: continues the env's own stream
            trajectory.append(("reset", np.asarray(observation).tobytes()))
    return trajectory


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_trajectory(env_id):
    first = _rollout(gym.make(env_id), env_seed=5, action_seed=7)
    assert first == _rollout(gym.make(env_id), env_seed=5, action_seed=7)
    assert first != _rollout(gym.make(env_id), env_seed=5, action_seed=8)
    if env_id in STOCHASTIC_ENV_IDS:
        assert first != _rollout(gym.make(env_id), env_seed=6, action_seed=7)


# --------------------------------------------------------------------------- task definitions


def _walk(source, target) -> list[int]:
    """Dark Room actions from cell ``source`` to cell ``target`` (x first, then y)."""
    dx, dy = target[0] - source[0], target[1] - source[1]
    return [RIGHT if dx > 0 else LEFT] * abs(dx) + [DOWN if dy > 0 else UP] * abs(dy)


def _play(env: gym.Env, actions: list[int], pad: int = NOOP) -> tuple[float, list]:
    """Play ``actions`` then ``pad`` until the episode ends; (return, per-step records)."""
    total, records, i = 0.0, [], 0
    while True:
        action = actions[i] if i < len(actions) else pad
        observation, reward, terminated, truncated, _ = env.step(action)
        total += reward
        records.append((list(np.asarray(observation).ravel()), reward, terminated, truncated))
        i += 1
        if terminated or truncated:
            return total, records


def _expert_actions(name: str, task: dict, observation) -> list[int]:
    """A shortest route to the reward(s) of ``task`` from the reset ``observation``."""
    if name == "DarkRoomPixels":  # a frame: the lit cell is the centre
        return _walk(make_family(name).cell_of(observation), task["goal"]) or [NOOP]
    if name in ("DarkRoom", "DarkRoomHard"):
        centre = [int(v) for v in observation]
        return _walk(centre, task["goal"]) or [NOOP]
    if name == "DarkKeyToDoor":
        start = [int(v) for v in observation]
        return (_walk(start, task["key"]) or [NOOP]) + (_walk(task["key"], task["door"]) or [NOOP])
    if name == "MiniGridEmpty":  # start (1, 1) facing right: along x, turn right, along y
        gx, gy = task["goal"]
        return [FORWARD] * (gx - 1) + ([TURN_RIGHT] + [FORWARD] * (gy - 1) if gy > 1 else [])
    if name == "Bandit":
        return [int(np.argmax(task["means"]))]
    if name == "PointRobot":  # each coordinate at full speed toward the goal, a whole episode
        position, goal, actions = np.zeros(2), np.asarray(task["goal"]), []
        for _ in range(20):
            actions.append(np.clip(goal - position, -0.1, 0.1))
            position = position + actions[-1]
        return actions
    raise AssertionError(f"no expert for {name}")


# HalfCheetahVel has no known optimal return (tests/test_halfcheetah_vel.py checks its task).
@pytest.mark.parametrize("name", [n for n in FAMILIES if n != "HalfCheetahVel"])
def test_task_unchanged_across_resets(name):
    family = make_family(name)
    task = family.split(0).test[0]
    if name == "Bandit":  # deterministic arms, so the behaviour shows the task
        task = {"means": [0.0] * 9 + [1.0]}
    env = family.make_env(task)
    for i in range(50):
        observation, _ = env.reset(seed=i if i % 2 else None)
        ret, _ = _play(env, _expert_actions(name, task, observation))
        assert ret == pytest.approx(family.optimal_return(task)), f"reset {i}"
        if name == "MiniGridEmpty":  # the goal is re-placed by _gen_grid on every reset
            assert env.unwrapped.grid.get(*task["goal"]).type == "goal"


@pytest.mark.parametrize("goal", [(4, 4), (0, 0), (5, 7), (8, 4), (4, 3)])
def test_darkroom_walk_to_goal_return(goal):
    family = make_family("DarkRoom")
    env = family.make_env({"goal": list(goal)})
    centre, _ = env.reset(seed=0)
    distance = abs(goal[0] - 4) + abs(goal[1] - 4)
    ret, records = _play(env, _walk(centre, goal) or [NOOP])
    assert ret == (20 if distance == 0 else 21 - distance) == family.optimal_return({"goal": goal})
    assert len(records) == 20 and records[-1][3] and not any(r[2] for r in records)


def test_darkroom_hard_rewards_exactly_once():
    env = make_family("DarkRoomHard").make_env({"goal": [0, 0]})
    centre, _ = env.reset(seed=0)
    # Reach the goal (16 steps), step off and back on: still one reward.
    ret, records = _play(env, _walk(centre, (0, 0)) + [RIGHT, LEFT])
    assert ret == 1.0 and records[15][1] == 1.0 and len(records) == 20


def _key_door_env(key, door):
    """A 9x9 Key-to-Door env reset (seeded) onto a start cell that is neither key nor door."""
    env = make_family("DarkKeyToDoor").make_env({"key": list(key), "door": list(door)})
    for seed in range(100):
        start = [int(v) for v in env.reset(seed=seed)[0]]
        if start not in (list(key), list(door)):
            return env, start
    raise AssertionError("the start cell is not random")


def _rewards_at(records: list) -> dict[int, float]:
    """{step index: reward} of the rewarded steps of one episode."""
    return {i: r[1] for i, r in enumerate(records) if r[1]}


def _full_length_never_terminated(records: list) -> bool:
    """The paper's fixed episode length: 50 steps, truncated at the last, never terminated."""
    return len(records) == 50 and records[-1][3] and not any(r[2] for r in records)


def test_keytodoor_key_then_door_gives_2_and_runs_to_50_steps():
    env, start = _key_door_env((2, 2), (6, 5))
    to_key, to_door = _walk(start, (2, 2)), _walk((2, 2), (6, 5))
    # After opening the door, walk back over the key and onto the door again: nothing more.
    again = _walk((6, 5), (2, 2)) + _walk((2, 2), (6, 5))
    ret, records = _play(env, to_key + to_door + again)
    assert ret == 2.0 and _full_length_never_terminated(records)
    assert _rewards_at(records) == {len(to_key) - 1: 1.0, len(to_key) + len(to_door) - 1: 1.0}
    assert not any(r[3] for r in records[:-1])  # truncated only at the last step


def test_keytodoor_door_before_key_gives_nothing():
    # The key sits in a corner, so the x-then-y route from the start to the door avoids it.
    env, start = _key_door_env((0, 0), (6, 5))
    to_door = _walk(start, (6, 5))
    to_key = _walk((6, 5), (0, 0))
    # Stand on the door without the key, then visit the key and return to the door.
    ret, records = _play(env, to_door + [NOOP] + to_key + _walk((0, 0), (6, 5)))
    key_step = len(to_door) + len(to_key)
    assert _rewards_at(records) == {key_step: 1.0, key_step + len(to_key): 1.0}
    assert ret == 2.0 and _full_length_never_terminated(records)
    env, start = _key_door_env((0, 0), (6, 5))
    ret, records = _play(env, to_door)  # never the key: nothing, truncated at 50
    assert ret == 0.0 and _full_length_never_terminated(records)


def test_keytodoor_key_equal_door_needs_a_second_step():
    env, start = _key_door_env((3, 3), (3, 3))
    to_key = _walk(start, (3, 3))
    ret, records = _play(env, to_key + [NOOP])  # then no-ops on that cell until step 50
    assert ret == 2.0 and _full_length_never_terminated(records)
    assert _rewards_at(records) == {len(to_key) - 1: 1.0, len(to_key): 1.0}


def test_keytodoor_start_is_random_and_seeded():
    env = make_family("DarkKeyToDoor").make_env({"key": [0, 0], "door": [8, 8]})
    starts = [tuple(env.reset(seed=s)[0]) for s in range(200)]
    assert len(set(starts)) > 60  # 81 cells, uniform
    assert starts == [tuple(env.reset(seed=s)[0]) for s in range(200)]


def test_keytodoor_observe_return_adds_the_return_so_far_and_only_then_is_recorded():
    task = {"key": [2, 2], "door": [6, 5]}
    env = make_family("DarkKeyToDoor", observe_return=True).make_env(task)
    assert env.observation_space == gym.spaces.MultiDiscrete([9, 9, 3])
    check_env(env, skip_render_check=True)
    start = [int(v) for v in env.reset(seed=3)[0][:2]]
    assert start not in (task["key"], task["door"])
    actions = _walk(start, (2, 2)) + _walk((2, 2), (6, 5)) + [LEFT, RIGHT]
    ret, records = _play(env, actions)
    assert ret == 2.0  # each step's observation carries the return up to and including it:
    assert [r[0][2] for r in records] == list(np.cumsum([r[1] for r in records]))
    plain = make_family("DarkKeyToDoor").make_env(task)  # the same walk without the option
    plain.reset(seed=3)
    assert [r[0][:2] for r in records] == [r[0] for r in _play(plain, actions)[1]]
    assert plain.observation_space == gym.spaces.MultiDiscrete([9, 9])
    # Recorded in the family's kwargs only when given: histories made before the option keep
    # their kwargs, and so their fingerprint.
    assert make_family("DarkKeyToDoor").kwargs == {"size": 9, "episode_length": 50}
    assert make_family("DarkKeyToDoor", observe_return=False).kwargs["observe_return"] is False


def test_bandit_reward_frequencies():
    means = [0.1, 0.5, 0.9, 0.0, 1.0]
    env = make_family("Bandit", num_arms=5).make_env({"means": means})
    env.reset(seed=0)
    for arm, mean in enumerate(means):
        rewards = []
        for _ in range(2000):
            observation, reward, terminated, truncated, _ = env.step(arm)
            assert (observation, terminated, truncated) == (0, True, False)
            rewards.append(reward)
            env.reset()
        assert set(rewards) <= {0.0, 1.0}
        assert np.mean(rewards) == pytest.approx(mean, abs=0.05)


def test_minigrid_reaching_the_goal():
    family = make_family("MiniGridEmpty")
    env = family.make_env({"goal": [3, 4]})
    observation, _ = env.reset(seed=0)
    assert observation.shape == (7, 7, 3) and observation.dtype == np.uint8
    ret, records = _play(env, [FORWARD, FORWARD, TURN_RIGHT, FORWARD, FORWARD, FORWARD])
    assert len(records) == 6 and records[-1][2] and ret == pytest.approx(1 - 0.9 * 6 / 50)
    assert ret == pytest.approx(family.optimal_return({"goal": [3, 4]}))
    env.reset()
    ret, records = _play(env, [TURN_RIGHT, TURN_RIGHT, FORWARD], pad=FORWARD)  # into the wall
    assert ret == 0.0 and len(records) == 50 and records[-1][3]


def test_minigrid_goal_invisible_unless_asked():
    goal_idx = 8  # minigrid OBJECT_TO_IDX["goal"]
    for visible in (False, True):
        env = make_family("MiniGridEmpty", visible_goal=visible).make_env({"goal": [3, 1]})
        seen = [(env.reset(seed=0)[0][..., 0] == goal_idx).any()]
        env.action_space.seed(0)
        for _ in range(100):
            observation, _, terminated, truncated, _ = env.step(env.action_space.sample())
            seen.append((observation[..., 0] == goal_idx).any())
            if terminated or truncated:
                seen.append((env.reset()[0][..., 0] == goal_idx).any())
        assert any(seen) == visible  # the goal is in view right at the start


# --------------------------------------------------------------------------- reference returns


def _clone(env: gym.Env) -> gym.Env:
    # Share the RNG and spaces with the copy: 10x cheaper, and steps here draw no randomness.
    rng = env.unwrapped._np_random
    shared = {id(x): x for x in (rng, env.observation_space, env.action_space)}
    return copy.deepcopy(env, shared)


def _enumerate(env: gym.Env) -> tuple[float, float]:
    """(mean, max) episode return over every action sequence from ``env``'s current state.

    The mean weights each sequence equally: the expected return of the uniformly random policy.
    """
    means, maxima = [], []
    for action in range(env.action_space.n):
        child = _clone(env)
        _, reward, terminated, truncated, _ = child.step(action)
        mean, best = (0.0, 0.0) if terminated or truncated else _enumerate(child)
        means.append(reward + mean)
        maxima.append(reward + best)
    return float(np.mean(means)), max(maxima)


@pytest.mark.parametrize("name", ["DarkRoom", "DarkRoomHard"])
@pytest.mark.parametrize("goal", [(2, 2), (0, 0), (1, 3)])
def test_darkroom_returns_match_exhaustive_enumeration(name, goal):
    family = make_family(name, size=5, episode_length=6)  # 5**6 action sequences
    env = family.make_env({"goal": list(goal)})
    env.reset(seed=0)
    mean, best = _enumerate(env)
    assert family.random_return({"goal": list(goal)}) == pytest.approx(mean, rel=1e-9)
    assert family.optimal_return({"goal": list(goal)}) == pytest.approx(best)


@pytest.mark.parametrize("key, door", [((0, 0), (1, 1)), ((1, 1), (1, 1)), ((2, 2), (0, 0))])
def test_keytodoor_returns_match_enumeration_over_starts(key, door):
    family = make_family("DarkKeyToDoor", size=3, episode_length=4)
    task = {"key": list(key), "door": list(door)}
    env = family.make_env(task)
    results = {}
    for seed in range(500):  # find a seeded reset onto every start cell
        start = tuple(int(v) for v in env.reset(seed=seed)[0])
        if start not in results:
            results[start] = _enumerate(env)
    assert len(results) == 9
    assert family.random_return(task) == pytest.approx(np.mean([m for m, _ in results.values()]))
    assert family.optimal_return(task) == pytest.approx(np.mean([b for _, b in results.values()]))


def test_keytodoor_random_return_matches_monte_carlo():
    family = make_family("DarkKeyToDoor")
    task = {"key": [6, 1], "door": [2, 4]}
    env = family.make_env(task)
    rng = np.random.default_rng(0)
    returns = []
    for episode in range(1500):
        env.reset(seed=episode)
        ret, _ = _play(env, list(rng.integers(0, 5, size=50)))
        returns.append(ret)
    stderr = np.std(returns) / np.sqrt(len(returns))
    assert abs(np.mean(returns) - family.random_return(task)) < 4 * stderr
    assert family.optimal_return(task) == 2.0


@pytest.mark.parametrize("goal", [(2, 1), (3, 3), (1, 3), (3, 2)])
def test_minigrid_returns_match_exhaustive_enumeration(goal):
    family = make_family("MiniGridEmpty", size=5, episode_length=6)  # 3x3 interior, 3**6 sequences
    env = family.make_env({"goal": list(goal)})
    env.reset(seed=0)
    mean, best = _enumerate(env)
    assert family.random_return({"goal": list(goal)}) == pytest.approx(mean, rel=1e-9)
    assert family.optimal_return({"goal": list(goal)}) == pytest.approx(best)


def test_minigrid_unreachable_goal_returns_zero():
    family = make_family("MiniGridEmpty", size=7, episode_length=5)
    assert family.optimal_return({"goal": [5, 5]}) == 0.0  # needs 9 steps
    assert family.random_return({"goal": [5, 5]}) == 0.0
    assert family.optimal_return({"goal": [4, 2]}) == pytest.approx(1 - 0.9 * 5 / 5)  # last step


ORACLE_FAMILIES = {  # small enough to try every task (every start cell for Key-to-Door)
    "DarkRoom": {"size": 5, "episode_length": 6},
    "DarkRoomHard": {"size": 5, "episode_length": 6},
    "DarkRoomPixels": {"size": 5, "episode_length": 6},
    "DarkKeyToDoor": {"size": 3, "episode_length": 4},
    "MiniGridEmpty": {"size": 5, "episode_length": 6},
    "PointRobot": {},
    "PointRobot-dense": {"reward_type": "dense"},
}


def _oracle_return(family, task, env) -> float:
    """The return of one episode from ``env``'s current state, acting with the family's oracle."""
    total = 0.0
    while True:
        _, reward, terminated, truncated, _ = env.step(family.optimal_action(env, task))
        total += reward
        if terminated or truncated:
            return total


@pytest.mark.parametrize("name", sorted(ORACLE_FAMILIES))
def test_acting_with_the_oracle_earns_the_optimal_return_exactly(name):
    family = make_family(name.removesuffix("-dense"), **ORACLE_FAMILIES[name])
    assert envs.has_oracle(family)
    tasks = family.all_tasks() or family.sample_tasks(np.random.default_rng(0), 16, "test")
    for task in tasks:
        env = family.make_env(task)
        returns = {}
        for seed in range(200):  # Key-to-Door: a seeded reset onto every start cell
            start = tuple(np.asarray(env.reset(seed=seed)[0]).ravel().tolist())
            returns.setdefault(start, _oracle_return(family, task, env))
        assert np.mean(list(returns.values())) == family.optimal_return(task), task


def test_the_bandit_oracle_pulls_the_best_arm():
    family = make_family("Bandit")
    for task in family.sample_tasks(np.random.default_rng(0), 50, "test"):
        arm = family.optimal_action(family.make_env(task), task)
        assert task["means"][arm] == family.optimal_return(task)


def test_bandit_returns_exact():
    family = make_family("Bandit", num_arms=4)
    task = {"means": [0.2, 0.7, 0.1, 0.4]}
    assert family.optimal_return(task) == pytest.approx(0.7)
    assert family.random_return(task) == pytest.approx(0.35)
    env = family.make_env(task)
    env.reset(seed=1)
    pulls = [env.step(int(a))[1] for a in np.random.default_rng(1).integers(0, 4, size=4000)]
    assert np.mean(pulls) == pytest.approx(0.35, abs=0.03)


# --------------------------------------------------------------------------- errors


def _one_line_user_error(call, *words: str) -> None:
    refused_in_one_line(call, *words, error=user_errors())  # UserError, or TaskError from envs


class DropsKwargs(envs.DarkRoom):
    """A family whose constructor forgets to pass its keyword arguments on (issue 12)."""

    name = "DropsKwargs"

    def __init__(self, size=9):
        super().__init__()


@pytest.mark.parametrize(
    "name, kwargs, words",
    [
        pytest.param("NoSuchFamily", {}, ("unknown task family", "DarkRoom"), id="unknown-name"),
        pytest.param("no_such_module_xyz:Family", {},
                     ("cannot import", "no_such_module_xyz", "PYTHONPATH"), id="missing-module"),
        pytest.param(":Family", {}, ("cannot import",), id="empty-module"),
        pytest.param("envs.base:NoSuchFactory", {}, ("NoSuchFactory",), id="missing-factory"),
        pytest.param("envs.base:task_key", {"task": {}}, ("did not return a TaskFamily",),
                     id="not-a-family"),
        pytest.param("DarkRoom", {"bogus": 1}, ("bogus",), id="unknown-kwarg"),
        pytest.param("DarkRoom", {"size": 1}, ("size",), id="darkroom-size"),
        pytest.param("DarkKeyToDoor", {"episode_length": 0}, ("episode_length",),
                     id="keytodoor-episode-length"),
        pytest.param("DarkKeyToDoor", {"observe_return": "yes"},
                     ("observe_return must be true or false",), id="keytodoor-observe-return"),
        pytest.param("Bandit", {"num_arms": 1}, ("num_arms",), id="bandit-num-arms"),
        pytest.param("Bandit", {"favour_prob": 2}, ("favour_prob",), id="bandit-favour-prob"),
        pytest.param("MiniGridEmpty", {"size": 3}, ("size",), id="minigrid-size"),
        pytest.param("MiniGridEmpty", {"visible_goal": "yes"}, ("visible_goal",),
                     id="minigrid-visible-goal"),
        pytest.param("PointRobot", {"goal_radius": 0}, ("goal_radius",),
                     id="pointrobot-goal-radius"),
        pytest.param("PointRobot", {"reward_type": "shaped"}, ("reward_type",),
                     id="pointrobot-reward-type"),
        # issue 12: what the config gave must reach the family's record
        pytest.param(f"{__name__}:DropsKwargs", {"size": 5},
                     ("size=5", "super().__init__(**kwargs)"), id="drops-its-kwargs"),
    ],
)  # fmt: skip
def test_bad_family_is_a_one_line_task_error(name, kwargs, words):
    refused_in_one_line(lambda: make_family(name, **kwargs), *words, error=envs.TaskError)


@pytest.mark.parametrize(
    "name, task, words",
    [
        ("DarkRoom", {"goal": [9, 0]}, ("outside the 9x9 grid",)),
        ("DarkRoom", {"goal": [-1, 0]}, ("outside",)),
        ("DarkRoom", {"goal": [1]}, ("goal",)),
        ("DarkRoom", "not a task", ("goal",)),
        ("DarkRoomHard", {"goal": [1.5, 2]}, ("integers",)),
        ("DarkKeyToDoor", {"key": [0, 0]}, ("door",)),
        ("DarkKeyToDoor", {"key": [0, 0], "door": [9, 9]}, ("door", "outside")),
        ("DarkKeyToDoor", {"key": [True, 0], "door": [1, 1]}, ("key",)),
        ("Bandit", {"means": [0.5] * 9}, ("num_arms=10", "9 means")),
        ("Bandit", {"means": [1.5] + [0.5] * 9}, ("[0, 1]",)),
        ("Bandit", {"means": "high"}, ("means",)),
        ("MiniGridEmpty", {"goal": [0, 3]}, ("interior",)),
        ("MiniGridEmpty", {"goal": [6, 6]}, ("interior",)),
        ("MiniGridEmpty", {"goal": [1, 1]}, ("start cell",)),
        ("PointRobot", {"goal": [0.0, -1.0]}, ("upper half of the unit circle",)),
        ("PointRobot", {"goal": [0.5, None]}, ("goal", "two finite numbers")),
    ],
)
def test_bad_task_is_a_one_line_user_error(name, task, words):
    family = make_family(name)
    for method in (family.validate_task, family.make_env, family.optimal_return):
        _one_line_user_error(lambda m=method: m(task), *words)


@pytest.mark.parametrize(
    "env_id, kwargs, word",
    [
        ("DarkRoom-v0", {"goal": (20, 3)}, "outside"),
        ("DarkKeyToDoor-v0", {"key": (9, 0)}, "outside"),
        ("Bandit-v0", {"means": [2.0, 0.1]}, "[0, 1]"),
        ("ADMiniGridEmpty-v0", {"goal": (0, 0)}, "interior"),
        ("PointRobot-v0", {"goal": (0.0, float("nan"))}, "finite"),
    ],
)
def test_bad_gym_make_task_is_a_one_line_user_error(env_id, kwargs, word):
    _one_line_user_error(lambda: gym.make(env_id, **kwargs), word)


# Cells that are not [x, y] with two integers: wrongly typed, wrong length, non-integer.
MALFORMED_CELLS = [5, None, "12", [1], [1, 2, 3], [1.5, 2], [2, 2.0], ["a", "b"], [True, 1]]
CELL_FIELDS = {  # the cells of each grid family's task, as gym.make keywords too
    "DarkRoom": ("goal",),
    "DarkRoomHard": ("goal",),
    "DarkRoomPixels": ("goal",),
    "DarkKeyToDoor": ("key", "door"),
    "MiniGridEmpty": ("goal",),
}
MALFORMED_MEANS = [5, None, "0.5", [0.5], [0.5, "a"], [0.5, None], [[0.1, 0.2], [0.3, 0.4]]]
SIZE_KWARGS = {  # the family's size argument and its smallest valid value
    "DarkRoom": ("size", 2),
    "DarkRoomHard": ("size", 2),
    "DarkRoomPixels": ("size", 2),
    "DarkKeyToDoor": ("size", 2),
    "MiniGridEmpty": ("size", 4),
    "Bandit": ("num_arms", 2),
    "PointRobot": ("episode_length", 1),
    "HalfCheetahVel": ("episode_length", 1),
}


@pytest.mark.parametrize("cell", MALFORMED_CELLS, ids=repr)
@pytest.mark.parametrize("name", sorted(CELL_FIELDS))
def test_malformed_cell_is_a_one_line_error(name, cell):
    family = make_family(name)
    good = family.split(0).test[0]
    for field in CELL_FIELDS[name]:
        task = {**good, field: cell}
        for method in (family.validate_task, family.make_env, family.random_return):
            _one_line_user_error(lambda m=method, t=task: m(t), field, "two integers")
        _one_line_user_error(
            lambda f=field: gym.make(family.env_id, **{f: cell}), field, "two integers"
        )


@pytest.mark.parametrize("means", MALFORMED_MEANS, ids=repr)
def test_malformed_bandit_means_is_a_one_line_error(means):
    family = make_family("Bandit", num_arms=2)
    for method in (family.validate_task, family.make_env, family.random_return):
        _one_line_user_error(lambda m=method: m({"means": means}), "means")
    _one_line_user_error(lambda: gym.make("Bandit-v0", means=means), "means")


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("task", ["not a task", None, [1, 2], {}, "extra key"], ids=repr)
def test_malformed_task_mapping_is_a_one_line_error(name, task):
    family = make_family(name)
    if task == "extra key":  # a valid task plus a key the family does not know
        task = {**family.split(0).test[0], "bogus": 1}
    _one_line_user_error(lambda: family.validate_task(task), f"{name} task must be")


@pytest.mark.parametrize("value", [0, -3, 2.5, "9", True, [9]], ids=repr)
@pytest.mark.parametrize("name", FAMILIES)
def test_bad_size_is_a_one_line_error(name, value):
    field, minimum = SIZE_KWARGS[name]
    words = (field, f"integer >= {minimum}")
    _one_line_user_error(lambda: make_family(name, **{field: value}), *words)
    if name != "Bandit":  # the bandit env takes its arms from the means
        env_id = make_family(name).env_id
        _one_line_user_error(lambda: gym.make(env_id, **{field: value}), *words)
    if name in ("DarkRoom", "DarkKeyToDoor", "MiniGridEmpty"):  # DarkRoomHard shares DarkRoom's
        for length in (0, -1, 1.5):
            for make in (make_family, lambda n, **kw: gym.make(make_family(n).env_id, **kw)):
                _one_line_user_error(
                    lambda m=make, n=length: m(name, episode_length=n), "episode_length"
                )


def test_numpy_integers_are_valid_task_values():
    family = make_family("DarkKeyToDoor")
    task = {"key": np.array([1, 2]), "door": (np.int64(3), 4)}
    assert family.validate_task(task) == {"key": [1, 2], "door": [3, 4]}
    assert type(family.validate_task(task)["key"][0]) is int  # JSON-serialisable
    env = gym.make("DarkRoom-v0", goal=np.array([4, 3]), size=np.int64(9))
    env.reset(seed=0)
    assert env.step(UP)[1] == 1.0  # the centre (4, 4) is one step below the goal


# --------------------------------------------------------------------------- user families


class SmallDarkRoom(DarkRoom):
    """A family defined outside envs/, used by name as '<this module>:SmallDarkRoom'."""

    name = "SmallDarkRoom"
    default_size = 5
    default_num_test = 5


USER_MODULE = '''
import gymnasium as gym
from gymnasium import spaces

from envs.base import TaskFamily
from envs.tasks import TaskError


class LineEnv(gym.Env):
    """A line of cells; reward 1 and termination on reaching the hidden goal cell."""

    def __init__(self, goal=1, length=4):
        self.goal, self.length = goal, length
        self.observation_space = spaces.Discrete(length)
        self.action_space = spaces.Discrete(2)  # 0 left, 1 right

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos, self.t = 0, 0
        return self.pos, {}

    def step(self, action):
        self.pos = min(max(self.pos + (1 if action == 1 else -1), 0), self.length - 1)
        self.t += 1
        done = self.pos == self.goal
        return self.pos, float(done), done, not done and self.t >= self.length, {}


class Line(TaskFamily):
    """Sets neither name nor env_id: the defaults (class name, None) must do."""

    default_num_test = 1
    default_num_validation = 1

    def __init__(self, length=4):
        super().__init__(length=length)
        self.length = length

    @property
    def episode_length(self):
        return self.length

    def all_tasks(self):
        return [{"goal": g} for g in range(1, self.length)]

    def validate_task(self, task):
        if not isinstance(task, dict) or task.get("goal") not in range(1, self.length):
            raise TaskError(f"Line task must be {{'goal': 1..{self.length - 1}}}, got {task!r}")
        return dict(task)

    def make_env(self, task):
        return LineEnv(self.validate_task(task)["goal"], self.length)

    def optimal_return(self, task):
        return 1.0

    def random_return(self, task):
        return 0.0  # not used by this test


def make_line(length=4):
    return Line(length=length)
'''


def test_family_from_the_test_module_by_name():
    family = make_family(f"{__name__}:SmallDarkRoom")
    split = family.split(0)
    assert (len(split.train), len(split.validation), len(split.test)) == (12, 8, 5)
    assert split.family == f"{__name__}:SmallDarkRoom"
    assert make_family(split.family, **split.family_kwargs).split(0) == split


def test_user_family_in_own_module_from_config(tmp_path, monkeypatch):
    (tmp_path / "my_ad_families.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = config_from_dict(
        {
            "name": "line",
            "env": {"family": "my_ad_families:make_line", "family_kwargs": {"length": 5}},
        }
    )
    family = make_family(cfg.env.family, **cfg.env.family_kwargs)
    assert (family.name, family.env_id) == ("Line", None)  # the defaults of an unset name, id
    split = family.split(cfg.env.split_seed)
    assert (len(split.train), len(split.validation), len(split.test)) == (2, 1, 1)
    # What collection and evaluation do with a stored split: rebuild the family from it.
    assert make_family(split.family, **split.family_kwargs).split(0) == split
    env = family.make_env(split.test[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)
    env.reset(seed=0)
    ret, records = _play(env, [1] * split.test[0]["goal"])
    assert ret == 1.0 and records[-1][2]
    _one_line_user_error(lambda: family.make_env({"goal": 9}), "Line task")


def test_user_family_in_the_working_directory_through_the_installed_script(tmp_path):
    """``ad-collect`` finds ``./my_module.py`` as ``python -m`` would, though console scripts do
    not put the working directory on sys.path; a family without env_id gets through collection."""
    (tmp_path / "my_cwd_families.py").write_text(USER_MODULE)
    config = {
        "name": "line",
        "env": {
            "family": "my_cwd_families:make_line",
            "family_kwargs": {"length": 4},
            "num_train_tasks": 1,
            "num_test_tasks": 1,
        },
        "collect": {
            "algorithm": "PPO",
            "algorithm_kwargs": {"n_steps": 32, "batch_size": 32, "n_epochs": 1},
            "n_envs": 1,
            "total_steps": 256,
            "seeds": [0],
            "output_dir": "data",
        },
    }
    (tmp_path / "line.yaml").write_text(yaml.safe_dump(config))
    # PYTHONPATH names this checkout only (so its code runs), never tmp_path.
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [str(SCRIPTS / "ad-collect"), "--config", "line.yaml", "--workers", "1", "--no-progress"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    manifest = load_manifest(tmp_path / "data")
    assert manifest["family"] == "my_cwd_families:make_line" and manifest["env_id"] is None
    assert sorted(r["split"] for r in manifest["runs"]) == ["test", "train", "validation"]
    for run in manifest["runs"]:
        history = read_history(tmp_path / "data" / run["file"])
        assert history.num_steps == 256 and history.metadata["env_id"] is None
        # LineEnv's rule: reward 1 exactly on the steps that reach the goal and terminate.
        np.testing.assert_array_equal(history.rewards == 1.0, history.terminations)
        assert history.terminations.any()


# --------------------------------------------------------------------------- issue 12


def test_defaults_a_family_fills_in_itself_are_stored_beside_the_given_kwargs():
    """What the config gave is stored as given (a family that drops it is refused: see
    test_bad_family_is_a_one_line_task_error); defaults the family fills in itself are fine."""
    family = make_family("DarkRoom", size=5)
    assert family.split(0).family_kwargs == {"size": 5, "episode_length": 20}


def test_default_random_return_is_a_seeded_estimate():
    """Without an override, random_return comes from seeded rollouts: the same number in every
    process and instance, and close to the exact value where one is known."""
    family = DarkRoom(size=5)
    task = {"goal": [1, 2]}
    estimate = envs.TaskFamily.random_return(family, task)
    assert estimate == envs.TaskFamily.random_return(DarkRoom(size=5), task)
    exact = family.random_return(task)
    assert exact > 0 and abs(estimate - exact) < 0.1 * exact
    assert envs.TaskFamily.optimal_return(family, task) is None  # optional: unknown by default
