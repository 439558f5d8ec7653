"""The HalfCheetahVel family (issue 13): tasks, refusals and the lazy MuJoCo import run everywhere;
the env and a collect -> train -> eval smoke run need the mujoco extra and are skipped without
it."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from ad.config import load_config
from ad.data.histories import read_history
from ad.pipeline import run_pipeline
from envs import make_family
from envs.tasks import TaskError


def test_tasks_are_target_velocities_split_deterministically():
    family = make_family("HalfCheetahVel")
    split = family.split(0)
    assert (len(split.train), len(split.validation), len(split.test)) == (40, 8, 8)
    assert split.test == family.split(0).test and split.test != family.split(1).test
    velocities = [t["velocity"] for t in split.train + split.validation + split.test]
    assert all(0.0 <= v <= 3.0 for v in velocities) and len(set(velocities)) == 56
    assert family.validate_task({"velocity": 2}) == {"velocity": 2.0}
    assert family.optimal_return(split.test[0]) is None  # evaluation normalises by the source


@pytest.mark.parametrize(
    "task, needle",
    [({"velocity": 3.5}, "in [0, 3]"), ({"velocity": float("nan")}, "in [0, 3]"),
     ({"goal": 1.0}, "'velocity'"), (1.0, "'velocity'"), ({"velocity": True}, "in [0, 3]")],
)  # fmt: skip
def test_bad_tasks_are_refused_in_one_line(task, needle):
    with pytest.raises(TaskError, match=None) as info:
        make_family("HalfCheetahVel").validate_task(task)
    assert needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "kwargs, needle",
    [({"episode_length": 0}, "episode_length"), ({"max_velocity": -1}, "max_velocity")],
    ids=["episode-length", "max-velocity"],
)
def test_bad_family_arguments_are_refused_in_one_line(kwargs, needle):
    with pytest.raises(TaskError, match=needle) as info:
        make_family("HalfCheetahVel", **kwargs)
    assert "\n" not in str(info.value)


def test_without_mujoco_making_an_env_names_the_extra(monkeypatch):
    # A None entry in sys.modules makes that import fail, as if the package were missing.
    monkeypatch.setitem(sys.modules, "gymnasium.envs.mujoco.half_cheetah_v5", None)
    family = make_family("HalfCheetahVel")
    with pytest.raises(TaskError, match=r'pip install -e "\.\[mujoco\]"') as info:
        family.make_env(family.split(0).test[0])
    assert "\n" not in str(info.value)


def test_env_reward_is_minus_velocity_error_minus_control_cost():
    pytest.importorskip("mujoco")
    from gymnasium.utils.env_checker import check_env

    family = make_family("HalfCheetahVel", episode_length=5)
    env = family.make_env({"velocity": 1.5})
    check_env(env, skip_render_check=True, skip_close_check=True)
    obs, _ = env.reset(seed=0)
    again, _ = family.make_env({"velocity": 1.5}).reset(seed=0)
    np.testing.assert_array_equal(obs, again)  # same seed, same start
    assert obs.shape == (17,) and obs.dtype == np.float32
    action = np.full(6, 0.5, dtype=np.float32)
    for t in range(5):
        _, reward, terminated, truncated, info = env.step(action)
        expected = -abs(info["x_velocity"] - 1.5) - 0.05 * 6 * 0.25
        assert reward == pytest.approx(expected) and not terminated
        assert truncated == (t == 4)
    assert env.velocity == 1.5  # the task never changes on reset
    env.reset()
    assert env.velocity == 1.5


def test_halfcheetah_vel_collects_trains_and_evaluates(tmp_path):
    """The smoke run of issue 13: PPO on Box(6) actions, a bins model, evaluation on a test task."""
    pytest.importorskip("mujoco")
    cfg = load_config(None, [
        "name=halfcheetah_tiny", "env.family=HalfCheetahVel",
        "env.family_kwargs={episode_length: 10}", "env.num_train_tasks=2",
        "env.num_validation_tasks=1", "env.num_test_tasks=1", "collect.algorithm=PPO",
        "collect.algorithm_kwargs={n_steps: 20, batch_size: 20, n_epochs: 1}",
        "collect.n_envs=2", "collect.seeds=[0]", "collect.total_steps=80", "model.embed_dim=16",
        "model.num_layers=1", "model.ff_dim=32", "model.context_steps=20", "model.action_bins=8",
        "train.num_steps=4", "train.optim.warmup_steps=1", "train.batch_size=4",
        "train.data.subsample_every=1", "train.checkpoint.every=4", "eval.num_episodes=2",
        "eval.num_seeds=1", f"collect.output_dir={tmp_path / 'h'}", f"train.run_dir={tmp_path / 'r'}",
    ])  # fmt: skip
    (summary,) = run_pipeline(cfg, workers=1, with_ed=False, progress=False)
    history = read_history(tmp_path / "h" / "train-task0000-seed0.h5")
    assert history.actions.shape == (2, 40, 6) and history.observations.shape == (2, 40, 17)
    assert np.abs(history.actions).max() <= 1.0
    returns = np.load(tmp_path / "r" / "report" / "returns.npz")["returns"]
    assert returns.shape == (1, 1, 2) and np.isfinite(returns).all()
    assert summary.num_tasks == 1 and summary.split == "test"
