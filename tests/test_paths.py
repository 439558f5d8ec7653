"""Paths pictures (issue 13, point 5): ad-eval's paths of row 0 of its main rollout in episodes
1, 5 and the last, for families whose observations hold a position (the point robot) only."""

from __future__ import annotations

import json

import numpy as np
import torch

import envs
from ad.config import config_from_dict, config_to_dict
from ad.evaluation.evaluate import evaluate
from ad.evaluation.paths import draws_paths, episode_paths, write_paths
from ad.evaluation.rollout import rollout
from ad.learn.model import ADTransformer, FamilyPolicy
from envs.pointrobot import PointRobot
from tests.factories import PNG_MAGIC, make_config, random_model, save_run, write_dataset


def box_model(cfg, family) -> FamilyPolicy:
    env = family.make_env(family.sample_tasks(np.random.default_rng(0), 1, "test")[0])
    torch.manual_seed(0)
    spaces = (env.observation_space, env.action_space)
    return ADTransformer(cfg.model, {"PointRobot": spaces}).policy().eval()


def test_point_robot_eval_draws_the_paths_of_row_0(tmp_path):
    family = envs.make_family("PointRobot", episode_length=7)
    split = family.split(0, num_validation=2, num_test=2)
    cfg = make_config(tmp_path, family="PointRobot", num_episodes=6, action_mode="sample")
    raw = config_to_dict(cfg)
    cfg = config_from_dict({**raw, "env": {**raw["env"], "family_kwargs": family.kwargs}})
    model = box_model(cfg, family)
    save_run(tmp_path / "run", cfg, model, split)
    out = tmp_path / "out"
    evaluate(tmp_path / "run", out_dir=out, progress=False)

    assert (out / "paths.png").read_bytes().startswith(PNG_MAGIC)
    assert not (out / "exploration.png").exists()
    data = np.load(out / "paths.npz")
    assert list(data["episodes"]) == [1, 5, 6]
    # the start and one point per step: 7 steps, 8 points, each episode from the origin
    assert data["num_points"].tolist() == [8, 8, 8]
    paths = np.split(data["positions"], np.cumsum(data["num_points"])[:-1])
    task = split.test[0]
    assert json.loads(str(data["task"])) == task
    assert json.loads(str(data["landmarks"])) == {"goal": task["goal"], "goal_radius": 0.2}
    # the same positions as row 0 of a rollout with the same seeds: replayed through the env
    trace: dict = {}
    rollout(model, family, split.test[:2], 2, 6, "sample", seed=0, transitions=trace)
    actions = trace["actions"][0]  # (N, 2) of row 0
    for path, episode in zip(paths, [1, 5, 6], strict=True):
        env = family.make_env(task)
        expected = [env.reset()[0]]
        for action in actions[(episode - 1) * 7 : episode * 7]:
            expected.append(env.step(action)[0])
        np.testing.assert_allclose(path, np.array(expected, dtype=np.float64), atol=1e-6)
        assert np.abs(np.diff(path, axis=0)).max() <= 0.1 + 1e-6  # steps are clipped


def test_dark_room_gets_no_paths(tmp_path):
    family = envs.make_family("DarkRoom")
    split = family.split(0)
    cfg = make_config(tmp_path, num_episodes=2, num_seeds=1, max_tasks=1)
    save_run(tmp_path / "run", cfg, random_model(cfg, family), split)
    write_dataset(tmp_path / "data", family, split, [("test", 0)])
    out = tmp_path / "out"
    evaluate(tmp_path / "run", out_dir=out, progress=False)
    assert (out / "exploration.png").exists()
    assert not (out / "paths.png").exists() and not (out / "paths.npz").exists()


def test_episodes_of_any_length_and_the_families_that_draw(tmp_path):
    family = PointRobot(reward_type="dense")
    obs = np.array([[0, 0], [0.1, 0], [0, 0], [0, 0.1], [0, 0.2]], dtype=np.float32)
    after = np.array([[0.1, 0], [0.2, 0], [0, 0.1], [0, 0.2], [0.1, 0.3]], dtype=np.float32)
    trace = {
        "observations": obs[None],
        "next_observations": after[None],
        "dones": np.array([[0, 1, 0, 0, 1]], dtype=bool),  # episodes of 2 and 3 steps
    }
    paths = episode_paths(family, trace, [1, 2])
    assert [len(p) for p in paths] == [3, 4]
    np.testing.assert_allclose(paths[1][-1], [0.1, 0.3], atol=1e-6)
    task = {"goal": [0.0, 1.0]}
    assert family.landmarks(task) == {"goal": (0.0, 1.0)}  # dense: no radius
    path = write_paths(tmp_path, family, task, trace, 2, "point robot")
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert np.load(tmp_path / "paths.npz")["num_points"].tolist() == [3, 4]
    assert draws_paths(family) and family.position_of(np.float32([0.5, -0.25])) == (0.5, -0.25)
    for name in ("DarkRoom", "Bandit", "DarkKeyToDoor"):
        assert not draws_paths(envs.make_family(name))
