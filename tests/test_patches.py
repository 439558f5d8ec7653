"""Images as Gato reads them (model.image_encoder=patches, ad/learn/patches.py) and the pixel
family that uses them (envs/darkroom_pixels.py), end to end at a tiny budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium.spaces import Box, MultiDiscrete

from ad.config import ModelConfig, help_text, load_config
from ad.errors import user_errors
from ad.evaluation.rollout import rollout
from ad.learn.checkpoint import load_model
from ad.learn.encoders import CodeEncoder, ImageEncoder, make_observation_encoder
from ad.learn.patches import PatchEncoder, cut_patches, scale_pixels
from ad.pipeline import run_pipeline
from envs import DarkRoom, make_family
from envs.darkroom_pixels import DarkRoomPixels, draw_frame

FRAME = Box(0, 255, (18, 18, 3), np.uint8)


def _cfg(**kwargs) -> ModelConfig:
    base = dict(embed_dim=16, num_layers=1, num_heads=2, ff_dim=32, context_steps=8, dropout=0.0)
    return ModelConfig(**{**base, "image_encoder": "patches", **kwargs})


def _one_line(fn, *words):
    with pytest.raises(user_errors()) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)


# --------------------------------------------------------------------------- cutting and scaling


def test_pixels_scale_to_a_quarter_of_minus_one_to_one():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 3, 1)
    np.testing.assert_allclose(scale_pixels(x, 0, 255).ravel(), [-0.25, -0.15, 0.25], atol=1e-7)
    y = torch.tensor([-2.0, 0.0, 2.0]).view(1, 1, 3, 1)  # a float Box in [-2, 2]
    np.testing.assert_allclose(scale_pixels(y, -2.0, 2.0).ravel(), [-0.25, 0.0, 0.25])


def test_patches_in_raster_order_with_zero_padding():
    # a 20 x 33 x 2 image: 2 rows x 3 columns of patches, padded to 32 x 48
    image = torch.arange(20 * 33 * 2, dtype=torch.float32).view(1, 20, 33, 2)
    patches = cut_patches(image)
    assert patches.shape == (1, 6, 2, 16, 16)
    padded = torch.zeros(32, 48, 2)
    padded[:20, :33] = image[0]
    for index in range(6):
        row, col = divmod(index, 3)  # raster order: along the top row first
        expected = padded[16 * row : 16 * row + 16, 16 * col : 16 * col + 16].permute(2, 0, 1)
        torch.testing.assert_close(patches[0, index], expected)
    # exact values: patch 1 (top row, middle) starts at pixel (0, 16); patch 5's pad is zero
    assert patches[0, 1, 1, 0, 0].item() == (0 * 33 + 16) * 2 + 1
    assert patches[0, 5, :, 4:, :].abs().sum() == 0 and patches[0, 5, :, :, 1:].abs().sum() == 0
    assert patches[0, 5, 0, 3, 0].item() == (19 * 33 + 32) * 2


# --------------------------------------------------------------------------- the encoder


def test_encoder_choice_and_output_shape():
    encoder, shape = make_observation_encoder(FRAME, _cfg())
    assert isinstance(encoder, PatchEncoder) and shape == (18, 18, 3)
    assert (encoder.rows, encoder.cols, encoder.num_patches) == (2, 2, 4)
    frames = torch.from_numpy(np.stack([draw_frame((x, 4), 9, 2) for x in range(9)]))
    assert encoder(frames).shape == (9, 16)
    assert encoder.patch_tokens(frames).shape == (9, 4, 16)
    # the default stays the CNN; spaces that are no image ignore image_encoder
    assert isinstance(make_observation_encoder(FRAME, _cfg(image_encoder="cnn"))[0], ImageEncoder)
    assert ModelConfig().image_encoder == "cnn"
    assert make_observation_encoder(MultiDiscrete([9, 9]), _cfg())[1] == (2,)


def test_the_token_sees_which_patch_is_lit():
    torch.manual_seed(0)
    square = Box(0, 255, (32, 32, 3), np.uint8)  # 2 x 2 patches, no padding
    encoder, _ = make_observation_encoder(square, _cfg())
    frame0 = torch.zeros(32, 32, 3, dtype=torch.uint8)
    frame0[5:7, 9:11] = 255  # in patch 0 (top left)
    frame3 = torch.zeros_like(frame0)
    frame3[21:23, 25:27] = 255  # the same place within patch 3 (bottom right)
    with torch.no_grad():
        p0, p3 = encoder.patches(torch.stack([frame0, frame3]))
        torch.testing.assert_close(p0[0], p3[3])  # same content, other patch
        torch.testing.assert_close(p0[3], p3[0])
        a, b, dark = encoder(torch.stack([frame0, frame3, torch.zeros_like(frame0)]))
        assert not torch.allclose(a, b) and not torch.allclose(a, dark)
        # without the position embeddings the two frames give the same token
        encoder.row.weight.zero_()
        encoder.col.weight.zero_()
        a, b = encoder(torch.stack([frame0, frame3]))
        torch.testing.assert_close(a, b)


def test_small_or_unbounded_images_are_refused_in_one_line():
    minigrid = Box(0, 255, (7, 7, 3), np.uint8)
    _one_line(lambda: make_observation_encoder(minigrid, _cfg()), "7x7", "image_encoder=cnn")
    inf = Box(-np.inf, np.inf, (16, 16, 3), np.float32)
    _one_line(lambda: make_observation_encoder(inf, _cfg()), "bounds", "image_encoder=cnn")


def test_codes_encoder_sums_one_embedding_per_cell_channel_and_code():
    minigrid = Box(0, 255, (7, 7, 3), np.uint8)
    encoder, shape = make_observation_encoder(minigrid, _cfg(image_encoder="codes"))
    assert isinstance(encoder, CodeEncoder) and shape == (7, 7, 3)
    images = torch.zeros(3, 7, 7, 3, dtype=torch.uint8)
    images[1, 2, 3, 0] = 5
    images[2, 4, 1, 0] = 5  # the same code in another cell
    with torch.no_grad():
        tokens = encoder(images)
        table = encoder.embedding.weight.view(7 * 7 * 3, 256, 16)  # (cell and channel, code, d)
        blank = table[:, 0].sum(0)
        torch.testing.assert_close(tokens[0], blank)
        where = (2 * 7 + 3) * 3  # row 2, column 3, channel 0 in raster order
        torch.testing.assert_close(tokens[1], blank - table[where, 0] + table[where, 5])
    assert not torch.allclose(tokens[1], tokens[2])  # where a code is matters
    floats = Box(0.0, 1.0, (8, 8, 3), np.float32)
    _one_line(
        lambda: make_observation_encoder(floats, _cfg(image_encoder="codes")),
        "image_encoder=codes",
        "image_encoder=cnn",
    )


def test_bad_image_encoder_setting_is_one_line_and_the_help_explains_it():
    _one_line(lambda: load_config(None, ["model.image_encoder=vit"]), "model.image_encoder")
    text = help_text()
    assert "model.image_encoder" in text and "16x16 patches" in text


# --------------------------------------------------------------------------- the pixel family


def test_pixel_family_is_dark_room_seen_as_frames():
    pixels, room = make_family("DarkRoomPixels"), DarkRoom()
    assert pixels.kwargs == {"size": 9, "episode_length": 20, "cell_pixels": 2}
    split, room_split = pixels.split(3), room.split(3)
    assert (split.train, split.validation, split.test) == (
        room_split.train,
        room_split.validation,
        room_split.test,
    )
    task = split.test[0]
    assert pixels.optimal_return(task) == room.optimal_return(task)
    assert pixels.random_return(task) == pytest.approx(room.random_return(task))
    env, plain = pixels.make_env(task), room.make_env(task)
    frame, _ = env.reset(seed=0)
    position, _ = plain.reset(seed=0)
    assert env.observation_space.shape == (18, 18, 3) and frame.dtype == np.uint8
    rng = np.random.default_rng(0)
    for _ in range(40):
        assert pixels.cell_of(frame) == tuple(int(v) for v in position)
        assert frame.sum() == 255 * 3 * 4  # one lit 2x2 cell
        action = int(rng.integers(5))
        frame, reward, _, truncated, _ = env.step(action)
        position, plain_reward, _, _, _ = plain.step(action)
        assert reward == plain_reward
        if truncated:
            frame, _ = env.reset()
            position, _ = plain.reset()
    big = DarkRoomPixels(cell_pixels=4).make_env(task)
    assert big.observation_space.shape == (36, 36, 3)
    _one_line(lambda: make_family("DarkRoomPixels", cell_pixels=0), "cell_pixels", ">= 1")


def test_pixels_collect_train_evaluate_and_reload_with_patches(tmp_path):
    torch.manual_seed(0)
    cfg = load_config(None, [
        "name=pixels_tiny", "env.family=DarkRoomPixels", "env.num_train_tasks=2",
        "env.num_test_tasks=1", "env.num_validation_tasks=1", "collect.splits=[train, test]",
        "collect.algorithm_kwargs={policy: MlpPolicy, n_steps: 16, batch_size: 16}",
        "collect.n_envs=2", "collect.seeds=[0]", "collect.total_steps=160", "model.embed_dim=16",
        "model.num_layers=1", "model.ff_dim=32", "model.context_steps=40",
        "model.image_encoder=patches", "train.num_steps=6", "train.optim.warmup_steps=2",
        "train.batch_size=4", "train.data.subsample_every=1", "train.checkpoint.every=6",
        "eval.num_episodes=2", "eval.num_seeds=2", "eval.action_mode=argmax",
        f"collect.output_dir={tmp_path / 'h'}", f"train.run_dir={tmp_path / 'r'}",
    ])  # fmt: skip
    (summary,) = run_pipeline(cfg, workers=1, with_ed=False, progress=False)
    model, ckpt = load_model(tmp_path / "r")
    model = model.policy()
    assert ckpt.model_config["image_encoder"] == "patches"
    encoder = model.encoder.obs_encoder
    assert isinstance(encoder, PatchEncoder) and encoder.num_patches == 4
    returns = np.load(tmp_path / "r" / "report" / "returns.npz")["returns"]
    assert returns.shape == (1, 2, 2) and summary.num_tasks == 1
    family = make_family("DarkRoomPixels")
    again = rollout(
        model, family, [ckpt.families["DarkRoomPixels"].split["test"][0]], 2, 2, "argmax"
    )
    np.testing.assert_array_equal(again, returns)  # the reloaded model is the one evaluated
