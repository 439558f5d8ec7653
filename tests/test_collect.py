"""Collect and the dataset manifest: recorded steps replay exactly, resume after SIGKILL, shards
merge, refused calls lose nothing, one-line errors."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv
from torch import nn

import envs
from ad.config import config_from_dict, config_to_dict, load_config, save_config
from ad.data.collect import collect
from ad.data.histories import (
    read_episodes,
    read_history,
    read_metadata,
    rewrite_history,
    validate_history,
)
from ad.data.inspection import inspect, source_curves
from ad.data.manifest import load_manifest, manifest_lock, merge_manifest
from ad.data.pool import execute
from ad.data.recording import RecordingVecEnv
from ad.data.runs import plan_runs, record_run, run_one
from ad.data.sources import (
    ReturnSoFar,
    SmallCNN,
    SourceAlgorithm,
    make_source,
)
from ad.errors import UserError
from ad.evaluation.plots import plot_dataset_curves
from ad.fields import yaml_floats
from envs.base import TaskFamily
from envs.darkroom import step_toward
from tests.factories import (
    ROOT,
    SCRIPTS,
    TINY_PPO,
    bandit_config,
    checkout_env,
    collect_config,
    flip_a_data_byte,
    one_error_line,
    refused_in_one_line,
    set_schema_version,
)


def replay(history) -> int:
    """Re-create the seeded envs, feed the recorded actions stream by stream, and compare."""
    meta = history.metadata
    family = envs.make_family(meta["family"], **meta["family_kwargs"])
    episodes = 0
    for s in range(history.num_streams):
        env = family.make_env(meta["task"])
        obs, _ = env.reset(seed=meta["seed"] + s)  # DummyVecEnv seeds stream s with seed + s
        for t in range(history.num_steps):
            np.testing.assert_array_equal(history.observations[s, t], obs, err_msg=f"{s},{t}")
            obs, reward, terminated, truncated, _ = env.step(history.actions[s, t])
            assert history.rewards[s, t] == np.float32(reward), (s, t)  # raw, not bootstrapped
            assert history.terminations[s, t] == terminated, (s, t)
            assert history.truncations[s, t] == (truncated and not terminated), (s, t)
            if terminated or truncated:
                obs, _ = env.reset()  # auto-reset: the next observation is the reset one
                episodes += 1
    return episodes


def test_ppo_darkroom_records_every_step_exactly(tmp_path):
    cfg = collect_config(tmp_path / "ds", kwargs=TINY_PPO, total_steps=2000)
    summary = collect(cfg, workers=1, progress=False)
    assert (summary["runs_done"], summary["runs_skipped"], summary["runs_failed"]) == (3, 0, 0)
    assert summary["env_steps"] == 3 * 2000 and summary["bytes_written"] > 0
    files = sorted(p.name for p in (tmp_path / "ds").glob("*.h5"))
    assert files == [
        "test-task0000-seed0.h5",
        "train-task0000-seed0.h5",
        "train-task0001-seed0.h5",
    ]
    for name in ("config.yaml", "versions.json", "manifest.json"):
        assert (tmp_path / "ds" / name).is_file()
    assert load_config(tmp_path / "ds" / "config.yaml") == cfg

    history = read_history(tmp_path / "ds" / "train-task0001-seed0.h5")
    meta = history.metadata
    assert history.observations.shape == (4, 500, 2) and history.actions.dtype == np.int64
    assert meta["split"] == "train" and meta["task"] == list(cfg_split(cfg).train)[1]
    assert meta["algorithm"] == "PPO" and meta["algorithm_kwargs"] == TINY_PPO
    assert meta["observation_space"] == {"type": "MultiDiscrete", "nvec": [9, 9]}
    assert (meta["num_actions"], meta["episode_length"], meta["seed"]) == (5, 20, 0)
    assert meta["optimal_return"] > meta["random_return"] > 0
    assert meta["config"]["collect"]["total_steps"] == 2000
    assert replay(history) == 4 * 25
    # Dark Room: every 20th step is truncated, never terminated; each episode starts centred.
    assert history.truncations[:, 19::20].all() and history.truncations.sum() == 4 * 25
    assert not history.terminations.any()
    assert (history.observations[:, ::20] == 4).all()
    assert set(np.unique(history.rewards)) <= {0.0, 1.0}
    assert read_metadata(tmp_path / "ds" / "test-task0000-seed0.h5")["split"] == "test"

    manifest = load_manifest(tmp_path / "ds")
    assert [r["file"] for r in manifest["runs"]] == files[1:] + files[:1]  # train first
    run = manifest["runs"][1]
    assert (run["num_streams"], run["num_steps"], run["num_episodes"]) == (4, 500, 100)
    first = np.mean([r[:10].mean() for r in history.episode_returns()])
    assert run["first_return"] == pytest.approx(first)
    assert manifest["split"]["train"] == [list(cfg_split(cfg).train)[i] for i in (0, 1)]


def test_recording_does_not_change_what_sb3_does(tmp_path):
    """The same seeded PPO learns the same parameters through the recorder as on a plain
    DummyVecEnv, and the recorder holds exactly what PPO's rollout buffer saw."""
    rollout = 4 * TINY_PPO["n_steps"]  # env steps per PPO rollout (4 streams)
    cfg = collect_config(tmp_path, kwargs=TINY_PPO, total_steps=5 * rollout)
    family = envs.make_family("DarkRoom")
    task = cfg_split(cfg).train[1]
    source, recorder = record_run(cfg, family, task, seed=3)
    assert recorder.full and recorder.t == 5 * TINY_PPO["n_steps"]
    # The recorded run stops on the step that fills the recorder, before PPO trains on its
    # fifth rollout: a plain run of four rollouts has made the same updates.
    plain = PPO(
        "MlpPolicy",
        DummyVecEnv([lambda: family.make_env(task)] * 4),
        seed=3,
        device="cpu",
        **TINY_PPO,
    )
    plain.learn(4 * rollout)
    recorded_params = source.model.policy.state_dict()
    plain_params = plain.policy.state_dict()
    assert list(recorded_params) == list(plain_params)
    for name, value in plain_params.items():
        assert torch.equal(recorded_params[name], value), name
    initial = PPO("MlpPolicy", DummyVecEnv([lambda: family.make_env(task)]), seed=3, device="cpu")
    assert not torch.equal(initial.policy.state_dict()[name], value)  # it did learn

    # The plain run's rollout buffer holds its fourth rollout: steps 96..127 of every stream.
    # Training has flattened its observations and actions stream by stream (SB3's
    # swap_and_flatten): reshape to (S, T). Its rewards stay (T, S).
    n_steps = TINY_PPO["n_steps"]
    steps = slice(3 * n_steps, 4 * n_steps)
    buffer = plain.rollout_buffer
    assert buffer.generator_ready
    np.testing.assert_array_equal(recorder.actions[:, steps], buffer.actions.reshape(4, n_steps))
    np.testing.assert_array_equal(
        recorder.observations[:, steps], buffer.observations.reshape(4, n_steps, 2)
    )
    truncated = recorder.truncations[:, steps]  # PPO bootstraps these rewards in place
    assert truncated.any()
    rewards, buffered = recorder.rewards[:, steps], buffer.rewards.T
    np.testing.assert_array_equal(rewards[~truncated], buffered[~truncated])
    assert (rewards[truncated] != buffered[truncated]).all()


