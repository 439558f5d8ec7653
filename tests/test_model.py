"""Tests of ad/learn/model.py: causality, the KV cache against forward(), learning, masks and loading."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gymnasium.spaces import Box, Dict, Discrete, MultiDiscrete, Space

from ad.config import ModelConfig, config_from_dict
from ad.errors import UserError
from ad.learn.model import alibi_slopes
from tests.factories import one_family

torch.set_num_threads(1)

NUM_ACTIONS = 5
SPACES = {
    "discrete": Discrete(7),
    "multidiscrete": MultiDiscrete([9, 9]),
    "box_vector": Box(-1.0, 1.0, (3,), np.float32),
    "box_image": Box(0, 255, (7, 7, 3), np.uint8),
    "box_image_float": Box(0.0, 1.0, (12, 10, 3), np.float32),
}
STREAMS = ("observations", "prev_actions", "prev_rewards", "prev_dones")


def small_config(**kwargs) -> ModelConfig:
    base = dict(embed_dim=32, num_layers=2, num_heads=4, ff_dim=64, dropout=0.1, context_steps=8)
    base["input_mask_prob"] = 0.0  # tests of masking ask for it
    return ModelConfig(**{**base, **kwargs})


def random_observations(space: Space, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    if isinstance(space, Discrete):
        return torch.randint(0, int(space.n), shape, generator=gen)
    if isinstance(space, MultiDiscrete):
        cols = [torch.randint(0, int(n), shape, generator=gen) for n in space.nvec]
        return torch.stack(cols, dim=-1)
    full = shape + space.shape
    if space.dtype == np.uint8:  # MiniGrid-like small integer codes
        return torch.randint(0, 11, full, generator=gen, dtype=torch.uint8)
    return torch.rand(full, generator=gen) * 2 - 1


def random_inputs(space: Space, batch: int, steps: int, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "observations": random_observations(space, (batch, steps), gen),
        "prev_actions": torch.randint(0, NUM_ACTIONS + 1, (batch, steps), generator=gen),
        "prev_rewards": torch.rand(batch, steps, generator=gen),
        "prev_dones": torch.rand(batch, steps, generator=gen) < 0.2,
    }


def changed(space: Space, name: str, value: torch.Tensor, seed: int) -> torch.Tensor:
    """A different value for every entry of one input stream."""
    gen = torch.Generator().manual_seed(seed)
    if name == "observations":
        if isinstance(space, Discrete):
            return (value + 1) % int(space.n)
        if isinstance(space, MultiDiscrete):
            return (value + 1) % torch.as_tensor(space.nvec)
        return random_observations(space, value.shape[:2], gen)
    if name == "prev_actions":
        return (value + 1) % (NUM_ACTIONS + 1)
    if name == "prev_rewards":
        return value + 1.0
    return ~value


@pytest.mark.parametrize("kind", list(SPACES))
@pytest.mark.parametrize("stream", STREAMS)
def test_causality(kind: str, stream: str) -> None:
    """Changing a stream at positions > t leaves logits <= t unchanged, and changes logits > t."""
    space = SPACES[kind]
    torch.manual_seed(0)
    model = one_family(small_config(), space, NUM_ACTIONS).eval()
    inputs = random_inputs(space, batch=2, steps=12)
    t = 5
    edited = dict(inputs)
    new = changed(space, stream, inputs[stream], seed=1)
    edited[stream] = inputs[stream].clone()
    edited[stream][:, t + 1 :] = new[:, t + 1 :]  # i.e. step t's action/reward, and all later steps
    with torch.no_grad():
        logits, _ = model(**inputs)
        logits_edited, _ = model(**edited)
    assert torch.equal(logits[:, : t + 1], logits_edited[:, : t + 1])
    assert not torch.allclose(logits[:, t + 1], logits_edited[:, t + 1])  # the stream is used


@pytest.mark.parametrize(
    ("kind", "norm", "batch", "steps", "context"),
    [
        ("multidiscrete", "pre", 1, 300, 50),
        ("multidiscrete", "pre", 4, 300, 50),
        ("multidiscrete", "post", 3, 300, 50),
        ("multidiscrete", "pre", 3, 40, 40),  # context exactly the length
        ("discrete", "pre", 2, 120, 16),
        ("box_image", "pre", 2, 60, 16),
    ],
)
def test_kv_cache_matches_forward(kind: str, norm: str, batch: int, steps: int, context: int):
    """step() one token at a time equals forward() on the whole sequence, as the window slides."""
    space = SPACES[kind]
    torch.manual_seed(0)
    cfg = small_config(embed_dim=64, num_layers=4, ff_dim=128, context_steps=context, norm=norm)
    model = one_family(cfg, space, NUM_ACTIONS).eval()
    inputs = random_inputs(space, batch, steps, seed=2)
    with torch.no_grad():
        full, _ = model(**inputs)
    cache = model.init_cache(batch)
    stepped = [model.step(cache, *(inputs[name][:, t] for name in STREAMS)) for t in range(steps)]
    stepped = torch.stack(stepped, dim=1)  # (B, T, A)
    assert stepped.shape == (batch, steps, NUM_ACTIONS)
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=0)
    assert cache.length == context and cache.num_tokens == steps


@pytest.mark.parametrize("layers", [1, 3, 4])
def test_token_window_equals_forward_on_the_last_c_tokens(layers: int) -> None:
    """Decoding mode "reencode" computes, at every step and as the window slides, exactly what a
    training window of the last c tokens computes at its last position. The KV cache agrees with
    it for one layer only: from layer 2 up, cached tokens carry their own windows' reach."""
    space = SPACES["multidiscrete"]
    torch.manual_seed(0)
    c, steps = 8, 30
    model = one_family(small_config(num_layers=layers, context_steps=c), space, NUM_ACTIONS)
    model.eval()
    inputs = random_inputs(space, batch=2, steps=steps, seed=3)
    window, cache = model.init_cache(2, mode="reencode"), model.init_cache(2)
    for t in range(steps):
        step_inputs = [inputs[name][:, t] for name in STREAMS]
        by_window = model.step(window, *step_inputs)
        by_cache = model.step(cache, *step_inputs)
        with torch.no_grad():
            alone, _ = model(**{k: v[:, max(t - c + 1, 0) : t + 1] for k, v in inputs.items()})
        torch.testing.assert_close(by_window, alone[:, -1], atol=1e-5, rtol=0)
        if t < c or layers == 1:  # no token has left the window yet, or no deeper reach
            torch.testing.assert_close(by_cache, by_window, atol=1e-5, rtol=0)
    assert window.inputs["prev_dones"].shape[1] == c
    if layers > 1:  # the last step: the cache reaches further back than the window
        assert not torch.allclose(by_cache, by_window, atol=1e-4)


