"""The two families of our own design (examples/combination_lock.py, examples/rotated_reacher.py),
unlike every shipped one, that the derived defaults are checked on: their oracles earn the
optimal return exactly, their random returns are the random policy's, their tasks are checked,
and each config that names only the family and the source loads."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from ad.config import load_config
from envs.tasks import TaskError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CombinationLock = _example("combination_lock").CombinationLock
RotatedReacher = _example("rotated_reacher").RotatedReacher


def _returns(family, task, policy, episodes):
    env, totals = family.make_env(task), []
    for episode in range(episodes):
        env.reset(seed=episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(policy(env))
            total, done = total + reward, terminated or truncated
        totals.append(total)
    return np.asarray(totals)


@pytest.mark.parametrize("family", [CombinationLock(), RotatedReacher()], ids=lambda f: f.name)
def test_the_oracle_earns_the_optimal_return_and_random_actions_the_random_one(family):
    split = family.split(0)
    for task in split.test[:3]:
        oracle = _returns(family, task, lambda env, task=task: family.optimal_action(env, task), 2)
        assert oracle == pytest.approx(family.optimal_return(task), abs=1e-9)
        space = family.make_env(task).action_space
        space.seed(0)
        random = _returns(family, task, lambda env, space=space: space.sample(), 2000)
        se = random.std() / math.sqrt(len(random))
        assert abs(random.mean() - family.random_return(task)) < 4 * se + 1e-9
        assert family.optimal_return(task) > family.random_return(task) + 2


def test_every_code_is_a_task_and_the_splits_do_not_overlap():
    family = CombinationLock()
    assert len(family.all_tasks()) == 4**3
    split = family.split(0)
    codes = [tuple(t["code"]) for t in split.train + split.validation + split.test]
    assert len(codes) == len(set(codes)) == 64 and len(split.test) == 8


@pytest.mark.parametrize(
    ("family", "task", "words"),
    [
        (CombinationLock(), {"code": [0, 1]}, ["code", "3 buttons"]),
        (CombinationLock(), {"code": [0, 1, 4]}, ["0..3"]),
        (RotatedReacher(), {"theta": "north"}, ["theta"]),
        (RotatedReacher(), {"theta": float("nan")}, ["finite"]),
    ],
)
def test_bad_tasks_are_refused_in_one_line(family, task, words):
    with pytest.raises(TaskError) as info:
        family.validate_task(task)
    assert "\n" not in str(info.value) and all(w in str(info.value) for w in words)


@pytest.mark.parametrize("name", ["combination_lock", "rotated_reacher"])
def test_the_config_names_only_the_family_and_the_source(name):
    cfg = load_config(EXAMPLES / f"{name}.yaml")
    default = load_config(None)
    assert cfg.collect.algorithm == "PPO" and cfg.env.family.endswith(
        {"combination_lock": "CombinationLock", "rotated_reacher": "RotatedReacher"}[name]
    )
    assert cfg.model == default.model and cfg.train == default.train  # nothing tuned by hand
