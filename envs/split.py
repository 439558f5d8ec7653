"""The deterministic train / validation / test split of a family's tasks.

Training learns from *train* tasks only; settings (and any choice made during training, such as
the periodic evaluation's) are chosen on *validation* tasks; reported numbers come from *test*
tasks. The split is a function of (family, split seed, sizes) and is stored with every artifact
(history metadata, manifest, checkpoint), so that training can refuse validation and test tasks
and evaluation can find them again. ``TaskFamily.split`` (:mod:`envs.base`) calls the helpers
here; this module sits below it and knows families only as task lists and samplers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from envs.tasks import Task, TaskError, task_key

SPLITS = ("train", "validation", "test")
# The splits training must never see: the worst mistake is to evaluate on training data.
EVALUATION_SPLITS = ("validation", "test")


def check_split_name(split: str, where: str = "split") -> str:
    """``split`` if it is one of :data:`SPLITS`, else a one-line TaskError."""
    if split not in SPLITS:
        raise TaskError(f"unknown {where} {split!r}; use 'train', 'validation' or 'test'")
    return split


@dataclass(frozen=True)
class TaskSplit:
    """A deterministic train / validation / test split of a family's tasks.

    Stored with every artifact (history metadata, manifest, checkpoint), so that training can
    refuse validation and test tasks and evaluation can find them again.
    """

    family: str
    family_kwargs: dict
    seed: int
    train: tuple[Task, ...]
    validation: tuple[Task, ...]
    test: tuple[Task, ...]

    def tasks(self, split: str) -> tuple[Task, ...]:
        """The tasks of ``split`` ("train", "validation" or "test")."""
        return getattr(self, check_split_name(split))

    def split_of(self, task: Task) -> str | None:
        """'train', 'validation', 'test' or None for a task in none of them."""
        key = task_key(task)
        for name in SPLITS:
            if key in {task_key(t) for t in getattr(self, name)}:
                return name
        return None

    def to_json(self) -> dict:
        return {
            "family": self.family,
            "family_kwargs": self.family_kwargs,
            "seed": self.seed,
            **{name: list(getattr(self, name)) for name in SPLITS},
        }

    @classmethod
    def from_json(cls, data: dict) -> TaskSplit:
        """The split stored as :meth:`to_json`.

        Raises:
            TaskError: a stored split that is no mapping or lacks a field.
        """
        if not isinstance(data, dict):
            raise TaskError(
                "the stored task split is no mapping; re-collect the dataset and retrain"
            )
        missing = [k for k in ("family", "family_kwargs", "seed", *SPLITS) if k not in data]
        if missing:
            raise TaskError(
                f"the stored task split lacks {', '.join(missing)}; re-collect the dataset and "
                "retrain"
            )
        return cls(
            family=data["family"],
            family_kwargs=dict(data["family_kwargs"]),
            seed=int(data["seed"]),
            **{name: tuple(data[name]) for name in SPLITS},
        )


Sizes = tuple[int | None, int, int]  # num_train (None: default), num_validation, num_test


def check_sizes(num_validation: int, num_test: int) -> None:
    """Both evaluation splits hold at least one task, else a one-line TaskError."""
    if num_test < 1:
        raise TaskError("num_test_tasks must be >= 1; reported numbers come from test tasks")
    if num_validation < 1:
        raise TaskError(
            "num_validation_tasks must be >= 1; settings and the periodic evaluation during "
            "training use validation tasks"
        )


def split_enumerable(
    name: str, tasks: list[Task], seed: int, sizes: Sizes
) -> tuple[list[Task], list[Task], list[Task]]:
    """Train, validation and test tasks of an enumerable family.

    All tasks are permuted with ``seed``; test takes the first ``num_test``, validation the next
    ``num_validation`` and train the next ``num_train`` (None: all the rest). Test comes first so
    that the test tasks are the held-out tasks of the two-way split this replaced (same seed and
    number), and validation takes tasks that used to be training tasks.

    Args:
        name: the family's name, for messages.
        tasks: every task of the family, in its fixed order.
        seed: the split seed.
        sizes: (num_train, num_validation, num_test).
    """
    num_train, num_validation, num_test = sizes
    check_sizes(num_validation, num_test)
    num_eval = num_test + num_validation
    if num_eval >= len(tasks):
        raise TaskError(
            f"{name} has {len(tasks)} tasks; num_test_tasks={num_test} and "
            f"num_validation_tasks={num_validation} leave none for training; lower them"
        )
    order = np.random.default_rng(seed).permutation(len(tasks))
    test = [tasks[i] for i in order[:num_test]]
    validation = [tasks[i] for i in order[num_test:num_eval]]
    rest = [tasks[i] for i in order[num_eval:]]
    num_train = len(rest) if num_train is None else num_train
    if not 1 <= num_train <= len(rest):
        raise TaskError(
            f"num_train_tasks={num_train} but {name} has {len(rest)} tasks left after {num_test} "
            f"test and {num_validation} validation tasks; choose 1..{len(rest)}"
        )
    return rest[:num_train], validation, test


def split_sampled(
    sample: Callable[[np.random.Generator, int, str], list[Task]], seed: int, sizes: Sizes
) -> tuple[list[Task], list[Task], list[Task]]:
    """Train, validation and test tasks of a sampled family, each from its own seeded stream.

    Args:
        sample: the family's ``sample_tasks(rng, num, split)``.
        seed: the split seed.
        sizes: (num_train (None: 100), num_validation, num_test).
    """
    num_train, num_validation, num_test = sizes
    check_sizes(num_validation, num_test)
    num_train = 100 if num_train is None else num_train
    if num_train < 1:
        raise TaskError("num_train_tasks must be >= 1")
    # Child i of SeedSequence.spawn is SeedSequence(seed, spawn_key=(i,)), whatever the number
    # spawned: children 0 and 1 are the train and held-out streams of the two-way split this
    # replaced, so train and test tasks stay what they were, and validation takes child 2.
    train_seq, test_seq, validation_seq = np.random.SeedSequence(seed).spawn(3)
    train = sample(np.random.default_rng(train_seq), num_train, "train")
    test = sample(np.random.default_rng(test_seq), num_test, "test")
    validation = sample(np.random.default_rng(validation_seq), num_validation, "validation")
    return train, validation, test
