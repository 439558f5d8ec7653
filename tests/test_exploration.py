"""Exploration maps (issue 11, point 5): ad-eval's heat maps of the cells that row 0 of its main
rollout visits in episodes 1, 5, 20 and the last, for grid families only."""

from __future__ import annotations

import json

import matplotlib.image
import numpy as np

import envs
from ad.evaluation.evaluate import evaluate
from ad.evaluation.exploration import (
    draws_exploration,
    episode_visits,
    panel_episodes,
    write_exploration,
)
from ad.evaluation.rollout import rollout
from tests.factories import PNG_MAGIC, make_config, random_model, save_run, write_dataset


def test_dark_room_eval_draws_the_cells_of_row_0(tmp_path):
    family = envs.make_family("DarkRoom")
    split = family.split(0)
    cfg = make_config(tmp_path, num_episodes=21, num_seeds=2, max_tasks=2, action_mode="sample")
    model = random_model(cfg, family)
    save_run(tmp_path / "run", cfg, model, split)
    write_dataset(tmp_path / "data", family, split, [("test", 0), ("test", 1)])
    out = tmp_path / "out"
    evaluate(tmp_path / "run", out_dir=out, progress=False)

    assert (out / "exploration.png").read_bytes().startswith(PNG_MAGIC)
    assert matplotlib.image.imread(out / "exploration.png").shape[1] > 400  # 4 panels wide
    data = np.load(out / "exploration.npz")
    assert list(data["episodes"]) == [1, 5, 20, 21]
    assert data["counts"].shape == (4, 9, 9)
    # every panel counts one visit per step of its episode (Dark Room: 20 steps)
    assert data["counts"].sum(axis=(1, 2)).tolist() == [20, 20, 20, 20]
    task = split.test[0]
    assert json.loads(str(data["task"])) == task
    assert json.loads(str(data["landmarks"])) == {"goal": task["goal"]}
    # the same cells as row 0 (first task, first seed) of a rollout with the same seeds, counted
    # here from its positions: 20 steps per episode
    trace: dict = {}
    rollout(model, family, split.test[:2], 2, 21, "sample", seed=0, transitions=trace)
    positions = trace["observations"][0]  # (N, 2) of row 0
    for panel, episode in enumerate([1, 5, 20, 21]):
        expected = np.zeros((9, 9), dtype=np.int64)
        for x, y in positions[(episode - 1) * 20 : episode * 20]:
            expected[x, y] += 1
        np.testing.assert_array_equal(data["counts"][panel], expected)


def test_rollout_traces_only_the_rows_asked_for(tmp_path):
    family = envs.make_family("DarkRoom")
    cfg = make_config(tmp_path)
    model = random_model(cfg, family)
    tasks = family.split(0).test[:2]
    every, one = {}, {}
    a = rollout(model, family, tasks, 2, 3, "sample", seed=3, transitions=every)
    b = rollout(model, family, tasks, 2, 3, "sample", seed=3, transitions=one, trace_rows=[2])
    np.testing.assert_array_equal(a, b)  # tracing changes nothing
    for key, value in one.items():
        assert value.shape[0] == 1
        np.testing.assert_array_equal(value[0], every[key][2])


def test_episodes_of_any_length_and_the_families_that_draw():
    family = envs.make_family("DarkKeyToDoor", size=5, episode_length=4)
    observations = np.array([[0, 0], [1, 0], [1, 0], [4, 4], [2, 2], [2, 3], [2, 3]])
    dones = np.array([0, 0, 1, 0, 1, 0, 1], dtype=bool)  # episodes of 3, 2 and 2 steps
    counts = episode_visits(family, observations, dones, [1, 3])
    assert counts.sum(axis=(1, 2)).tolist() == [3, 2]
    assert counts[0, 1, 0] == 2 and counts[1, 2, 3] == 2
    assert family.landmarks({"key": [1, 2], "door": [3, 4]}) == {"key": (1, 2), "door": (3, 4)}
    assert panel_episodes(120) == [1, 5, 20, 120] and panel_episodes(4) == [1, 4]
    assert panel_episodes(20) == [1, 5, 20]
    assert draws_exploration(envs.make_family("DarkRoomHard"))
    for name in ("Bandit", "MiniGridEmpty"):  # no (x, y) observation: no maps
        assert not draws_exploration(envs.make_family(name))


def test_key_to_door_maps_mark_key_and_door(tmp_path):
    family = envs.make_family("DarkKeyToDoor", size=5, episode_length=4)
    task = {"key": [0, 1], "door": [4, 4]}
    trace = {
        "observations": np.zeros((1, 8, 2), dtype=np.int64),
        "dones": np.array([[0, 0, 0, 1, 0, 0, 0, 1]], dtype=bool),
    }
    path = write_exploration(tmp_path, family, task, trace, 2, "Key-to-Door")
    assert path.read_bytes().startswith(PNG_MAGIC)
    data = np.load(tmp_path / "exploration.npz")
    assert json.loads(str(data["landmarks"])) == {"key": [0, 1], "door": [4, 4]}
    assert data["counts"][:, 0, 0].tolist() == [4, 4]
