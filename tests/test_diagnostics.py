"""Diagnostics before the user spends an hour (issue 32): ad-collect --inspect and ad-train say,
in one line each, when the data can teach AD little, and what to change."""

from __future__ import annotations

import pytest

from ad.data.inspection import inspect, source_rise_warning
from tests.factories import make_dataset, tiny_config, windows_of


def run(first, last, optimal=1.0, random=0.0):
    return {"first_return": first, "last_return": last, "optimal_return": optimal,
            "random_return": random}  # fmt: skip


def test_a_source_that_barely_rises_is_named_with_the_fix():
    flat = source_rise_warning([run(0.30, 0.35), run(0.20, 0.24, optimal=2.0)])
    assert flat.startswith("warning: the source barely learns within a stream")
    assert "\n" not in flat and "collect.total_steps" in flat and "2 training runs" in flat
    assert source_rise_warning([run(0.1, 0.9), run(0.2, 0.25)]) is None  # mean rise 0.43
    assert source_rise_warning([run(0.1, 0.1, optimal=None)]) is None  # no reference: no verdict


def test_inspect_warns_on_a_source_that_does_not_learn(tmp_path):
    # the scripted learner acts epsilon-greedily with a fixed epsilon: it never improves
    table = inspect(make_dataset(tmp_path / "d", epsilon=0.4))
    assert "warning: the source barely learns within a stream" in table


@pytest.mark.parametrize(
    "terminate_prob, overrides, words",
    [
        (  # kept streams of 43-80 steps (every 4th episode), windows of 62
            0.3,
            ["train.data.subsample_every=4", "model.context_steps=62"],
            ["most streams are shorter than a window", "14 of 24", "train.data.subsample_every"],
        ),
        (  # kept streams of 120 steps (6 episodes of 20), contexts of 100
            0.0,
            ["train.data.subsample_every=2", "model.context_steps=100"],
            [
                "spans 6.0 episodes",
                "fewer than two contexts of 5.0 episodes",
                "collect.total_steps",
            ],
        ),
        (  # ED's last 2 episodes: 14-32 steps, windows of 24
            0.3,
            ["train.mode=ed", "train.ed.last_episodes=2", "model.context_steps=24"],
            ["ED's data is mostly skipped", "4 of 6", "train.ed.last_episodes"],
        ),
    ],
    ids=["short-streams", "under-two-contexts", "ed-skipped"],
)
def test_windows_that_can_teach_little_say_so(tmp_path, terminate_prob, overrides, words):
    # 2 streams x 240 steps per run, episodes of at most 20 steps
    dataset = make_dataset(tmp_path / "d", terminate_prob=terminate_prob)
    lines = windows_of(tiny_config(dataset, tmp_path / "r", *overrides)).diagnostics()
    assert len(lines) == 1 and "\n" not in lines[0], lines
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_windows_of_a_healthy_recipe_say_nothing(tmp_path):
    dataset = make_dataset(tmp_path / "d", terminate_prob=0.0)
    assert windows_of(tiny_config(dataset, tmp_path / "r")).diagnostics() == []
