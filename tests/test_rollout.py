"""In-context rollouts: batched and cached equals unbatched and uncached, tokens as in training,
seeded per-row sampling. Real Dark Room envs and small, randomly initialised models."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs
from ad.errors import UserError
from ad.evaluation.rollout import eval_env_seed, rollout
from ad.learn.windows import prev_step_inputs
from envs.darkroom import DarkRoom
from tests.factories import VariableLengthDarkRoom, make_config, random_model


def reference_rollout(model, family, task, env_seed, num_episodes, window=None):
    """One (task, seed), no batch, no cache: forward() over the WHOLE sequence at every step
    (forward applies the model's sliding-window band itself), or over its last ``window`` steps
    only; argmax actions."""
    env = family.make_env(task)
    obs, _ = env.reset(seed=env_seed)
    tokens = {"obs": [obs], "act": [model.num_actions], "rew": [0.0], "done": [True]}
    actions, returns, running = [], [], 0.0
    while len(returns) < num_episodes:
        start = 0 if window is None else max(len(tokens["act"]) - window, 0)
        logits, _ = model(
            torch.tensor(np.array(tokens["obs"][start:]))[None],
            torch.tensor(tokens["act"][start:])[None],
            torch.tensor(tokens["rew"][start:], dtype=torch.float32)[None],
            torch.tensor(tokens["done"][start:])[None],
        )
        action = int(logits[0, -1].argmax())
        obs, reward, terminated, truncated, _ = env.step(action)
        actions.append(action)
        running += reward
        done = terminated or truncated
        if done:
            returns.append(running)
            running = 0.0
            obs, _ = env.reset()
        for key, value in zip(tokens, (obs, action, reward, done), strict=True):
            tokens[key].append(value)
    return actions, returns


class _ActionLog(gym.Wrapper):
    def __init__(self, env, log):
        super().__init__(env)
        self.log = log

    def step(self, action):
        self.log.append(int(action))
        return self.env.step(action)


def record_actions(family_cls, logs: list):
    """A family class whose envs append their actions to a new list in ``logs``."""

    class Logged(family_cls):
        def make_env(self, task):
            logs.append([])
            return _ActionLog(super().make_env(task), logs[-1])

    return Logged


@pytest.mark.parametrize("decoding", ["kv_cache", "reencode"])
def test_batched_cached_rollout_takes_the_actions_of_an_uncached_unbatched_loop(tmp_path, decoding):
    """kv_cache: forward() over the whole sequence; window: forward() over the last c steps."""
    cfg = make_config(tmp_path)  # context 16 tokens, episodes of 5..11 steps: the window slides
    logs: list = []
    family = record_actions(VariableLengthDarkRoom, logs)()
    model = random_model(cfg, envs.make_family("DarkRoom"), seed=6)
    tasks = list(family.split(0).test[:3])
    num_seeds, num_episodes = 2, 4
    returns = rollout(
        model, family, tasks, num_seeds, num_episodes, "argmax", seed=11, decoding=decoding
    )
    window = cfg.model.context_steps if decoding == "reencode" else None
    logs = logs[:]  # the batch's envs, before the reference loop adds its own
    assert returns.shape == (3, num_seeds, num_episodes)
    lengths = set()
    for i, task in enumerate(tasks):
        for j in range(num_seeds):
            env_seed = eval_env_seed(11, i, j)
            actions, ref_returns = reference_rollout(
                model, family, task, env_seed, num_episodes, window
            )
            batched = logs[i * num_seeds + j]
            assert batched[: len(actions)] == actions
            np.testing.assert_array_equal(returns[i, j], ref_returns)
            lengths.add(len(actions))
    assert len(lengths) > 1 and min(lengths) > cfg.model.context_steps  # ragged, past the window
    assert len({a for log in logs for a in log}) >= 3  # the model's actions do vary
    assert returns.std() > 0  # and so do the rewards it sees


def test_rollout_tokens_are_built_as_the_training_windows(tmp_path):
    """What the model sees while acting is what training feeds it for the same steps: the
    rollout's transitions, turned into inputs by training's own prev_step_inputs, give back the
    rollout's argmax actions under one full forward pass (across episodes and window slides)."""
    cfg = make_config(tmp_path)  # context 16 tokens, episodes of 5..11 steps: the window slides
    family = VariableLengthDarkRoom()
    model = random_model(cfg, envs.make_family("DarkRoom"), seed=3)
    trace: dict = {}
    rollout(model, family, family.split(0).test[:2], 2, 4, "argmax", seed=5, transitions=trace)
    num_rows, num_steps = trace["actions"].shape
    assert num_rows == 4 and num_steps > 2 * cfg.model.context_steps
    assert (trace["dones"].sum(1) >= 4).all()  # every row ended its 4 episodes
    for b in range(num_rows):
        prev = prev_step_inputs(
            trace["actions"][b], trace["rewards"][b], trace["dones"][b], model.num_actions
        )
        inputs = [trace["observations"][b], *prev]
        logits, _ = model(*(torch.from_numpy(np.asarray(x))[None] for x in inputs))
        np.testing.assert_array_equal(logits[0].argmax(-1).numpy(), trace["actions"][b])


def test_sampling_is_seeded_and_restores_the_model_mode(tmp_path):
    cfg = make_config(tmp_path)
    family = envs.make_family("DarkRoom")
    model = random_model(cfg, family).train()
    tasks = family.split(0).test[:2]
    runs = []
    for seed in (0, 0, 1):
        logs: list = []
        fam = record_actions(DarkRoom, logs)()
        runs.append((rollout(model, fam, tasks, 2, 2, "sample", 1.0, seed), logs))
    assert model.training  # rollout is pure: the caller's mode comes back
    assert runs[0][1] == runs[1][1]
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] != runs[2][1]
    # A row's sampled actions are its own: the same (task, seed) alone gives the same actions.
    logs = []
    rollout(model, record_actions(DarkRoom, logs)(), tasks[:1], 1, 2, "sample", 1.0, 0)
    assert logs[0] == runs[0][1][0]


def test_rollout_refuses_zero_episodes(tmp_path):
    family = envs.make_family("DarkRoom")
    model = random_model(make_config(tmp_path), family)
    with pytest.raises(UserError, match="zero episodes"):
        rollout(model, family, family.split(0).test[:1], 1, 0)
