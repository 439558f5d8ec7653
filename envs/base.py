"""What every task family provides and the family registry.

A *task* is the hidden part of an environment (Dark Room's goal cell, a bandit's arm means). It is
a JSON-serialisable mapping, a constructor argument of the env, and never changes on ``reset()``.
A *family* enumerates or samples its tasks, splits them deterministically into train, validation
and test sets (:mod:`envs.split`), builds an env for one task, and may know each task's optimal
and uniformly-random return (random is estimated by seeded rollouts when a family does not compute it; an unknown optimal
return is None, and evaluation then normalises by the source algorithm's best return).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from envs.split import TaskSplit, split_enumerable, split_sampled
from envs.tasks import Task, TaskError, canonical_json, task_key


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (Python or numpy), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(owner: str, field: str, value: Any, minimum: int) -> int:
    """``value`` as a Python int, or a one-line TaskError if it is not an integer >= ``minimum``.

    Args:
        owner: the family or env name, for the message.
        field: the argument's name (``size``, ``episode_length``, ...).
        value: the value given.
        minimum: the smallest valid value.
    """
    if not is_int(value) or value < minimum:
        raise TaskError(f"{owner} {field} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_bool(owner: str, field: str, value: Any) -> bool:
    """``value`` as a Python bool, or a one-line TaskError if it is not a bool (numpy's too)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TaskError(f"{owner} {field} must be true or false, got {value!r}")
    return bool(value)


def check_task_fields(owner: str, task: Any, fields: tuple[str, ...], example: str) -> dict:
    """``task`` if it is a mapping with exactly ``fields`` as keys, else a one-line TaskError.

    Args:
        owner: the family or env name, for the message.
        task: the task given.
        fields: the keys the task must have.
        example: the task's form for the message, e.g. ``"{'goal': [x, y]}"``.
    """
    if not isinstance(task, dict) or set(task) != set(fields):
        raise TaskError(f"{owner} task must be {example}, got {task!r}")
    return task


def check_cell(owner: str, field: str, cell: Any, low: int, high: int, region: str) -> list[int]:
    """The grid cell ``cell`` as ``[x, y]`` Python ints, or a one-line TaskError.

    Args:
        owner: the family or env name, for the message.
        field: what the cell is ("goal", "key", "door").
        cell: the value given: a sequence of two integers.
        low, high: the smallest and largest valid coordinate.
        region: where valid cells lie, for the message (e.g. "the 9x9 grid").

    Returns:
        The cell as two Python ints.
    """
    if isinstance(cell, np.ndarray):
        cell = cell.tolist()
    if not isinstance(cell, (list, tuple)) or len(cell) != 2 or not all(map(is_int, cell)):
        raise TaskError(f"{owner} {field} must be [x, y] with two integers, got {cell!r}")
    if not all(low <= v <= high for v in cell):
        raise TaskError(
            f"{owner} {field} {[int(v) for v in cell]} is outside {region}; "
            f"use coordinates in {low}..{high}"
        )
    return [int(cell[0]), int(cell[1])]


def grid_cell(owner: str, field: str, cell: Any, size: int) -> list[int]:
    """The cell ``[x, y]`` of a ``size`` x ``size`` grid (coordinates 0..size-1), or TaskError."""
    return check_cell(owner, field, cell, 0, size - 1, f"the {size}x{size} grid")


def seed_streams(venv: Any, seeds: list[int]) -> None:
    """Seed the next ``reset()`` of a stable-baselines3 ``VecEnv``'s env i with ``seeds[i]``.

    ``VecEnv.seed(s)`` gives env i the seed s + i; evaluation rows have independent seeds, so
    this sets the per-env list that ``VecEnv.reset`` reads (and clears) itself.
    """
    if len(seeds) != venv.num_envs:
        raise ValueError(f"{len(seeds)} seeds for {venv.num_envs} envs")
    venv._seeds = [int(s) for s in seeds]


class TaskFamily(ABC):
    """A distribution of tasks of one environment.

    Subclasses implement the abstract methods (``validate_task``, ``episode_length``,
    ``make_env``, and ``all_tasks`` or ``sample_tasks``) and may set ``name`` (the registry name;
    default: the class name) and ``env_id`` (the Gymnasium id of its registered env, stored in
    every history's metadata; default None for a family whose env is not registered).
    ``optimal_return`` and ``random_return`` are optional: see their docstrings. Constructor
    keyword arguments are the family's parameters (grid size, number of arms, ...) and must be
    JSON-serialisable; the constructor passes them on to ``TaskFamily.__init__``, which records
    them in ``kwargs`` for storage (``make_family`` refuses a family whose record differs).
    """

    name: ClassVar[str]
    env_id: ClassVar[str | None] = None
    default_num_test: ClassVar[int] = 16
    default_num_validation: ClassVar[int] = 8
    # None: every task not in test or validation (enumerable families) or 100 sampled tasks.
    default_num_train: ClassVar[int | None] = None
    # Episodes of the seeded random-policy rollouts that estimate random_return by default.
    random_return_episodes: ClassVar[int] = 200

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in vars(cls):  # a subclass that names no family of its own
            cls.name = cls.__name__

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = dict(kwargs)

    # -- tasks ---------------------------------------------------------------------------------

    def all_tasks(self) -> list[Task] | None:
        """Every task, in a fixed order, for enumerable families; None for sampled ones."""
        return None

    def sample_tasks(self, rng: np.random.Generator, num: int, split: str) -> list[Task]:
        """Sample ``num`` tasks of ``split`` ("train", "validation" or "test"; only for families
        whose ``all_tasks`` is None). The split name lets a family draw its evaluation tasks
        from another distribution (Bandit); validation should then be drawn like test."""
        raise NotImplementedError(f"{self.name} enumerates its tasks; use all_tasks()")

    @abstractmethod
    def validate_task(self, task: Any) -> Task:
        """Return the task in canonical form or raise TaskError naming the problem."""

    # -- envs and reference returns -------------------------------------------------------------

    @property
    @abstractmethod
    def episode_length(self) -> int:
        """Maximum steps of one episode (episodes are truncated there)."""

    @abstractmethod
    def make_env(self, task: Task) -> gym.Env:
        """A fresh env for ``task``; the task never changes on reset()."""

    def make_vec_env(self, task: Task, num_envs: int) -> Any:
        """``num_envs`` envs of ``task`` as one stable-baselines3 ``VecEnv``: the streams of a
        source run (collection records them; ``VecEnv.seed(s)`` seeds stream i's first reset
        with s + i), and a task's evaluation seeds (the evaluator seeds each with
        ``seed_streams``).

        Optional. By default a ``DummyVecEnv`` of ``make_env``, which steps the envs one after
        another; a family whose envs step faster as one batch (XLand-MiniGrid's JAX envs)
        returns its own, with ``DummyVecEnv``'s semantics: auto-reset on done, the last
        observation in ``infos[i]["terminal_observation"]``, ``infos[i]["TimeLimit.truncated"]``
        on truncation. An oracle (``optimal_action``) needs the default, which holds its envs.
        """
        from stable_baselines3.common.vec_env import DummyVecEnv

        return DummyVecEnv([lambda: self.make_env(task)] * num_envs)

    def optimal_return(self, task: Task) -> float | None:
        """Expected return of an optimal policy that knows the task; None if unknown.

        Optional. Without it (None), evaluation normalises scores by the best return of the
        source algorithm on the same tasks, and its report says so.
        """
        return None

    def optimal_action(self, env: gym.Env, task: Task) -> Any:
        """The action an optimal policy takes in ``env``'s current state; None: no oracle.

        Optional. ``env`` is an env of this family made for ``task`` (by ``make_env``; the task is
        not re-validated: this runs at every recorded step), in the middle of an episode; the oracle may read its hidden state (where the agent is, whether
        the key is held). A family that has one can make AD^eps histories with its oracle as the
        demonstrator (the ``NoisyDemonstrator`` source); see ``has_oracle``.
        """
        return None

    def random_return(self, task: Task) -> float:
        """Expected return of the uniformly random policy.

        Optional. By default it is estimated by ``random_return_episodes`` episodes of uniformly
        random actions, seeded from the task (the same task always gives the same number).
        Override it with an exact value where one is cheap to compute.
        """
        task = self.validate_task(task)
        key = task_key(task)
        cache = self.__dict__.setdefault("_random_returns", {})
        if key not in cache:
            cache[key] = _random_rollout_return(
                self.make_env(task), self.episode_length, self.random_return_episodes, key
            )
        return cache[key]

    # -- pictures of exploration ---------------------------------------------------------------

    @property
    def grid_size(self) -> tuple[int, int] | None:
        """(width, height) of the grid whose cells ``cell_of`` names; None (the default) for a
        family whose observations are no grid cell: ``ad-eval`` then draws no exploration maps."""
        return None

    def cell_of(self, observation: Any) -> tuple[int, int] | None:
        """The (x, y) cell an observation shows the agent on, or None where it shows none.

        Optional, with ``grid_size``: together they let ``ad-eval`` draw heat maps of the cells
        visited per episode (exploration.png).
        """
        return None

    def position_of(self, observation: Any) -> tuple[float, float] | None:
        """The (x, y) point in the plane an observation shows the agent at, or None (the default:
        a family whose observations hold no position; ``ad-eval`` then draws no paths.png).

        The continuous analogue of ``cell_of``: it lets ``ad-eval`` draw the paths of a few
        episodes (paths.png, see :mod:`ad.evaluation.paths`).
        """
        return None

    def landmarks(self, task: Task) -> dict[str, Any]:
        """What of ``task`` to mark on the exploration maps or paths, by name: (x, y) cells
        ("goal", "key", "door") for grid families, points and a "goal_radius" for ones with
        ``position_of``."""
        return {}

    # -- split ---------------------------------------------------------------------------------

    def split(
        self,
        seed: int,
        num_train: int | None = None,
        *,
        num_validation: int | None = None,
        num_test: int | None = None,
    ) -> TaskSplit:
        """Deterministic, disjoint train / validation / test split from ``seed``.

        Enumerable families permute all tasks with ``seed``: test is the first ``num_test``,
        validation the next ``num_validation``, train the next ``num_train`` (default: all the
        rest). Sampled families draw each split from its own seeded stream. See
        :mod:`envs.split`; None takes the family's ``default_num_*``.
        """
        sizes = (
            self.default_num_train if num_train is None else num_train,
            self.default_num_validation if num_validation is None else num_validation,
            self.default_num_test if num_test is None else num_test,
        )
        tasks = self.all_tasks()
        if tasks is not None:
            train, validation, test = split_enumerable(self.name, tasks, seed, sizes)
        else:
            train, validation, test = split_sampled(self.sample_tasks, seed, sizes)
        return TaskSplit(
            family=getattr(self, "registry_name", self.name),
            family_kwargs=self.kwargs,
            seed=seed,
            train=tuple(train),
            validation=tuple(validation),
            test=tuple(test),
        )


def has_oracle(family: TaskFamily) -> bool:
    """Whether ``family`` implements :meth:`TaskFamily.optimal_action`."""
    return type(family).optimal_action is not TaskFamily.optimal_action


def _random_rollout_return(env: gym.Env, episode_length: int, num_episodes: int, key: str) -> float:
    """Mean return of ``num_episodes`` uniformly random episodes, seeded from ``key``.

    The seed comes from a hash of the task rather than Python's ``hash`` (salted per process), so
    collection workers and evaluation agree on the number.
    """
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")
    env.action_space.seed(seed)
    total = 0.0
    try:
        for episode in range(num_episodes):
            env.reset(seed=seed + episode)
            for _ in range(episode_length):  # the family's truncation, if the env has none
                _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
                total += float(reward)
                if terminated or truncated:
                    break
    finally:
        env.close()
    return total / num_episodes


# --------------------------------------------------------------------------- registry

_REGISTRY: dict[str, type[TaskFamily]] = {}


def register_family(cls: type[TaskFamily]) -> type[TaskFamily]:
    """Class decorator: make a family available by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


def family_names() -> list[str]:
    return sorted(_REGISTRY)


def import_user_module(module_name: str, what: str = "family") -> Any:
    """Import a user's module by name, also from the current working directory.

    Installed console scripts (``ad-collect``, ...) do not put the working directory on
    ``sys.path`` as ``python -m`` does, so a family in ``./my_families.py`` would not be found.
    The directory is appended (not prepended) so a local file never shadows an installed package;
    it stays on ``sys.path`` so that worker processes started later inherit it.

    Raises:
        TaskError: one line naming the module, the import error and the fix.
    """
    cwd = os.getcwd()
    if not {"", ".", cwd} & set(sys.path):
        sys.path.append(cwd)
        importlib.invalidate_caches()
    try:
        return importlib.import_module(module_name)
    except (ImportError, ValueError) as e:  # ValueError: empty module name (":Factory")
        raise TaskError(
            f"cannot import {what} module {module_name!r} ({e}); check the config's {what}, and "
            "put the module in the working directory or on PYTHONPATH"
        ) from None


def make_family(name: str, **kwargs: Any) -> TaskFamily:
    """A family by registered name or by ``module:ClassOrFactory``, constructed with ``kwargs``."""
    if ":" in name:
        module_name, _, attr = name.partition(":")
        module = import_user_module(module_name)
        factory = getattr(module, attr, None) if attr else None
        if not callable(factory):
            raise TaskError(
                f"module {module_name!r} has no family class or factory {attr!r}; check env.family"
            )
    else:
        factory = _REGISTRY.get(name)
        if factory is None:
            raise TaskError(
                f"unknown task family {name!r}; choose one of {', '.join(family_names())} "
                "or give 'module:ClassOrFactory'"
            )
    try:
        family = factory(**kwargs)
    except TypeError as e:
        raise TaskError(f"bad env.family_kwargs for {name}: {e}") from None
    if not isinstance(family, TaskFamily):
        raise TaskError(f"{name} did not return a TaskFamily; subclass envs.base.TaskFamily")
    # The config's kwargs are the truth: a constructor that does not pass them on would store
    # other kwargs, and evaluation would silently rebuild another family from them.
    record, given = canonical_json(family.kwargs), canonical_json(kwargs)
    differ = sorted(k for k in given if k not in record or record[k] != given[k])
    if differ:
        raise TaskError(
            f"family {name} was built with {differ[0]}={given[differ[0]]!r} but records "
            f"kwargs {family.kwargs}; pass every constructor keyword argument on to "
            "TaskFamily.__init__ (super().__init__(**kwargs))"
        )
    family.registry_name = name  # how to make it again, stored in every artifact's split
    return family


def family_of_split(split: TaskSplit) -> TaskFamily:
    """The family whose tasks a (stored) split holds: the one place a split becomes a family.

    Raises:
        TaskError: the family rebuilt from the stored kwargs records other kwargs (its code
            changed since the split was stored), so it would not be the same family.
    """
    family = make_family(split.family, **split.family_kwargs)
    if canonical_json(family.kwargs) != canonical_json(split.family_kwargs):
        raise TaskError(
            f"family {split.family} stored with kwargs {split.family_kwargs} now builds with "
            f"{family.kwargs}; evaluate with the family code the data was made with, or "
            "re-collect and retrain"
        )
    return family
