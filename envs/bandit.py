"""The adversarial Bernoulli bandit (Laskin et al. 2022, section 4.1)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.base import TaskFamily, check_int, check_task_fields, register_family
from envs.split import check_split_name
from envs.tasks import Task, TaskError

# Arm means of the registered ``Bandit-v0`` (best arm 9); use the family for sampled tasks.
DEFAULT_MEANS = tuple(round(0.05 + 0.1 * i, 2) for i in range(10))


def _check_means(family: str, means: Any, num_arms: int | None = None) -> list[float]:
    """The arm means as Python floats, or a one-line TaskError naming the problem."""
    ok = isinstance(means, (list, tuple, np.ndarray)) and len(means) >= 2
    ok = ok and all(
        isinstance(p, (int, float, np.integer, np.floating)) and not isinstance(p, bool)
        for p in means
    )
    if not ok:
        raise TaskError(
            f"{family} task needs 'means': a list of at least 2 numbers, got {means!r}; "
            "e.g. {'means': [0.2, 0.9]}"
        )
    values = [float(p) for p in means]
    if not all(0.0 <= p <= 1.0 for p in values):
        raise TaskError(f"{family} arm means must lie in [0, 1] (Bernoulli), got {values}")
    if num_arms is not None and len(values) != num_arms:
        raise TaskError(
            f"{family} has num_arms={num_arms} but the task has {len(values)} means; "
            "give one mean per arm or change env.family_kwargs.num_arms"
        )
    return values


class BanditEnv(gym.Env):
    """A K-armed Bernoulli bandit with one pull per episode.

    ## Description
    Pulling arm ``a`` pays 1 with probability ``means[a]`` and 0 otherwise. The means are the task:
    fixed at construction, never changed on ``reset()``. An episode is a single pull, so a learning
    history of T steps holds T trials; in-context learning happens across episodes.

    ## Action Space
    ``Discrete(K)``: the arm to pull.

    ## Observation Space
    ``Discrete(1)``: always 0 (a bandit has no state).

    ## Rewards
    Bernoulli(``means[a]``), drawn from ``self.np_random``.

    ## Termination
    Terminates after every pull (episode length 1); never truncated.

    ## Registered Configurations
    ``Bandit-v0`` (10 arms, means 0.05, 0.15, ..., 0.95).
    """

    metadata = {"render_modes": []}

    def __init__(self, means: tuple[float, ...] | list[float] = DEFAULT_MEANS) -> None:
        self.means = np.asarray(_check_means("Bandit", means), dtype=np.float64)
        self.num_arms = len(self.means)
        self.observation_space = spaces.Discrete(1)
        self.action_space = spaces.Discrete(self.num_arms)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return 0, {}

    def step(self, action):
        action = int(action)
        if not 0 <= action < self.num_arms:
            raise ValueError(f"action {action} outside Discrete({self.num_arms})")
        reward = float(self.np_random.random() < self.means[action])
        return 0, reward, True, False, {}


@register_family
class Bandit(TaskFamily):
    """Adversarial bandit tasks: the best arm's parity differs between train and test tasks.

    Generative definition of one task (arms are numbered from 0, so the odd arms are 1, 3, 5, ...):

    1. draw ``num_arms`` means i.i.d. from Uniform(0, 1);
    2. draw the parity of the best arm: the split's favoured parity (odd for ``"train"``, even for
       ``"validation"`` and ``"test"``) with probability ``favour_prob`` (0.95), the other parity otherwise;
    3. draw the best arm uniformly among the arms of that parity and swap the largest mean into
       it (the multiset of means is unchanged, only where the maximum sits).

    The split is therefore out of distribution, as in the paper: trained on "odd arms pay", tested
    on "even arms pay". Validation tasks are drawn like test tasks, so that settings chosen on
    them transfer. Each task is a sampled family member (``all_tasks()`` is None); the three
    splits come from independent seeded streams.
    """

    name = "Bandit"
    env_id = "Bandit-v0"
    default_num_test = 100
    default_num_validation = 50

    def __init__(self, num_arms: int = 10, favour_prob: float = 0.95) -> None:
        num_arms = check_int(self.name, "num_arms", num_arms, 2)
        if (
            not isinstance(favour_prob, (int, float))
            or isinstance(favour_prob, bool)
            or not 0.0 <= favour_prob <= 1.0
        ):
            raise TaskError(f"{self.name} favour_prob must be in [0, 1], got {favour_prob!r}")
        super().__init__(num_arms=num_arms, favour_prob=favour_prob)
        self.num_arms = num_arms
        self.favour_prob = float(favour_prob)

    @property
    def episode_length(self) -> int:
        return 1

    def sample_tasks(self, rng: np.random.Generator, num: int, split: str) -> list[Task]:
        """Sample ``num`` tasks of ``split`` ("train": odd best arm; "validation" and "test": even
        best arm)."""
        check_split_name(split)
        favoured = 1 if split == "train" else 0
        tasks = []
        for _ in range(num):
            means = rng.uniform(0.0, 1.0, size=self.num_arms)
            parity = favoured if rng.random() < self.favour_prob else 1 - favoured
            best = int(rng.choice(np.arange(parity, self.num_arms, 2)))
            top = int(np.argmax(means))
            means[[best, top]] = means[[top, best]]
            tasks.append({"means": [float(p) for p in means]})
        return tasks

    def validate_task(self, task: Any) -> Task:
        task = check_task_fields(self.name, task, ("means",), "{'means': [p_0, ..., p_K-1]}")
        return {"means": _check_means(self.name, task["means"], self.num_arms)}

    def make_env(self, task: Task) -> BanditEnv:
        return BanditEnv(means=self.validate_task(task)["means"])

    def optimal_return(self, task: Task) -> float:
        """Always pulling the best arm: its mean (exact)."""
        return float(max(self.validate_task(task)["means"]))

    def optimal_action(self, env: gym.Env, task: Task) -> int:
        """The arm with the highest mean (the first of equals)."""
        return int(np.argmax(task["means"]))

    def random_return(self, task: Task) -> float:
        """A uniformly random pull: the mean of the means (exact)."""
        means = self.validate_task(task)["means"]
        return float(sum(means) / len(means))