def test_recorder_reports_progress_every_thousand_steps():
    family = envs.make_family("Bandit")
    task = family.split(0).train[0]
    reported = []
    recorder = RecordingVecEnv(
        DummyVecEnv([lambda: family.make_env(task)] * 4), 260, on_steps=reported.append
    )
    recorder.reset()
    for _ in range(300):  # 40 steps past full: passed through, not recorded nor reported
        recorder.step(np.zeros(4, np.int64))
    assert reported == [1000, 40]  # 250 steps of 4 streams, then the last 10
    assert recorder.full


def test_collect_makes_no_sb3_log_folders(tmp_path, monkeypatch):
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where SB3's default logger writes
    env = DummyVecEnv([lambda: envs.make_family("DarkRoom").make_env({"goal": [1, 1]})])
    PPO("MlpPolicy", env, n_steps=16, batch_size=16, device="cpu").learn(16)
    # plain SB3 makes one per run (torch may add its torchinductor_<user> cache beside it)
    assert len(list(temp.glob("SB3-*"))) == 1
    for folder in temp.glob("SB3-*"):
        folder.rmdir()
    cfg = collect_config(tmp_path / "ds", kwargs=TINY_PPO, total_steps=256, splits=["test"])
    assert collect(cfg, workers=1, progress=False)["runs_done"] == 1
    assert not list(temp.glob("SB3-*"))


def cfg_split(cfg):
    return cfg.env.task_split()


@pytest.mark.parametrize(
    ("algorithm", "kwargs"),
    [
        ("A2C", {"n_steps": 8}),
        ("DQN", {"learning_starts": 100, "buffer_size": 2000}),
        # An SB3 class by module:Class; YAML's string "1e-3" is read as a number.
        ("stable_baselines3:A2C", {"n_steps": 8, "learning_rate": "1e-3"}),
    ],
)
def test_a2c_dqn_and_sb3_classes_collect(tmp_path, algorithm, kwargs):
    cfg = collect_config(
        tmp_path, algorithm=algorithm, kwargs=kwargs, total_steps=800, splits=["train"]
    )
    assert collect(cfg, workers=1, progress=False)["runs_done"] == 2
    history = read_history(tmp_path / "train-task0000-seed0.h5")
    assert history.metadata["algorithm"] == algorithm
    assert replay(history) == 4 * 10


