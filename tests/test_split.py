"""The train / validation / test split of envs/split.py: sizes, disjointness, determinism, the
promise that test tasks are the former held-out tasks, and one-line refusals of the old split."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

import envs
from ad.errors import user_errors
from envs import TaskSplit, make_family, task_key
from envs.base import family_of_split
from tests.factories import refused_in_one_line

FAMILIES = [n for n in envs.family_names() if type(make_family(n)).__module__.startswith("envs.")]

SPLIT_SIZES = {  # (train, validation, test) of the default split
    "DarkRoom": (57, 8, 16),
    "DarkRoomHard": (265, 8, 16),
    "DarkRoomPixels": (57, 8, 16),  # Dark Room's goals
    "DarkKeyToDoor": (2000, 50, 100),
    "MiniGridEmpty": (16, 4, 4),
    "Bandit": (100, 50, 100),
    "PointRobot": (100, 16, 16),
    "HalfCheetahVel": (40, 8, 8),  # registered when the mujoco extra is installed
}

# sha256 (first 16 hex digits) of the task keys of family.split(0) made by the two-way split
# (train / heldout) before the validation split existed: its held-out tasks, and its train tasks
# after the first 8 (enumerable families: the 8 now in validation) or all of them (sampled).
OLD_SPLIT_SEED0 = {
    "DarkRoom": ("563b2f8bfa37cfc0", "0c4905efa108777e"),
    "DarkRoomHard": ("17f71f811a611786", "9734606690dc78ca"),
    "DarkKeyToDoor": ("5ac7be4c4cd931dc", None),  # train: 2000 of 6461, not a suffix
    "MiniGridEmpty": ("428fa247624bde4f", None),  # train was 20 of 20; 4 now validation
    "Bandit": ("608716f0b6b8bde0", "10909b5ea9ab2e7b"),
    "PointRobot": ("4a74d675b374b8a2", "d4a7f7cf56b095dc"),
}
# Dark Room's 16 held-out goals of split seed 0 before the validation split: the numbers of
# docs/results/ were measured on them, and they are the test goals now.
DARKROOM_OLD_HELDOUT = [
    [5, 7], [5, 0], [5, 5], [4, 7], [8, 5], [0, 1], [6, 4], [1, 2],
    [7, 1], [2, 1], [4, 1], [8, 6], [8, 0], [3, 4], [2, 7], [2, 2],
]  # fmt: skip


def _digest(tasks) -> str:
    keys = json.dumps([task_key(t) for t in tasks]).encode()
    return hashlib.sha256(keys).hexdigest()[:16]


def _one_line_user_error(call, *words: str) -> str:
    return refused_in_one_line(call, *words, error=user_errors())  # or TaskError from envs


@pytest.mark.parametrize("name", FAMILIES)
def test_split_is_disjoint_covering_deterministic_and_round_trips(name):
    family = make_family(name)
    split = family.split(0)
    keys = {s: [task_key(t) for t in split.tasks(s)] for s in ("train", "validation", "test")}
    assert tuple(len(keys[s]) for s in ("train", "validation", "test")) == SPLIT_SIZES[name]
    assert all(len(set(k)) == len(k) for k in keys.values())
    assert not set(keys["train"]) & set(keys["validation"])
    assert not set(keys["train"]) & set(keys["test"])
    assert not set(keys["validation"]) & set(keys["test"])
    assert all(family.validate_task(t) == t for t in split.train + split.validation + split.test)
    if family.all_tasks() is not None:  # enumerable: the split covers what it claims
        everything = {task_key(t) for t in family.all_tasks()}
        full = family.split(0, num_train=len(everything) - len(split.test) - len(split.validation))
        assert sorted(sum((list(k) for k in keys.values()), [])) == sorted(
            everything & set(sum(keys.values(), []))
        )
        assert sorted(task_key(t) for t in full.train + full.validation + full.test) == sorted(
            everything
        )
        # Neither evaluation set depends on num_train.
        assert (full.test, full.validation) == (split.test, split.validation)
    assert split == family.split(0)
    assert split.test != family.split(1).test
    assert split.validation != family.split(1).validation
    again = TaskSplit.from_json(json.loads(json.dumps(split.to_json())))
    assert again == split
    for s in ("train", "validation", "test"):
        assert again.split_of(split.tasks(s)[-1]) == s


@pytest.mark.parametrize("name", [n for n in FAMILIES if n in OLD_SPLIT_SEED0])  # no newer ones
def test_test_tasks_are_the_former_heldout_tasks_in_order(name):
    """Data and numbers measured on the two-way split's held-out tasks stay comparable: with the
    same seed and number, the test tasks are those tasks, in the same order."""
    split = make_family(name).split(0)
    old_heldout, old_train = OLD_SPLIT_SEED0[name]
    assert _digest(split.test) == old_heldout
    family = make_family(name)
    if (
        family.all_tasks() is None or old_train is not None
    ):  # sampled: train tasks unchanged too (spawn children 0, 1)
        assert _digest(split.train) == old_train
    if name == "DarkRoom":
        assert [t["goal"] for t in split.test] == DARKROOM_OLD_HELDOUT


@pytest.mark.parametrize("name", ["Bandit", "PointRobot"])
def test_sampled_families_keep_train_and_test_whatever_the_validation_size(name):
    family = make_family(name)
    small, large = family.split(4, num_validation=1), family.split(4, num_validation=30)
    assert (small.train, small.test) == (large.train, large.test)
    assert large.validation[:1] == small.validation  # validation has its own stream
    assert not {task_key(t) for t in large.validation} & {task_key(t) for t in large.test}


def test_split_identical_across_processes():
    script = (
        "import json, envs\n"
        "out = {}\n"
        "for name in envs.family_names():\n"
        "    s = envs.make_family(name).split(3)\n"
        "    out[name] = [[envs.task_key(t) for t in s.tasks(n)]\n"
        "                 for n in ('train', 'validation', 'test')]\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    other = json.loads(result.stdout)
    assert set(FAMILIES) <= set(other)
    for name in FAMILIES:
        split = make_family(name).split(3)
        assert other[name] == [
            [task_key(t) for t in split.tasks(n)] for n in ("train", "validation", "test")
        ]


def test_bandit_adversarial_split():
    """Train tasks favour an odd best arm; validation is drawn like test (even), so settings
    chosen on validation tasks transfer to the test tasks."""
    family = make_family("Bandit")
    split = family.split(0, num_train=400, num_validation=400, num_test=400)
    for name, parity in (("train", 1), ("validation", 0), ("test", 0)):
        best = np.array([np.argmax(t["means"]) for t in split.tasks(name)])
        assert 0.9 <= np.mean(best % 2 == parity) < 1.0, name
    assert len({int(np.argmax(t["means"])) for t in split.train}) == 10  # every arm sometimes


@pytest.mark.parametrize(
    ("name", "sizes", "words"),
    [
        pytest.param("DarkRoom", {"num_test": 0}, ["num_test_tasks"], id="no-test"),
        pytest.param(
            "DarkRoom", {"num_validation": 0}, ["num_validation_tasks"], id="no-validation"
        ),
        pytest.param(
            "DarkRoom",
            {"num_test": 70, "num_validation": 11},
            ["num_test_tasks=70", "num_validation_tasks=11", "none for training"],
            id="none-left-for-training",
        ),
        pytest.param(
            "DarkRoom", {"num_train": 58}, ["num_train_tasks", "1..57"], id="too-many-train"
        ),
        pytest.param("Bandit", {"num_validation": 0}, ["validation"], id="bandit-no-validation"),
    ],
)
def test_bad_split_sizes_are_one_line_errors(name, sizes, words):
    family = make_family(name)
    _one_line_user_error(lambda: family.split(0, **sizes), *words)


def _two_way(split: TaskSplit) -> dict:
    """A stored split of the old train / heldout kind."""
    return {k: v for k, v in split.to_json().items() if k not in ("validation", "test")}


@pytest.mark.parametrize(
    ("call", "words"),
    [
        pytest.param(
            lambda split: split.tasks("heldout"),
            ["'train', 'validation' or 'test'"],
            id="tasks-heldout",
        ),
        pytest.param(
            lambda split: split.tasks("val"), ["'train', 'validation' or 'test'"], id="tasks-val"
        ),
        pytest.param(
            lambda split: TaskSplit.from_json(_two_way(split)),
            ["lacks validation, test"],
            id="stored-two-way-split",
        ),
        pytest.param(
            lambda split: TaskSplit.from_json([]),
            ["no mapping", "re-collect"],
            id="stored-split-not-a-mapping",
        ),
        pytest.param(
            lambda split: make_family("Bandit").sample_tasks(
                np.random.default_rng(0), 2, "heldout"
            ),
            ["'test'"],
            id="bandit-sample-heldout",
        ),
    ],
)
def test_unknown_split_names_and_incomplete_stored_splits_are_refused_with_one_line(call, words):
    split = make_family("DarkRoom").split(0)
    _one_line_user_error(lambda: call(split), *words)


def test_a_split_that_would_rebuild_another_family_is_refused():
    split = make_family("DarkRoom", size=5).split(0)
    stale = TaskSplit.from_json({**split.to_json(), "family_kwargs": {"size": 5}})
    # Rebuilds with episode_length=20 recorded: not what was stored.
    _one_line_user_error(lambda: family_of_split(stale), "now builds with")
    assert family_of_split(split).kwargs == split.family_kwargs