def test_unknown_decoding_mode_is_refused() -> None:
    model = one_family(small_config(), SPACES["discrete"], NUM_ACTIONS)
    with pytest.raises(UserError, match="decoding mode 'beam'"):
        model.init_cache(2, mode="beam")


def test_step_requires_eval_mode() -> None:
    model = one_family(small_config(), SPACES["discrete"], NUM_ACTIONS)
    inputs = random_inputs(SPACES["discrete"], batch=2, steps=1)
    with pytest.raises(RuntimeError, match="eval"):
        model.step(model.init_cache(2), *(inputs[name][:, 0] for name in STREAMS))


def test_overfits_one_batch() -> None:
    """A small model memorises random actions on one fixed batch within a few hundred Adam steps."""
    space = SPACES["multidiscrete"]
    torch.manual_seed(0)
    cfg = small_config(embed_dim=64, num_layers=2, ff_dim=128, dropout=0.0, context_steps=16)
    model = one_family(cfg, space, NUM_ACTIONS)
    inputs = random_inputs(space, batch=4, steps=16, seed=4)
    targets = torch.randint(0, NUM_ACTIONS, (4, 16), generator=torch.Generator().manual_seed(5))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    _, first = model(**inputs, targets=targets)
    for _ in range(300):
        _, loss = model(**inputs, targets=targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    assert first.item() > 1.4  # about log(5) at initialisation
    assert loss.item() < 0.05


def expected_parameters(cfg: ModelConfig, obs_table_rows: int, num_actions: int) -> int:
    d, f = cfg.embed_dim, cfg.ff_dim
    inputs = obs_table_rows * d + (num_actions + 1) * d + 2 * d + 2 * d + d  # obs, a, r, done, mask
    block = 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d + (d * f + f) + (f * d + d)
    head = 2 * d + d * num_actions + num_actions  # ln_f, linear
    return inputs + cfg.num_layers * block + head


@pytest.mark.parametrize("cfg", [ModelConfig(), ModelConfig(ff_dim=2048), small_config()])
def test_parameter_count(cfg: ModelConfig) -> None:
    model = one_family(cfg, SPACES["multidiscrete"], NUM_ACTIONS)
    assert model.model.num_parameters() == expected_parameters(cfg, 9 + 9, NUM_ACTIONS)
    assert model.model.num_parameters() == sum(p.numel() for p in model.model.state_dict().values())


def test_post_norm_has_no_final_norm() -> None:
    pre = one_family(small_config(norm="pre"), SPACES["discrete"], NUM_ACTIONS)
    post = one_family(small_config(norm="post"), SPACES["discrete"], NUM_ACTIONS)
    d = pre.cfg.embed_dim
    assert pre.model.num_parameters() - post.model.num_parameters() == 2 * d


def test_label_smoothing_and_ignored_targets() -> None:
    space = SPACES["multidiscrete"]
    torch.manual_seed(0)
    model = one_family(small_config(), space, NUM_ACTIONS).eval()
    inputs = random_inputs(space, batch=2, steps=8)
    targets = torch.randint(0, NUM_ACTIONS, (2, 8))
    with torch.no_grad():
        logits, plain = model(**inputs, targets=targets)
        _, smoothed = model(**inputs, targets=targets, label_smoothing=0.2)
        partial = targets.clone()
        partial[:, :3] = -1  # e.g. padding: left out of the mean
        _, masked = model(**inputs, targets=partial)
    assert not torch.isclose(plain, smoothed)
    expected = F.cross_entropy(
        logits.reshape(-1, NUM_ACTIONS), targets.reshape(-1), label_smoothing=0.2
    )
    torch.testing.assert_close(smoothed, expected)
    expected = F.cross_entropy(logits[:, 3:].reshape(-1, NUM_ACTIONS), targets[:, 3:].reshape(-1))
    torch.testing.assert_close(masked, expected)


def test_input_masking_only_in_training() -> None:
    space = SPACES["multidiscrete"]
    torch.manual_seed(0)
    masked = one_family(small_config(dropout=0.0, input_mask_prob=0.5), space, NUM_ACTIONS)
    plain = one_family(small_config(dropout=0.0), space, NUM_ACTIONS)
    plain.model.load_state_dict(masked.model.state_dict())
    inputs = random_inputs(space, batch=2, steps=8)
    with torch.no_grad():
        masked.eval(), plain.eval()
        eval_masked, _ = masked(**inputs)
        eval_plain, _ = plain(**inputs)
        masked.train(), plain.train()
        train_plain, _ = plain(**inputs)
        train_masked, _ = masked(**inputs)
    assert torch.equal(eval_masked, eval_plain)  # no masking in eval mode
    assert torch.equal(train_plain, eval_plain)  # without dropout, train mode alone changes nothing
    assert not torch.allclose(train_masked, eval_plain)  # so masking is what changed the output


def test_state_dict_round_trip_and_wrapped_keys() -> None:
    space = SPACES["box_image"]
    torch.manual_seed(0)
    model = one_family(small_config(), space, NUM_ACTIONS).eval()
    state = model.model.state_dict()
    assert not any("slopes" in key or "offsets" in key for key in state)  # derived, not stored
    torch.manual_seed(1)
    fresh = one_family(small_config(), space, NUM_ACTIONS).eval()
    # a torch.compile'd or DDP module prefixes every key; loading still works
    fresh.model.load_state_dict({f"_orig_mod.{key}": value for key, value in state.items()})
    inputs = random_inputs(space, batch=2, steps=6)
    with torch.no_grad():
        assert torch.equal(fresh(**inputs)[0], model(**inputs)[0])
    fresh.model.load_state_dict({f"module.{key}": value for key, value in state.items()})


def test_alibi_slopes() -> None:
    torch.testing.assert_close(alibi_slopes(4), torch.tensor([2**-2, 2**-4, 2**-6, 2**-8]))
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0**-i for i in range(1, 9)]))
    six = alibi_slopes(6)  # closest power of 2 (4), then the odd-indexed slopes of 8 heads
    torch.testing.assert_close(six, torch.tensor([2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3]))