def test_ppo_minigrid_images_use_the_small_cnn(tmp_path):
    cfg = collect_config(
        tmp_path,
        family="MiniGridEmpty",
        kwargs=TINY_PPO,
        total_steps=400,
        splits=["test"],
        n_envs=2,
    )
    collect(cfg, workers=1, progress=False)
    history = read_history(tmp_path / "test-task0000-seed0.h5")
    assert history.observations.shape == (2, 200, 7, 7, 3)  # channels last, as the env gives
    assert history.observations.dtype == np.uint8
    replay(history)


def _source(family: str, kwargs: dict):
    from stable_baselines3.common.vec_env import DummyVecEnv

    fam = envs.make_family(family)
    task = fam.split(0).train[0]
    venv = RecordingVecEnv(DummyVecEnv([lambda: fam.make_env(task)] * 2), 8)
    return make_source("PPO", venv, 0, kwargs)


def test_observe_return_shows_the_policy_its_return_so_far_and_records_the_env_obs(tmp_path):
    """Key-to-Door's MLP policy sees (x, y, return so far); histories keep (x, y)."""
    family = envs.make_family("DarkKeyToDoor", size=3, episode_length=6)
    task = {"key": [0, 1], "door": [2, 2]}
    inner = DummyVecEnv([lambda: family.make_env(task)] * 3)
    inner.seed(0)  # random start cells, seeded: the same walk every run
    view = ReturnSoFar(inner, levels=2)
    assert list(view.observation_space.nvec) == [3, 3, 3]
    rng = np.random.default_rng(0)
    obs, returns, seen = view.reset(), np.zeros(3), set()
    for _ in range(120):
        assert (obs[:, 2] == np.clip(returns, 0, 2)).all()
        obs, rewards, dones, infos = view.step(rng.integers(0, 5, size=3))
        returns += rewards
        for i in np.flatnonzero(dones):  # SB3 bootstraps from the ended episode's last view
            assert infos[i]["terminal_observation"][2] == min(returns[i], 2)
            assert (
                infos[i]["terminal_observation"][:2] == inner.buf_infos[i]["terminal_observation"]
            ).all()
        seen |= set(returns.tolist())
        returns[dones] = 0
    assert {1.0, 2.0} <= seen  # the key and the door were each reached by the random walk
    bandit = envs.make_family("Bandit")  # Discrete(1) observations
    with pytest.raises(UserError, match="needs a MultiDiscrete or 1-D Box"):
        ReturnSoFar(DummyVecEnv([lambda: bandit.make_env(bandit.split(0).train[0])]), 2)

    robot = envs.make_family("PointRobot")  # a 1-D Box: the return so far as one more float
    box = ReturnSoFar(DummyVecEnv([lambda: robot.make_env(robot.split(0).train[0])] * 2), levels=1)
    assert box.observation_space.shape == (3,)
    obs, total = box.reset(), np.zeros(2)
    for _ in range(5):
        assert np.allclose(obs[:, 2], total, atol=1e-5)
        obs, rewards, dones, _ = box.step(np.zeros((2, 2), dtype=np.float32))
        total = np.where(dones, 0.0, total + rewards)

    cfg = collect_config(
        tmp_path,
        family="DarkKeyToDoor",
        kwargs={"n_steps": 32, "observe_return": 2},
        total_steps=256,
        n_envs=2,
        splits=["train"],
    )
    collect(cfg, workers=1, progress=False)
    for path in sorted(tmp_path.glob("*.h5")):
        history = read_history(path)
        assert history.observations.shape[-1] == 2  # the env's (x, y), not the policy's view
        assert replay(history) == 2 * 2  # 2 streams x 2 episodes, replayed step by step
    assert _source("DarkKeyToDoor", {"observe_return": 2}).model.observation_space.shape == (3,)


def test_sb3_policies_from_config_strings():
    source = _source("DarkRoom", {"policy_kwargs": {"activation_fn": "relu", "net_arch": [16]}})
    assert source.model.policy.activation_fn is nn.ReLU
    assert source.model.policy.mlp_extractor.policy_net[0].out_features == 16
    image = _source("MiniGridEmpty", {})  # (7, 7, 3) images: the small CNN, not NatureCNN
    extractor = image.model.policy.features_extractor
    assert isinstance(extractor, SmallCNN) and extractor.features_dim == 64
    # YAML reads 1e-5 as a string at any depth; nested kwargs reach SB3 and torch as floats.
    nested = _source("DarkRoom", {"policy_kwargs": {"optimizer_kwargs": {"eps": "1e-5"}}})
    assert nested.model.policy.optimizer.defaults["eps"] == 1e-5
    assert yaml_floats({"a": [{"b": "2e-3"}, "x1e3"], "c": ("-1E+2",)}) == {
        "a": [{"b": 2e-3}, "x1e3"],
        "c": (-100.0,),
    }


