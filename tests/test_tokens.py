"""Gato's mu-law tokens: round-trip error bounds, edges, order, numpy/torch agreement, refusals;
the observation encoder built on them (model.vector_encoder=tokens), end to end on the point robot."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gymnasium.spaces import Box, Discrete, MultiDiscrete

from ad.config import ModelConfig, load_config
from ad.evaluation.rollout import rollout
from ad.learn.checkpoint import load_model
from ad.learn.encoders import TokenVectorEncoder, VectorEncoder, make_observation_encoder
from ad.learn.tokens import MuLawTokenizer
from ad.pipeline import run_pipeline
from envs.pointrobot import PointRobot
from tests.factories import one_family, refused_in_one_line

GATO = MuLawTokenizer()  # mu = 100, M = 256, 1024 bins


def _bound(tokenizer: MuLawTokenizer, x: np.ndarray) -> np.ndarray:
    """The round-trip error bound for |x| <= M: half a bin width times the slope of the inverse
    companding G at the far end of the half bin, G'(y) = log(M mu + 1) (|G(y)| + 1 / mu)."""
    half = tokenizer.bin_width / 2
    log_scale = math.log1p(tokenizer.max_value * tokenizer.mu)
    return half * log_scale * math.exp(half * log_scale) * (np.abs(x) + 1 / tokenizer.mu)


def _magnitudes() -> np.ndarray:
    positive = np.concatenate([[0.0], np.logspace(-8, math.log10(256), 20001)])
    return np.concatenate([-positive[::-1], positive])


def test_gato_parameters_and_bound_constants():
    assert (GATO.mu, GATO.max_value, GATO.num_bins) == (100.0, 256.0, 1024)
    # What the bound says with Gato's parameters: ~1% relative plus 1e-4 absolute.
    assert _bound(GATO, np.array(0.0)) == pytest.approx(1.0011e-4, rel=1e-3)
    assert _bound(GATO, np.array(1.0)) / 1.0 == pytest.approx(0.01011, rel=1e-3)


@pytest.mark.parametrize(
    "tokenizer",
    [GATO, MuLawTokenizer(mu=10.0, max_value=4.0, num_bins=64), MuLawTokenizer(num_bins=255)],
    ids=["gato", "coarse", "odd-bins"],
)
def test_round_trip_error_within_the_bound(tokenizer):
    x = _magnitudes() * tokenizer.max_value / 256
    decoded = tokenizer.decode(tokenizer.encode(x), dtype=np.float64)
    error = np.abs(decoded - x)
    bound = _bound(tokenizer, x)
    assert (error <= bound * (1 + 1e-9)).all(), np.max(error / bound)
    assert np.max(error / bound) > 0.9  # the bound is tight, not just true
    if tokenizer is GATO:
        large = np.abs(x) >= 1e-2  # relative error for |x| in [1e-2, M]
        assert np.max(error[large] / np.abs(x[large])) <= 0.0201
        assert np.max(error[large] / np.abs(x[large])) > 0.015
        assert np.max(error[np.abs(x) >= 1] / np.abs(x[np.abs(x) >= 1])) <= 0.0102
        assert np.max(error[np.abs(x) < 1e-3]) <= 1.1e-4  # absolute near 0


def test_edge_values():
    edges = np.array([0.0, -0.0, 256.0, -256.0, 1e6, -1e6, 1e300, 255.999, 1e-300])
    tokens = GATO.encode(edges)
    # 0 sits on the edge between bins 511 and 512 (an even count); +-M compand to +-1.
    assert tokens.tolist() == [512, 512, 1023, 0, 1023, 0, 1023, 1023, 512]
    assert GATO.compand(np.array([256.0, -256.0])).tolist() == [1.0, -1.0]
    assert GATO.compand(np.array([512.0]))[0] > 1.0  # unclipped; encode clips it
    assert GATO.expand(GATO.compand(np.array([-3.5, 0.25, 100.0]))) == pytest.approx(
        [-3.5, 0.25, 100.0], rel=1e-12
    )
    last, first = GATO.decode(np.array([1023, 0]), dtype=np.float64)
    assert last == -first and 250 < last < 256  # the centre of the last bin, inside M
    assert GATO.decode(np.array(512), dtype=np.float64) == pytest.approx(9.96e-5, rel=1e-2)
    assert MuLawTokenizer(num_bins=3).encode(np.array([0.0, -0.0])).tolist() == [1, 1]
    assert MuLawTokenizer(num_bins=3).decode(np.array([1])).tolist() == [0.0]