def test_bad_inputs() -> None:
    with pytest.raises(UserError, match="embed_dim"):
        config_from_dict({"model": {"embed_dim": 30, "num_heads": 4}})
    for space in (Dict({}), Box(0.0, 1.0, (4, 4), np.float32), "Discrete(5)"):
        with pytest.raises(UserError, match="unsupported"):
            one_family(small_config(), space, NUM_ACTIONS)
    model = one_family(small_config(), SPACES["multidiscrete"], NUM_ACTIONS)
    inputs = random_inputs(SPACES["discrete"], batch=2, steps=4)  # observations of the wrong shape
    with pytest.raises(ValueError, match="observation shape"):
        model(**inputs)


def test_config_fields_are_used() -> None:
    """Every ModelConfig field has an effect (a guard against a field silently ignored)."""
    space = SPACES["multidiscrete"]
    base = small_config()
    for name, value in [("embed_dim", 64), ("num_layers", 3), ("ff_dim", 96), ("num_heads", 2)]:
        torch.manual_seed(0)
        a = one_family(base, space, NUM_ACTIONS)
        torch.manual_seed(0)
        b = one_family(dataclasses.replace(base, **{name: value}), space, NUM_ACTIONS)
        sizes_differ = a.model.num_parameters() != b.model.num_parameters()
        slopes_differ = a.model.slopes.shape != b.model.slopes.shape
        assert sizes_differ or slopes_differ, name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_kv_cache_matches_forward_on_cuda() -> None:
    space = SPACES["multidiscrete"]
    torch.manual_seed(0)
    model = one_family(small_config(context_steps=16), space, NUM_ACTIONS).cuda().eval()
    inputs = {k: v.cuda() for k, v in random_inputs(space, batch=3, steps=60).items()}
    with torch.no_grad():
        full, _ = model(**inputs)
    cache = model.init_cache(3)
    stepped = [model.step(cache, *(inputs[name][:, t] for name in STREAMS)) for t in range(60)]
    torch.testing.assert_close(torch.stack(stepped, dim=1), full, atol=1e-4, rtol=0)