@pytest.mark.parametrize(
    ("family", "kwargs", "expected"),
    [
        pytest.param(
            "DarkKeyToDoor",
            {"observe_return": "yes"},
            "observe_return must be an int >= 1",
            id="observe-return-not-an-int",
        ),
        pytest.param(
            "DarkRoom",
            {"policy_kwargs": {"activation_fn": "swish"}},
            "unknown activation_fn 'swish'",
            id="unknown-activation",
        ),
    ],
)
def test_bad_source_kwargs_are_refused(family, kwargs, expected):
    refused_in_one_line(lambda: _source(family, kwargs), expected)


def test_ucb_on_bandit_records_and_learns(tmp_path):
    cfg = bandit_config(tmp_path, total_steps=4 * 1000)
    collect(cfg, workers=1, progress=False)
    for path in sorted(tmp_path.glob("*.h5")):
        history = read_history(path)
        assert replay(history) == 4 * 1000  # one pull per episode, every step terminates
        assert history.terminations.all() and not history.truncations.any()
        means = np.array(history.metadata["task"]["means"])
        for s in range(4):  # UCB tries every arm once first
            assert sorted(history.actions[s, :10]) == list(range(10))
        # The arms pulled last are far better than random: UCB has learnt the task.
        pulled = means[history.actions[:, -200:]].mean()
        assert pulled > means.mean() + 0.6 * (means.max() - means.mean()), path.name
    runs = load_manifest(tmp_path)["runs"]
    assert np.mean([r["last_return"] for r in runs]) > np.mean([r["first_return"] for r in runs])


def test_histories_record_the_oracles_action_in_the_state_of_every_step(tmp_path):
    """Key-to-Door's oracle reads hidden state (is the key held?); here it is rebuilt from the
    rewards, independently: the key is held once the episode has paid its first reward."""
    cfg = collect_config(tmp_path, "DarkKeyToDoor", kwargs=TINY_PPO, total_steps=1000)
    collect(cfg, workers=1, progress=False)
    steps_with_key = 0
    for path in sorted(tmp_path.glob("*.h5")):
        history = read_history(path)
        assert history.metadata["optimal_actions"]
        task = history.metadata["task"]
        for s in range(history.num_streams):
            paid = 0.0  # this episode's return before the step
            for t in range(history.num_steps):
                target = task["door"] if paid > 0 else task["key"]
                expected = step_toward(history.observations[s, t], np.asarray(target))
                assert history.optimal_actions[s, t] == expected, (path.name, s, t)
                steps_with_key += paid > 0
                done = history.terminations[s, t] or history.truncations[s, t]
                paid = 0.0 if done else paid + history.rewards[s, t]
    assert steps_with_key > 50  # the oracle's second stage was checked too