def test_tokens_are_monotone_in_the_value_and_cover_every_bin():
    x = np.linspace(-300, 300, 400001)
    x = np.sort(np.concatenate([x, _magnitudes()]))
    tokens = GATO.encode(x)
    assert (np.diff(tokens) >= 0).all()
    assert set(tokens.tolist()) == set(range(1024))
    decoded = GATO.decode(np.arange(1024), dtype=np.float64)
    assert (np.diff(decoded) > 0).all()
    assert (GATO.encode(decoded) == np.arange(1024)).all()  # a centre encodes to its own bin


@pytest.mark.parametrize("tokenizer", [GATO, MuLawTokenizer(mu=5.0, max_value=2.0, num_bins=17)])
def test_tokens_are_the_bins_of_the_clipped_companded_value(tokenizer):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(20000) * 10.0 ** rng.uniform(-5, 3, size=20000)
    y = np.clip(tokenizer.compand(x), -1, 1)
    expected = np.minimum(np.floor((y + 1) / tokenizer.bin_width), tokenizer.num_bins - 1)
    # The definition, away from bin edges (within rounding of an edge either bin is right).
    position = (y + 1) / tokenizer.bin_width
    clear = (np.abs(position - np.round(position)) > 1e-9) | (np.abs(y) == 1)  # clipped: no edge
    assert clear.sum() > 19990
    np.testing.assert_array_equal(tokenizer.encode(x)[clear], expected[clear])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_and_torch_agree(dtype):
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [rng.standard_normal(5000) * 10.0 ** rng.uniform(-6, 3, size=5000), _magnitudes()]
    ).astype(dtype)
    # Bin edges exactly, where a float32 computation would split the two paths.
    edges = GATO.expand(np.linspace(-1, 1, 1025)).astype(dtype)
    x = np.concatenate([x, edges, np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf)])
    tokens = GATO.encode(x)
    torch_tokens = GATO.encode(torch.from_numpy(x))
    assert torch_tokens.dtype == torch.int64
    np.testing.assert_array_equal(torch_tokens.numpy(), tokens)
    np.testing.assert_array_equal(GATO.decode(torch_tokens).numpy(), GATO.decode(tokens))
    # The companding itself may differ in the last bit (numpy's and torch's log1p); the tokens
    # above may not, which is why they are found by comparison with one table of edges.
    compand_torch = GATO.compand(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(compand_torch, GATO.compand(x), rtol=1e-15, atol=0)


@pytest.mark.parametrize("shape", [(), (7,), (3, 4), (2, 0, 5), (2, 3, 4)])
def test_dtype_and_shape_preserved(shape):
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    for values in (x, torch.from_numpy(x)):
        tokens = GATO.encode(values)
        decoded = GATO.decode(tokens)
        assert tuple(tokens.shape) == shape and tuple(decoded.shape) == shape
        assert GATO.compand(values).dtype == values.dtype
        if isinstance(values, torch.Tensor):
            assert (tokens.dtype, decoded.dtype) == (torch.int64, torch.float32)
            assert GATO.decode(tokens, dtype=torch.float64).dtype == torch.float64
        else:
            assert (tokens.dtype, decoded.dtype) == (np.int64, np.float32)
            assert GATO.decode(tokens, dtype=np.float64).dtype == np.float64
    # Integer inputs (rewards, counts) are values too; their companding is float64.
    assert (
        GATO.encode(np.array([0, 3, -7])).tolist() == GATO.encode(np.array([0.0, 3, -7])).tolist()
    )
    assert GATO.compand(np.array([1, 2])).dtype == np.float64


def test_torch_keeps_the_device():
    x = torch.linspace(-5, 5, 11)
    assert GATO.encode(x).device == x.device and GATO.decode(GATO.encode(x)).device == x.device


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_nan_and_inf_refused_with_their_count(kind):
    x = np.zeros(1200, dtype=np.float32)
    x[[3, 50, 700]] = [np.nan, np.inf, -np.inf]
    values = torch.from_numpy(x) if kind == "torch" else x
    refused_in_one_line(lambda: GATO.encode(values), "3 of 1200 values are NaN or inf")
    refused_in_one_line(
        lambda: GATO.encode(values, what="actions"), "3 of 1200 actions", "actions come"
    )


@pytest.mark.parametrize("tokens", [[0, 1024], [-1, 5], [2.5, 3.0]], ids=repr)
def test_tokens_outside_the_vocabulary_refused(tokens):
    refused_in_one_line(lambda: GATO.decode(np.array(tokens)), "1 of 2 tokens", "0..1023")
    if not isinstance(tokens[0], float):
        refused_in_one_line(lambda: GATO.decode(torch.tensor(tokens)), "1 of 2 tokens")


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"mu": 0}, "mu"),
        ({"mu": -1.0}, "mu"),
        ({"mu": math.inf}, "mu"),
        ({"mu": "100"}, "mu"),
        ({"max_value": 0.0}, "max_value"),
        ({"max_value": True}, "max_value"),
        ({"num_bins": 1}, "num_bins"),
        ({"num_bins": 10.0}, "num_bins"),
    ],
    ids=str,
)
def test_bad_parameters_refused(kwargs, word):
    refused_in_one_line(lambda: MuLawTokenizer(**kwargs), word)


