"""Box (continuous) actions end to end (issue 13): sources that record them, the action heads, the
Box action input, training windows, the rollout, and the refusals. The point robot is the family."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv

from ad.config import ModelConfig, config_from_dict, load_config
from ad.data.histories import read_history, write_history
from ad.data.recording import RecordingVecEnv
from ad.data.sources import check_action_space, make_source
from ad.data.spaces import space_to_json
from ad.errors import UserError
from ad.evaluation.rollout import action_rng, rollout
from ad.learn.action_heads import BinsHead, GaussianHead, make_action_head
from ad.learn.checkpoint import load_model
from ad.learn.windows import prev_step_inputs
from ad.pipeline import run_pipeline
from envs.pointrobot import PointRobot
from tests.factories import one_family

OBS = spaces.Box(-2.0, 2.0, (2,), np.float32)
ACT = spaces.Box(-0.1, 0.1, (2,), np.float32)
UNEVEN = spaces.Box(np.float32([-1.0, 0.0]), np.float32([1.0, 4.0]))


def small_config(**kwargs) -> ModelConfig:
    base = dict(embed_dim=32, num_layers=1, num_heads=2, ff_dim=64, context_steps=8)
    return ModelConfig(**{**base, "dropout": 0.0, "input_mask_prob": 0.0, **kwargs})


def box_inputs(batch: int, steps: int, space: spaces.Box = ACT, seed: int = 0) -> dict:
    """Random inputs whose target action is a fixed function of the observation."""
    gen = torch.Generator().manual_seed(seed)
    low, high = (torch.tensor(b, dtype=torch.float32) for b in (space.low, space.high))
    observations = torch.rand(batch, steps, 2, generator=gen) * 4 - 2
    targets = low + (high - low) * torch.sigmoid(3 * observations)  # (B, T, 2) inside the box
    prev = torch.cat([torch.full((batch, 1, 2), float("nan")), targets[:, :-1]], dim=1)
    return {
        "observations": observations,
        "prev_actions": prev,
        "prev_rewards": torch.rand(batch, steps, generator=gen),
        "prev_dones": torch.rand(batch, steps, generator=gen) < 0.2,
        "targets": targets,
    }


# --------------------------------------------------------------------------- heads


@pytest.mark.parametrize("head", ["bins", "gaussian"])
def test_each_box_head_learns_a_toy_batch(head):
    torch.manual_seed(0)
    model = one_family(small_config(action_head=head, action_bins=16), OBS, ACT)
    batch = box_inputs(8, 8)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        _, loss = model(**batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0] - 0.5, (losses[0], losses[-1])
    model.eval()
    with torch.no_grad():
        outputs, _ = model(**batch)
    actions = model.head.act(outputs[:, -1], "argmax", 1.0, [])
    error = np.abs(actions - batch["targets"][:, -1].numpy()).mean()
    assert error < 0.02, error  # the box is 0.2 wide: the deterministic action is close


def test_categorical_head_learns_and_is_the_discrete_default():
    torch.manual_seed(0)
    model = one_family(small_config(), OBS, 4)
    assert type(model.head).__name__ == "CategoricalHead" and model.num_actions == 4
    batch = box_inputs(8, 8)
    batch["targets"] = (batch["observations"][..., 0] > 0).long() * 3
    batch["prev_actions"] = torch.cat([torch.full((8, 1), 4), batch["targets"][:, :-1]], 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        _, loss = model(**batch)
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first / 3


def test_bins_are_uniform_over_each_dimensions_bounds():
    head = BinsHead(8, UNEVEN, num_bins=4)  # dim 0: [-1, 1], dim 1: [0, 4]
    actions = torch.tensor([[-1.0, 0.0], [1.0, 4.0], [-0.49, 1.01], [0.0, 2.0]])
    assert head.bin_of(actions).tolist() == [[0, 0], [3, 3], [1, 1], [2, 2]]
    centres = head.centres(np.array([[0, 0], [3, 3]]))
    np.testing.assert_allclose(centres, [[-0.75, 0.5], [0.75, 3.5]])
    assert head.bin_of(torch.from_numpy(centres)).tolist() == [[0, 0], [3, 3]]  # round trip
    logits = torch.full((1, 2 * 4), -30.0)
    logits[0, 2] = logits[0, 4 + 1] = 30.0  # dim 0 -> bin 2, dim 1 -> bin 1
    for mode in ("argmax", "sample"):
        np.testing.assert_allclose(
            head.act(logits, mode, 1.0, [np.random.default_rng(0)]), [[0.25, 1.5]]
        )


def test_gaussian_head_samples_around_its_mean_inside_the_box():
    head = GaussianHead(8, ACT)
    outputs = torch.tensor([[0.5, -0.2, np.log(0.1), np.log(0.1)]] * 2000)  # normalised mean
    np.testing.assert_allclose(head.act(outputs[:1], "argmax", 1.0, []), [[0.05, -0.02]])
    rngs = [np.random.default_rng(i) for i in range(2000)]
    samples = head.act(outputs, "sample", 1.0, rngs)
    np.testing.assert_allclose(samples.mean(0), [0.05, -0.02], atol=5e-4)
    np.testing.assert_allclose(samples.std(0), [0.01, 0.01], rtol=0.1)
    wide = torch.tensor([[0.0, 0.0, 2.0, 2.0]] * 200)
    far = head.act(wide, "sample", 1.0, [np.random.default_rng(i) for i in range(200)])
    assert far.dtype == np.float32 and np.abs(far).max() <= np.float32(0.1)  # clipped
    assert np.isclose(np.abs(far), 0.1).any()
    again = head.act(outputs[:3], "sample", 1.0, [np.random.default_rng(i) for i in range(3)])
    np.testing.assert_array_equal(again, samples[:3])  # per-row generators


def test_box_action_input_is_used_and_none_is_a_nan_row():
    torch.manual_seed(0)
    model = one_family(small_config(), OBS, ACT).eval()
    batch = box_inputs(2, 6)
    del batch["targets"]
    with torch.no_grad():
        out, _ = model(**batch)
        edited = dict(batch, prev_actions=batch["prev_actions"].clone())
        edited["prev_actions"][:, 3] += 0.05
        out2, _ = model(**edited)
    assert torch.equal(out[:, :3], out2[:, :3]) and not torch.allclose(out[:, 3], out2[:, 3])
    assert torch.isfinite(out).all()  # the NaN row of position 0 does not leak


def test_kv_cache_matches_forward_with_box_actions():
    torch.manual_seed(0)
    model = one_family(small_config(action_head="gaussian", num_layers=2), OBS, ACT).eval()
    batch = box_inputs(3, 20)
    with torch.no_grad():
        full, _ = model(*(batch[k] for k in ("observations", "prev_actions")),
                        batch["prev_rewards"], batch["prev_dones"])  # fmt: skip
    cache = model.init_cache(3)
    names = ("observations", "prev_actions", "prev_rewards", "prev_dones")
    stepped = torch.stack(
        [model.step(cache, *(batch[n][:, t] for n in names)) for t in range(20)], 1
    )
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=0)


def test_token_window_decodes_box_actions_as_forward_on_the_last_c_steps():
    torch.manual_seed(0)
    cfg = small_config(action_head="bins", num_layers=2, context_steps=8)
    model = one_family(cfg, OBS, ACT).eval()
    batch = box_inputs(3, 20)
    names = ("observations", "prev_actions", "prev_rewards", "prev_dones")
    window = model.init_cache(3, mode="reencode")
    for t in range(20):
        stepped = model.step(window, *(batch[n][:, t] for n in names))
        with torch.no_grad():
            alone, _ = model(*(batch[n][:, max(t - 7, 0) : t + 1] for n in names))
        torch.testing.assert_close(stepped, alone[:, -1], atol=1e-5, rtol=0)


def test_prev_step_inputs_of_box_actions():
    actions = np.arange(6, dtype=np.float32).reshape(3, 2)
    prev, rewards, dones = prev_step_inputs(actions, np.ones(3), np.zeros(3, bool), None)
    assert prev.dtype == np.float32 and np.isnan(prev[0]).all()
    np.testing.assert_array_equal(prev[1:], actions[:2])
    assert rewards[0] == 0 and dones[0]


# --------------------------------------------------------------------------- refusals


def _message(call) -> str:
    with pytest.raises(UserError) as info:
        call()
    text = str(info.value)
    assert text and "\n" not in text
    return text


def test_refusals_are_one_line():
    box, discrete = ACT, spaces.Discrete(3)
    assert "DQN needs a Discrete action space" in _message(lambda: check_action_space(box, "DQN"))
    assert "UCB needs a Discrete" in _message(lambda: check_action_space(box, "UCB"))
    assert "SAC needs a Box" in _message(lambda: check_action_space(discrete, "SAC"))
    assert "TD3 needs a Box" in _message(lambda: check_action_space(discrete, "TD3"))
    square = spaces.Box(-1, 1, (2, 2), np.float32)
    assert "not 1-D" in _message(lambda: check_action_space(square, "PPO"))
    unbounded = spaces.Box(-np.inf, np.inf, (2,), np.float32)
    assert "finite bounds" in _message(lambda: check_action_space(unbounded, "SAC"))
    check_action_space(box, "PPO"), check_action_space(box, "A2C"), check_action_space(box, "SAC")
    cfg = small_config(action_head="categorical")
    text = _message(lambda: one_family(cfg, OBS, ACT))
    assert "action_head=categorical needs Discrete actions" in text and "bins or gaussian" in text
    for head in ("bins", "gaussian"):
        text = _message(lambda h=head: make_action_head(h, 16, spaces.Discrete(3), 8))
        assert f"action_head={head} needs Box actions" in text
    assert "model.action_head" in _message(
        lambda: config_from_dict({"model": {"action_head": "x"}})
    )
    assert "action_bins" in _message(lambda: config_from_dict({"model": {"action_bins": 1}}))


def test_collect_refuses_dqn_on_the_point_robot(tmp_path):
    from ad.data.collect import collect

    cfg = load_config(None, ["env.family=PointRobot", "collect.algorithm=DQN",
                             f"collect.output_dir={tmp_path}"])  # fmt: skip
    assert "DQN needs a Discrete action space" in _message(lambda: collect(cfg, progress=False))


# --------------------------------------------------------------------------- recording


@pytest.mark.parametrize("algorithm", ["SAC", "TD3", "PPO", "A2C"])
def test_box_sources_record_the_action_the_env_received(algorithm):
    family = PointRobot()
    env = lambda: family.make_env({"goal": [0.0, 1.0]})  # noqa: E731
    sent = []

    class Spy(DummyVecEnv):
        def step_async(self, actions):
            sent.append(np.array(actions, copy=True))
            super().step_async(actions)

    venv = RecordingVecEnv(Spy([env, env]), num_steps=30)
    kwargs = {"learning_starts": 10, "buffer_size": 200} if algorithm in ("SAC", "TD3") else {}
    if algorithm == "PPO":
        kwargs = {"n_steps": 8, "batch_size": 16}
    make_source(algorithm, venv, seed=0, kwargs=kwargs).learn(60)
    actions = venv.arrays()["actions"]
    assert actions.dtype == np.float32 and actions.shape == (2, 30, 2)
    np.testing.assert_array_equal(actions, np.stack(sent[:30], axis=1).astype(np.float32))
    assert np.abs(actions).max() <= np.float32(0.1)  # squashed (SAC, TD3) or clipped (PPO, A2C)


def test_history_round_trip_of_box_actions(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "observations": rng.random((2, 5, 2), dtype=np.float32),
        "actions": rng.random((2, 5, 2)) * 0.2 - 0.1,
        "rewards": rng.random((2, 5)).astype(np.float32),
        "terminations": np.zeros((2, 5), bool),
        "truncations": np.zeros((2, 5), bool),
    }
    meta = {
        "num_actions": None,
        "observation_space": space_to_json(OBS),
        "action_space": space_to_json(ACT),
    }
    write_history(tmp_path / "h.h5", meta, **arrays)
    history = read_history(tmp_path / "h.h5")
    assert history.actions.dtype == np.float32 and history.num_steps == 5
    np.testing.assert_array_equal(history.actions, arrays["actions"].astype(np.float32))
    three = space_to_json(spaces.Box(-0.1, 0.1, (3,), np.float32))  # the actions have 2 dims
    write_history(tmp_path / "bad.h5", dict(meta, action_space=three), **arrays)
    assert "Box actions are not float32" in _message(lambda: read_history(tmp_path / "bad.h5"))


# --------------------------------------------------------------------------- end to end


def test_sac_on_the_point_robot_collects_trains_and_evaluates(tmp_path):
    torch.manual_seed(0)
    cfg = load_config(None, [
        "name=pointrobot_tiny", "env.family=PointRobot", "env.num_train_tasks=2",
        "env.num_test_tasks=1", "env.num_validation_tasks=1", "collect.splits=[train, test]",
        "collect.algorithm=SAC",
        "collect.algorithm_kwargs={learning_starts: 20, buffer_size: 500, batch_size: 32}",
        "collect.n_envs=2", "collect.seeds=[0]", "collect.total_steps=160", "model.embed_dim=16",
        "model.num_layers=1", "model.ff_dim=32", "model.context_steps=40", "model.action_bins=8",
        "train.num_steps=6", "train.optim.warmup_steps=2", "train.batch_size=4",
        "train.data.subsample_every=1", "train.checkpoint.every=6", "eval.num_episodes=2",
        "eval.num_seeds=2", "eval.action_mode=argmax",
        f"collect.output_dir={tmp_path / 'h'}", f"train.run_dir={tmp_path / 'r'}",
    ])  # fmt: skip
    (summary,) = run_pipeline(cfg, workers=1, with_ed=False, progress=False)
    history = read_history(tmp_path / "h" / "train-task0000-seed0.h5")
    assert history.actions.shape == (2, 80, 2) and history.metadata["num_actions"] is None
    assert history.metadata["action_space"] == space_to_json(ACT)  # the point robot's
    assert history.actions.dtype == np.float32
    model, ckpt = load_model(tmp_path / "r")  # a Box model reloads from its checkpoint
    model = model.policy()
    assert isinstance(ckpt.spaces()["PointRobot"][1], spaces.Box)
    assert type(model.head).__name__ == "BinsHead" and model.num_actions is None
    returns = np.load(tmp_path / "r" / "report" / "returns.npz")["returns"]
    assert returns.shape == (1, 2, 2) and summary.num_tasks == 1
    # deterministic (argmax) rollouts repeat exactly, and actions stay inside the box
    family, task = PointRobot(), ckpt.families["PointRobot"].split["test"][0]
    trace: dict = {}
    again = rollout(model, family, [task], 2, 2, "argmax", transitions=trace)
    np.testing.assert_array_equal(again, returns)
    assert trace["actions"].shape == (2, 40, 2) and np.abs(trace["actions"]).max() <= 0.1 + 1e-7
    sampled = rollout(model, family, [task], 2, 2, "sample", transitions=trace)
    assert np.isfinite(sampled).all() and np.abs(trace["actions"]).max() <= 0.1 + 1e-7
    assert action_rng(0, 0, 0).random() == action_rng(0, 0, 0).random()


def test_help_config_documents_the_box_algorithms_and_heads():
    from ad.config import help_text

    text = help_text()
    for needle in ("SAC", "TD3", "model.action_head", "model.action_bins", "gaussian", "bins"):
        assert needle in text, needle


@pytest.mark.parametrize("head", ["bins", "gaussian"])
def test_nan_targets_are_left_out_of_the_box_loss(head):
    torch.manual_seed(0)
    model = one_family(small_config(action_head=head, action_bins=16), OBS, ACT).eval()
    batch = box_inputs(2, 8)
    with torch.no_grad():
        outputs, _ = model(**batch)
    cut = batch["targets"].clone()
    cut[:, :3] = float("nan")
    expected = model.head.loss(outputs[:, 3:], batch["targets"][:, 3:])
    torch.testing.assert_close(model.head.loss(outputs, cut), expected)