def test_same_config_and_seed_give_identical_arrays_in_process_and_in_pool(tmp_path):
    cfg_a = collect_config(tmp_path / "a", kwargs=TINY_PPO, total_steps=1000, seeds=[3])
    cfg_b = collect_config(tmp_path / "b", kwargs=TINY_PPO, total_steps=1000, seeds=[3])
    collect(cfg_a, workers=1, progress=False)
    summary = collect(cfg_b, workers=2, progress=False)  # spawned worker processes
    assert summary["runs_done"] == 3
    for path in sorted((tmp_path / "a").glob("*.h5")):
        a, b = read_history(path), read_history(tmp_path / "b" / path.name)
        for name in ("observations", "actions", "rewards", "terminations", "truncations"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert (
            a.metadata["config"]["collect"]["output_dir"]
            != b.metadata["config"]["collect"]["output_dir"]
        )
        a.metadata.pop("config"), b.metadata.pop("config")
        assert a.metadata == b.metadata


_KILLABLE = """
import json, sys
from ad.data.collect import collect
from ad.config import config_from_dict
if __name__ == "__main__":
    cfg = config_from_dict(json.load(open(sys.argv[1])))
    collect(cfg, workers=int(sys.argv[2]), progress=False)
"""


def _wait_until_group_is_dead(pgid: int, timeout: float = 10.0) -> None:
    """SIGKILL is delivered asynchronously: wait until no process of the group runs any more
    (zombies awaiting their reaper count as dead)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError):
                fields = stat.read_text().rpartition(")")[2].split()
                if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp
                    alive.append(stat)
        if not alive:
            return
        time.sleep(0.05)


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_then_rerun_resumes_without_loss_or_duplicates(tmp_path, workers):
    out = tmp_path / "ds"
    cfg = bandit_config(out, total_steps=4 * 6000, seeds=[0, 1], splits=["train", "test"])
    expected = {job["file"] for job in plan_runs(cfg, cfg_split(cfg))}
    assert len(expected) == 8
    (tmp_path / "cfg.json").write_text(json.dumps(config_to_dict(cfg)))
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE, str(tmp_path / "cfg.json"), str(workers)],
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("*.h5")) and time.monotonic() < deadline:
            assert proc.poll() is None, "collect ended before it could be killed"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole process group (pool workers too)
        proc.wait()
    _wait_until_group_is_dead(proc.pid)
    survivors = sorted(out.glob("*.h5"))
    assert 1 <= len(survivors) < len(expected)
    for path in survivors:
        validate_history(path)  # every file with a final name is complete
    contents = {p.name: p.read_bytes() for p in survivors}
    # Temporary files: of the killed writers (dead pids on this host), of another host's shard.
    dead = out / f".train-task0002-seed1.h5.{socket.gethostname()}-{proc.pid}.tmp"
    dead.write_bytes(b"half a file")
    other_host = out / ".train-task0001-seed1.h5.otherhost-123.tmp"
    other_host.write_bytes(b"being written elsewhere")

    summary = collect(cfg, workers=workers, progress=False)
    assert summary["runs_skipped"] == len(survivors)
    assert summary["runs_done"] == len(expected) - len(survivors)
    assert {p.name for p in out.glob("*.h5")} == expected
    assert list(out.glob(".*.tmp")) == [other_host]  # another host's file is not ours to delete
    for name, before in contents.items():
        assert (out / name).read_bytes() == before  # kept, not rewritten
    for path in out.glob("*.h5"):
        validate_history(path)
    listed = [r["file"] for r in load_manifest(out)["runs"]]
    assert sorted(listed) == sorted(expected)  # each run once
    summary = collect(cfg, workers=workers, progress=False)  # a third run has nothing to do
    assert (summary["runs_done"], summary["runs_skipped"]) == (0, len(expected))


def test_corrupt_file_of_this_shard_is_recollected(tmp_path):
    cfg = bandit_config(tmp_path)
    collect(cfg, workers=1, progress=False)
    path = tmp_path / "train-task0001-seed0.h5"
    before = read_history(path).actions
    path.write_bytes(path.read_bytes()[:1000])
    summary = collect(cfg, workers=1, progress=False)
    assert (summary["runs_done"], summary["runs_skipped"]) == (1, 2)
    np.testing.assert_array_equal(read_history(path).actions, before)


def test_resume_validates_data_not_only_structure(tmp_path):
    cfg = bandit_config(tmp_path, compression=None)
    for shard in ((0, 2), (1, 2)):  # tasks 0, 2 and task 1
        collect(cfg, workers=1, progress=False, shard=shard)
    path = tmp_path / "train-task0001-seed0.h5"
    before = read_history(path).actions
    flip_a_data_byte(path, stream=1)  # the structure still reads: only the data tell
    refused_in_one_line(lambda: validate_history(path), "reading its data failed")
    corrupt = path.read_bytes()

    # The other shard neither skips it as its own nor deletes it, and lists it as invalid.
    summary = collect(cfg, workers=1, progress=False, shard=(0, 2))
    assert (summary["runs_done"], summary["runs_skipped"]) == (0, 2)
    assert path.read_bytes() == corrupt
    manifest = load_manifest(tmp_path)
    assert manifest["invalid_files"] == [path.name]
    assert [r["file"] for r in manifest["runs"]] == [f"train-task000{i}-seed0.h5" for i in (0, 2)]

    summary = collect(cfg, workers=1, progress=False, shard=(1, 2))  # its own shard redoes it
    assert (summary["runs_done"], summary["runs_skipped"]) == (1, 0)
    validate_history(path)
    np.testing.assert_array_equal(read_history(path).actions, before)
    manifest = load_manifest(tmp_path)
    assert manifest["invalid_files"] == [] and len(manifest["runs"]) == 3


def test_manifest_writes_wait_for_the_lock(tmp_path):
    collect(bandit_config(tmp_path), workers=1, progress=False)
    (tmp_path / "manifest.json").unlink()
    with manifest_lock(tmp_path):  # another shard scanning and writing
        merging = threading.Thread(target=merge_manifest, args=(tmp_path,))
        merging.start()
        merging.join(timeout=1.0)
        assert merging.is_alive() and not (tmp_path / "manifest.json").exists()
    merging.join(timeout=60)
    assert not merging.is_alive()
    assert len(load_manifest(tmp_path)["runs"]) == 3


def test_shards_together_equal_the_unsharded_collection(tmp_path):
    whole = bandit_config(tmp_path / "whole", seeds=[0, 1], splits=["train", "test"])
    collect(whole, workers=1, progress=False)
    sharded = bandit_config(tmp_path / "sharded", seeds=[0, 1], splits=["train", "test"])
    first = collect(sharded, shard=(0, 2), workers=1, progress=False)
    second = collect(sharded, shard=(1, 2), workers=1, progress=False)
    assert first["runs_planned"] + second["runs_planned"] == 8
    names = {p.name for p in (tmp_path / "whole").glob("*.h5")}
    assert {p.name for p in (tmp_path / "sharded").glob("*.h5")} == names
    manifest_whole = load_manifest(tmp_path / "whole")
    merged = merge_manifest(tmp_path / "sharded")
    assert merged == load_manifest(tmp_path / "sharded")
    for a, b in zip(merged["runs"], manifest_whole["runs"], strict=True):
        # Same runs with the same data (only the output_dir inside the metadata differs).
        assert {**a, "sha256": 0, "bytes": 0} == {**b, "sha256": 0, "bytes": 0}
        actions = [read_history(tmp_path / d / a["file"]).actions for d in ("whole", "sharded")]
        np.testing.assert_array_equal(*actions)
    assert merged["split"] == manifest_whole["split"]


@pytest.fixture(scope="module")
def collected_with_a_corrupt_file(tmp_path_factory) -> Path:
    """A bandit collection whose first file (sorted first: checked before the others) was cut
    short; the tests that share it must leave it as it is."""
    out = tmp_path_factory.mktemp("collected")
    collect(bandit_config(out), workers=1, progress=False)
    corrupt = out / "train-task0000-seed0.h5"
    corrupt.write_bytes(corrupt.read_bytes()[:1000])
    return out


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"total_steps": 800}, id="total-steps"),
        pytest.param({"algorithm_kwargs": {"c": 0.5}}, id="algorithm-kwargs"),
    ],
)
def test_files_of_another_config_are_refused_and_nothing_is_lost(
    collected_with_a_corrupt_file, changes
):
    out = collected_with_a_corrupt_file
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    changed = bandit_config(out, **changes)
    refused_in_one_line(
        lambda: collect(changed, workers=1, progress=False), "different config", "output_dir"
    )
    # A refused call changes nothing: not the corrupt file, the config, nor the manifest.
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_output_dir_wins_over_train_dataset_and_a_summary_is_printed(tmp_path, capsys):
    cfg = config_from_dict(
        {**config_to_dict(bandit_config(tmp_path / "out")), "train": {"dataset": str(tmp_path)}}
    )
    assert cfg.dataset_dir == tmp_path  # what training reads; collect ignores it
    assert cfg.collect_dir == tmp_path / "out"
    collect(cfg, workers=1, progress=False)
    assert len(list((tmp_path / "out").glob("*.h5"))) == 3
    assert not list(tmp_path.glob("*.h5")) and not (tmp_path / "manifest.json").exists()
    captured = capsys.readouterr()  # progress=False: no bar, but the one-line summary
    assert captured.out.startswith("collect: 3 runs done, 0 skipped, 0 failed; 1200 env steps")
    assert "bytes written to" in captured.out and len(captured.out.splitlines()) == 1
    default = config_from_dict({"name": "x", "train": {"dataset": str(tmp_path)}})
    assert default.collect_dir == Path("learning_histories") / "x"


def test_jobs_and_results_cross_the_executor_seam_as_plain_picklable_data(tmp_path):
    """Another executor (e.g. Ray tasks) plugs in at execute(jobs, workers, progress): it needs
    run_one importable by reference, and jobs and results that pickle."""
    cfg = bandit_config(tmp_path)
    common = {"config": config_to_dict(cfg), "dataset_dir": str(tmp_path), "versions": {}}
    jobs = [{**job, **common} for job in plan_runs(cfg, cfg_split(cfg))]
    assert pickle.loads(pickle.dumps(run_one)) is run_one
    assert pickle.loads(pickle.dumps(jobs)) == jobs
    results = execute(jobs, workers=1, progress=False)
    assert sorted(r["file"] for r in results) == sorted(job["file"] for job in jobs)
    assert all(r["ok"] and r["steps"] == 400 for r in results)
    assert pickle.loads(pickle.dumps(results)) == results
    # run_one called directly, as a remote task would, writes the same history.
    again = run_one({**jobs[0], "dataset_dir": str(tmp_path / "again")})
    assert again["ok"] and again["file"] == jobs[0]["file"]
    np.testing.assert_array_equal(
        read_history(tmp_path / "again" / jobs[0]["file"]).actions,
        read_history(tmp_path / jobs[0]["file"]).actions,
    )


def test_collect_exports_only_what_it_owns():
    module = importlib.import_module("ad.data.collect")
    assert module.__all__ == ["collect"]
    for name in ("inspect", "merge_manifest", "write_manifest", "run_one", "plan_runs"):
        assert not hasattr(module, name), f"{name} has its own module; import it from there"


class BoxActionEnv(gym.Env):
    observation_space = spaces.Discrete(1)
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return 0, {}

    def step(self, action):
        return 0, 0.0, False, True, {}


class BoxActionFamily(TaskFamily):
    """A family with continuous actions, which DQN may not collect."""

    name = "BoxAction"
    env_id = "BoxAction-v0"
    default_num_test = 1
    default_num_validation = 1
    episode_length = 1

    def all_tasks(self):
        return [{"i": i} for i in range(4)]

    def validate_task(self, task):
        return task

    def make_env(self, task):
        return BoxActionEnv()

    def optimal_return(self, task):
        return 0.0

    def random_return(self, task):
        return 0.0


class FlakySource(SourceAlgorithm):
    """Always pulls arm 0; fails on purpose with seed 1."""

    def learn(self, total_steps: int) -> None:
        if self.seed == 1:
            raise RuntimeError("flaky source failed on purpose")
        self.venv.reset()
        for _ in range(total_steps // self.venv.num_envs):
            self.venv.step(np.zeros(self.venv.num_envs, np.int64))


def _error(cfg, **kwargs) -> str:
    return refused_in_one_line(lambda: collect(cfg, progress=False, **kwargs))


# Bad collect configs, each built into a folder (``out``) that a refusal must leave unmade.


def _unknown_algorithm(out: Path):
    return bandit_config(out, algorithm="SACX")


def _dqn_on_box_actions(out: Path):
    return collect_config(out, family=f"{__name__}:BoxActionFamily", algorithm="DQN")


def _unwritable_output_dir(out: Path):
    out.parent.mkdir(parents=True, exist_ok=True)
    (out.parent / "file").write_text("a regular file")
    return bandit_config(out.parent / "file" / "ds")


@pytest.mark.parametrize(
    ("make_config", "kwargs", "expected"),
    [
        pytest.param(_unknown_algorithm, {}, "unknown source algorithm 'SACX'", id="unknown"),
        pytest.param(_dqn_on_box_actions, {}, "needs a Discrete action space", id="dqn-box"),
        pytest.param(
            lambda out: bandit_config(out, algorithm="SAC"),
            {},
            "SAC needs a Box action space",
            id="sac-discrete",
        ),
        pytest.param(
            lambda out: bandit_config(out, algorithm_kwargs={"exploration": 1.0}),
            {},
            "bad collect.algorithm_kwargs for UCB",
            id="ucb-kwarg-typo",
        ),
        pytest.param(
            lambda out: collect_config(out, kwargs={"learning_rat": 1e-3}),
            {},
            "bad collect.algorithm_kwargs for PPO",
            id="ppo-kwarg-typo",
        ),
        pytest.param(
            lambda out: collect_config(out, kwargs={"learning_rate": "fast"}),
            {},
            "bad collect.algorithm_kwargs for PPO",
            id="ppo-string-lr",
        ),
        pytest.param(
            lambda out: bandit_config(out, seeds=["a"]),
            {},
            "collect.seeds must be integers",
            id="string-seed",
        ),
        pytest.param(
            _unwritable_output_dir, {}, "choose a writable collect.output_dir", id="unwritable"
        ),
        pytest.param(bandit_config, {"shard": (2, 2)}, "bad shard", id="shard-out-of-range"),
        pytest.param(
            lambda out: bandit_config(out, algorithm="nope:Algo"),
            {},
            "No module named 'nope'",
            id="missing-module",
        ),
    ],
)
def test_bad_input_gives_one_line_errors(tmp_path, make_config, kwargs, expected):
    out = tmp_path / "out"
    assert expected in _error(make_config(out), **kwargs)
    assert not out.exists()


def test_failed_runs_are_reported_after_the_others_finish(tmp_path):
    cfg = bandit_config(tmp_path, algorithm=f"{__name__}:FlakySource", seeds=[0, 1])
    message = _error(cfg, workers=1)
    assert "3 of 6 runs failed" in message and "flaky source failed on purpose" in message
    assert "re-run the same command" in message
    manifest = load_manifest(tmp_path)
    assert sorted(r["seed"] for r in manifest["runs"]) == [0, 0, 0]
    history = read_history(tmp_path / "train-task0000-seed0.h5")
    assert (history.actions == 0).all()
    replay(history)


def test_inspect_tabulates_plots_and_refuses_corrupt_files(tmp_path):
    collect(bandit_config(tmp_path, splits=["train", "test"]), workers=1, progress=False)
    table = inspect(tmp_path)
    plot_dataset_curves(tmp_path)
    lines = table.splitlines()
    assert "4 valid histories" in lines[0] and "UCB" in lines[0]
    assert sum(line.startswith(("train ", "test ")) for line in lines) == 4
    assert any(line.startswith("train: 3 runs") for line in lines)
    assert (tmp_path / "source_curves.png").read_bytes().startswith(b"\x89PNG")
    curves = source_curves(tmp_path, load_manifest(tmp_path)["runs"])
    assert list(curves) == ["train task 0", "train task 1", "train task 2", "test task 0"]
    history = read_history(tmp_path / "train-task0001-seed0.h5")
    for got, want in zip(curves["train task 1"], history.episode_returns(), strict=True):
        np.testing.assert_allclose(got, want)
    path = tmp_path / "train-task0002-seed0.h5"
    path.write_bytes(path.read_bytes()[:-100])
    refused_in_one_line(lambda: inspect(tmp_path), "train-task0002-seed0.h5")
    with pytest.raises(UserError, match="no learning histories"):
        inspect(tmp_path / "empty")


def _cli_error(*args: str) -> str:
    """Run the installed ad-collect on bad input; returns its one error line."""
    result = subprocess.run(
        [str(SCRIPTS / "ad-collect"), "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=checkout_env(),
    )
    assert result.returncode != 0, result.stderr
    return one_error_line(result.stderr)


def _config_file(tmp_path: Path, cfg) -> str:
    path = tmp_path / "config.yaml"
    save_config(cfg, path)
    return str(path)


def _wrong_episode_shape(path: Path) -> None:
    returns = read_episodes(path)["episode_returns"]
    rewrite_history(path, datasets={"episode_returns": returns[:1]})


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:-100]), "not a valid learning history"),
        (lambda p: flip_a_data_byte(p, stream=2), "reading its data failed"),
        (_wrong_episode_shape, "episode_returns is shaped (1,)"),
        (lambda p: set_schema_version(p, 7), "schema version 7"),
    ],
    ids=["truncated", "corrupt-data", "episode-shape", "schema-version"],
)
def test_cli_inspect_refuses_bad_files_in_one_line(tmp_path, damage, expected):
    collect(bandit_config(tmp_path, compression=None), workers=1, progress=False)
    path = tmp_path / "train-task0001-seed0.h5"
    damage(path)
    message = _cli_error("--inspect", str(tmp_path))
    assert expected in message and path.name in message


@pytest.mark.parametrize(
    ("make_config", "expected"),
    [
        pytest.param(_unknown_algorithm, "unknown source algorithm 'SACX'", id="unknown"),
        pytest.param(_dqn_on_box_actions, "DQN needs a Discrete action space", id="dqn-box"),
        pytest.param(
            _unwritable_output_dir, "choose a writable collect.output_dir", id="unwritable"
        ),
    ],
)
def test_cli_collect_refuses_bad_input_in_one_line(tmp_path, make_config, expected):
    out = tmp_path / "out"
    assert expected in _cli_error("--config", _config_file(tmp_path, make_config(out)))
    assert not out.exists()


def test_cli_collect_refuses_a_folder_of_another_schema_version_in_one_line(tmp_path):
    versioned = bandit_config(tmp_path / "v")
    collect(versioned, workers=1, progress=False)
    set_schema_version(tmp_path / "v" / "train-task0000-seed0.h5", 7)
    message = _cli_error("--config", _config_file(tmp_path, versioned))
    assert "schema version 7" in message and "another collect.output_dir" in message


@pytest.mark.slow
def test_darkroom_histories_show_learning(tmp_path):
    """With the documented default (configs/darkroom_quick.yaml), the data hold learning: the
    last-episode returns are clearly above the first-episode returns on most tasks."""
    overrides = [f"collect.output_dir={tmp_path}", "env.num_train_tasks=2"]
    overrides += ["env.num_validation_tasks=1", "env.num_test_tasks=1"]  # fewer, for time
    cfg = load_config(ROOT / "configs" / "darkroom_quick.yaml", overrides)
    default = load_config(ROOT / "configs" / "darkroom_quick.yaml")
    # Only where the files go differs from the documented collect settings.
    assert (
        dataclasses.replace(cfg.collect, output_dir=default.collect.output_dir) == default.collect
    )
    collect(cfg, workers=2, progress=False)
    runs = load_manifest(tmp_path)["runs"]
    assert len(runs) == 12  # (2 train, 1 validation, 1 test) x 3 seeds
    improved = [r["last_return"] > r["first_return"] + 5 for r in runs]
    assert sum(improved) >= 10, [(r["first_return"], r["last_return"]) for r in runs]


def test_image_policy_defaults_follow_the_policy():
    from stable_baselines3.common.torch_layers import FlattenExtractor

    from ad.data.sources import SmallCNN

    mlp = _source("DarkRoomPixels", {"policy": "MlpPolicy"}).model.policy
    assert isinstance(mlp.features_extractor, FlattenExtractor) and mlp.normalize_images
    cnn = _source("DarkRoomPixels", {}).model.policy  # frames: CnnPolicy with SmallCNN
    assert isinstance(cnn.features_extractor, SmallCNN) and not cnn.normalize_images