# --------------------------------------------------------------------------- observation encoder


OBS = Box(-300.0, 300.0, (3,), np.float32)
ACT = Box(-0.1, 0.1, (2,), np.float32)


def _model_config(**kwargs) -> ModelConfig:
    base = dict(embed_dim=16, num_layers=1, num_heads=2, ff_dim=32, context_steps=8, dropout=0.0)
    return ModelConfig(**{**base, "vector_encoder": "tokens", **kwargs})


@pytest.mark.parametrize(
    "kwargs", [{}, {"token_bins": 64, "token_mu": 10.0, "token_max": 4.0}], ids=["gato", "coarse"]
)
def test_observation_tokens_are_the_tokenizers(kwargs):
    cfg = _model_config(**kwargs)
    encoder, shape = make_observation_encoder(OBS, cfg)
    assert isinstance(encoder, TokenVectorEncoder) and shape == (3,)
    tokenizer = MuLawTokenizer(cfg.token_mu, cfg.token_max, cfg.token_bins)
    # every magnitude from 1e-6 to beyond M, both signs, plus the bin edges themselves
    edges = tokenizer.expand(-1.0 + tokenizer.bin_width * np.arange(1, cfg.token_bins))
    x = np.concatenate([_magnitudes()[::7], [-1e6, 1e6], edges]).astype(np.float32)
    x = x[: len(x) // 3 * 3].reshape(-1, 3)
    ids = encoder.tokens(torch.from_numpy(x))
    np.testing.assert_array_equal(ids.numpy(), tokenizer.encode(x))
    assert ids.min() == 0 and ids.max() == cfg.token_bins - 1
    # forward: the bin's embedding plus the dimension's, through a GELU, summed, projected
    with torch.no_grad():
        per_dim = encoder.embedding(ids) + encoder.dimension.weight  # (N, 3, d)
        expected = encoder.proj(torch.nn.functional.gelu(per_dim).sum(1))
        torch.testing.assert_close(encoder(torch.from_numpy(x)), expected)


def test_observation_token_embedding_depends_on_the_bin_and_the_dimension():
    encoder, _ = make_observation_encoder(OBS, _model_config(token_bins=16))
    with torch.no_grad():
        a, same_bin, other_bin, swapped = encoder(
            torch.tensor(
                [[1.0, 2.0, 50.0], [1.001, 2.001, 50.1], [1.0, 2.0, -50.0], [2.0, 1.0, 50.0]]
            )
        )
    torch.testing.assert_close(a, same_bin)  # 1 and 1.001 share a bin of 16
    assert not torch.allclose(a, other_bin)
    assert not torch.allclose(a, swapped)  # which dimension holds a value matters (the GELU)
    refused_in_one_line(
        lambda: encoder(torch.tensor([[0.0, float("nan"), 0.0]])), "1 of 3 observations are NaN"
    )


@pytest.mark.parametrize(
    "space",
    [Discrete(4), MultiDiscrete([3, 3]), Box(0, 255, (7, 7, 3), np.uint8)],
    ids=["discrete", "multidiscrete", "image"],
)
def test_tokens_refused_for_observations_that_are_not_1d_boxes(space):
    refused_in_one_line(
        lambda: make_observation_encoder(space, _model_config()), "1-D Box", "linear"
    )


def test_default_model_keeps_the_linear_vector_encoder():
    cfg = ModelConfig()
    assert (cfg.vector_encoder, cfg.token_bins, cfg.token_mu, cfg.token_max) == (
        "linear",
        1024,
        100.0,
        256.0,
    )
    torch.manual_seed(0)
    model = one_family(_model_config(vector_encoder="linear"), OBS, ACT)
    torch.manual_seed(0)
    reference = VectorEncoder(3, -300.0, 300.0, 16)
    encoder = model.encoder.obs_encoder
    assert type(encoder) is VectorEncoder
    shapes = {k: v.shape for k, v in encoder.state_dict().items()}
    assert shapes == {k: v.shape for k, v in reference.state_dict().items()}


def test_point_robot_with_observation_tokens_collects_trains_evaluates_and_reloads(tmp_path):
    torch.manual_seed(0)
    cfg = load_config(None, [
        "name=pointrobot_tokens", "env.family=PointRobot", "env.num_train_tasks=2",
        "env.num_test_tasks=1", "env.num_validation_tasks=1", "collect.splits=[train, test]",
        "collect.algorithm=SAC",
        "collect.algorithm_kwargs={learning_starts: 20, buffer_size: 500, batch_size: 32}",
        "collect.n_envs=2", "collect.seeds=[0]", "collect.total_steps=160", "model.embed_dim=16",
        "model.num_layers=1", "model.ff_dim=32", "model.context_steps=40", "model.action_bins=8",
        "model.vector_encoder=tokens", "model.token_bins=128",
        "train.num_steps=6", "train.optim.warmup_steps=2", "train.batch_size=4",
        "train.data.subsample_every=1", "train.checkpoint.every=6", "eval.num_episodes=2",
        "eval.num_seeds=2", "eval.action_mode=argmax",
        f"collect.output_dir={tmp_path / 'h'}", f"train.run_dir={tmp_path / 'r'}",
    ])  # fmt: skip
    (summary,) = run_pipeline(cfg, workers=1, with_ed=False, progress=False)
    model, ckpt = load_model(tmp_path / "r")  # the checkpoint's config rebuilds the tokens model
    model = model.policy()
    assert ckpt.model_config["vector_encoder"] == "tokens"
    encoder = model.encoder.obs_encoder
    assert isinstance(encoder, TokenVectorEncoder)
    assert encoder.embedding.num_embeddings == 128
    assert encoder.tokenizer == MuLawTokenizer(100.0, 256.0, 128)
    returns = np.load(tmp_path / "r" / "report" / "returns.npz")["returns"]
    assert returns.shape == (1, 2, 2) and summary.num_tasks == 1
    again = rollout(
        model, PointRobot(), [ckpt.families["PointRobot"].split["test"][0]], 2, 2, "argmax"
    )
    np.testing.assert_array_equal(again, returns)  # the reloaded model is the one evaluated
