"""AD^eps's source: the noisy demonstrator (ad.data.sources.NoisyDemonstrator), collected for real."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from stable_baselines3 import PPO

import envs
from ad.data.collect import collect
from ad.data.histories import read_history
from ad.data.manifest import load_manifest
from envs.darkroom import step_toward
from tests.factories import collect_config, refused_in_one_line


def _histories(cfg) -> list:
    collect(cfg, workers=1, progress=False)
    return [read_history(path) for path in sorted(Path(cfg.collect.output_dir).glob("*.h5"))]


def _oracle_agreement(history) -> np.ndarray:
    """(S, T): where the recorded Dark Room action is the oracle's at that step's observation."""
    goal = np.asarray(history.metadata["task"]["goal"])
    oracle = [[step_toward(obs, goal) for obs in stream] for stream in history.observations]
    return np.asarray(oracle) == history.actions


def test_the_noise_falls_to_none_and_the_history_ends_optimal(tmp_path):
    cfg = collect_config(tmp_path, algorithm="NoisyDemonstrator", n_envs=4, total_steps=4000)
    for history in _histories(cfg):  # 1000 steps (50 episodes) per stream
        agree = _oracle_agreement(history)
        # eps is ~1 over the first 100 steps: random actions, one in five matches the oracle
        assert 0.1 < agree[:, :100].mean() < 0.35
        assert agree[:, 900:].all()  # eps is 0 after 90% of the history
        optimal = history.metadata["optimal_return"]
        assert all((returns[-4:] == optimal).all() for returns in history.episode_returns())
    runs = load_manifest(tmp_path)["runs"]
    assert all(r["last_return"] > r["first_return"] + 10 for r in runs)


def test_max_perf_below_one_keeps_that_much_noise_and_seeds_repeat(tmp_path):
    kwargs = {"max_perf": 0.5, "decay_fraction": 0.5}
    cfg = collect_config(tmp_path / "a", "DarkRoom", "NoisyDemonstrator", kwargs, total_steps=4000)
    (history, *_) = _histories(cfg)
    # from half-way eps stays 0.5: the oracle's action, or a random one that matches 1 in 5
    assert 0.5 < _oracle_agreement(history)[:, 600:].mean() < 0.7
    again = collect_config(
        tmp_path / "b", "DarkRoom", "NoisyDemonstrator", kwargs, total_steps=4000
    )
    assert np.array_equal(_histories(again)[0].actions, history.actions)


def test_box_actions_are_uniformly_random_with_chance_eps(tmp_path):
    cfg = collect_config(tmp_path, "PointRobot", "NoisyDemonstrator", n_envs=2, total_steps=800)
    for history in _histories(cfg):  # 400 steps per stream
        goal = np.asarray(history.metadata["task"]["goal"])
        greedy = np.clip(goal - history.observations.astype(np.float64), -0.1, 0.1)
        oracle = (np.abs(history.actions - greedy) < 1e-6).all(-1)  # (streams, steps)
        assert oracle[:, 360:].all()  # eps is 0 after 90% of the history
        assert oracle[:, :40].mean() < 0.2  # eps is ~1 at first: random actions
        early = history.actions[:, :40]
        assert early.min() < -0.05 and early.max() > 0.05 and np.abs(early).max() <= 0.1


def test_a_trained_policy_file_is_the_demonstrator_for_families_without_an_oracle(tmp_path):
    family = envs.make_family("PointRobot")
    model = PPO("MlpPolicy", family.make_env(family.split(0).train[0]), n_steps=64, seed=0)
    model.learn(64)
    model.save(tmp_path / "policy.zip")
    kwargs = {"demonstrator": str(tmp_path / "policy.zip")}
    cfg = collect_config(
        tmp_path / "h", "PointRobot", "NoisyDemonstrator", kwargs, n_envs=2, total_steps=400
    )
    for history in _histories(cfg):
        late = history.observations[:, -20:]
        acted = np.stack([model.predict(stream, deterministic=True)[0] for stream in late])
        np.testing.assert_allclose(history.actions[:, -20:], acted, atol=1e-6)


@pytest.mark.parametrize(
    ("family", "kwargs", "words"),
    [
        pytest.param(
            "examples.frozen_lake_family:FrozenLakeGoals",
            {},
            ("has none (TaskFamily.optimal_action)", "demonstrator"),
            id="family-without-oracle",
        ),
        pytest.param(
            "DarkRoom",
            {"demonstrator": "missing.zip"},
            ("demonstrator file missing.zip does not exist",),
            id="missing-policy-file",
        ),
        pytest.param(
            "DarkRoom",
            {"demonstrator": "x.zip", "demonstrator_algorithm": "UCB"},
            ("demonstrator_algorithm UCB is not a stable-baselines3 algorithm",),
            id="not-an-sb3-algorithm",
        ),
        pytest.param(
            "DarkRoom",
            {"max_perf": 1.5},
            ("0 <= max_perf <= 1", "collect.algorithm_kwargs"),
            id="max-perf-above-one",
        ),
        pytest.param(
            "DarkRoom", {"noise": 0.1}, ("bad collect.algorithm_kwargs",), id="unknown-keyword"
        ),
    ],
)
def test_bad_demonstrators_are_refused_before_any_run(tmp_path, family, kwargs, words):
    cfg = collect_config(tmp_path, family, "NoisyDemonstrator", kwargs, total_steps=400)
    refused_in_one_line(lambda: collect(cfg, workers=1, progress=False), *words)
    assert not list(tmp_path.glob("*.h5"))


def test_a_policy_of_other_spaces_is_refused(tmp_path):
    family = envs.make_family("PointRobot")
    PPO("MlpPolicy", family.make_env(family.split(0).train[0]), n_steps=64).save(tmp_path / "p")
    kwargs = {"demonstrator": str(tmp_path / "p.zip")}
    cfg = collect_config(tmp_path, "DarkRoom", "NoisyDemonstrator", kwargs, total_steps=400)
    refused_in_one_line(
        lambda: collect(cfg, workers=1, progress=False), "acts on Box", "train it on this family"
    )
