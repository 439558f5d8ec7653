"""Input encoders: one token embedding per observation (chosen from the observation space) and per
previous action (chosen from the action space)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from gymnasium.spaces import Box, Discrete, MultiDiscrete, Space
from torch import Tensor

from ad.config import ModelConfig
from ad.data.spaces import box_bounds, box_range
from ad.errors import UserError
from ad.learn.patches import PatchEncoder
from ad.learn.tokens import MuLawTokenizer


class DiscreteEncoder(nn.Module):
    """Discrete(n) -> one embedding; MultiDiscrete(nvec) -> one embedding per component, summed.

    Summing per-component embeddings (x and y for Dark Room) is what makes in-context learning work
    there; one embedding per cell id did not. The per-component tables live in one nn.Embedding with
    row offsets, which is the same function as separate tables but a single lookup kernel.
    """

    def __init__(self, nvec: list[int], embed_dim: int, multi: bool) -> None:
        super().__init__()
        self.multi = multi
        self.embedding = nn.Embedding(sum(nvec), embed_dim)
        offsets = torch.tensor([0] + list(nvec[:-1]), dtype=torch.long).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)

    def forward(self, obs: Tensor) -> Tensor:
        # obs: (N,) for Discrete, (N, *nvec_shape) for MultiDiscrete
        if not self.multi:
            return self.embedding(obs.long())  # (N, d)
        obs = obs.reshape(obs.shape[0], -1).long()  # (N, k)
        return self.embedding(obs + self.offsets).sum(1)  # (N, k, d) -> (N, d)


class VectorEncoder(nn.Module):
    """1-D Box -> a two-layer MLP on the observation scaled to [-1, 1] where the bounds are finite."""

    def __init__(self, size: int, low: float, high: float, embed_dim: int) -> None:
        super().__init__()
        finite = math.isfinite(low) and math.isfinite(high) and high > low
        self.center = (high + low) / 2 if finite else 0.0
        self.scale = 2 / (high - low) if finite else 1.0
        self.net = nn.Sequential(
            nn.Linear(size, embed_dim), nn.GELU(), nn.Linear(embed_dim, embed_dim)
        )

    def forward(self, obs: Tensor) -> Tensor:
        x = (obs.to(self.net[0].weight.dtype) - self.center) * self.scale  # (N, size)
        return self.net(x)  # (N, d)


class TokenVectorEncoder(nn.Module):
    """1-D Box -> Gato's tokens: each dimension mu-law companded, clipped to [-1, 1] and binned
    (``ad.learn.tokens``); per dimension the bin's embedding plus the dimension's embedding, through
    a GELU, summed over the dimensions and mixed by a linear layer into the step's one token.

    The GELU comes before the sum because a sum of the raw embeddings would not say which dimension
    holds which value: (bin a + dim 0) + (bin b + dim 1) equals (bin b + dim 0) + (bin a + dim 1).
    Gato gives every dimension a token of its own in the sequence; here a step stays one token.
    """

    def __init__(self, size: int, embed_dim: int, tokenizer: MuLawTokenizer) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.embedding = nn.Embedding(tokenizer.num_bins, embed_dim)
        self.dimension = nn.Embedding(size, embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.register_buffer("dims", torch.arange(size), persistent=False)

    def tokens(self, obs: Tensor) -> Tensor:
        """(N, size) observations -> (N, size) int64 token ids (``MuLawTokenizer.encode``)."""
        return self.tokenizer.encode(obs, "observations")

    def forward(self, obs: Tensor) -> Tensor:
        x = self.embedding(self.tokens(obs)) + self.dimension(self.dims)  # (N, size, d)
        return self.proj(F.gelu(x).sum(1))  # (N, d)


class CodeEncoder(DiscreteEncoder):
    """Integer image (H, W, C) of codes -> one learned embedding per cell, channel and code, summed.

    :class:`DiscreteEncoder`'s function over every value of the image, computed with
    ``F.embedding_bag``: on MiniGrid's 147 codes per step that was 4x faster, forward and
    backward, than gathering the embeddings and then summing them.
    """

    def __init__(self, shape: list[int], num_codes: int, embed_dim: int) -> None:
        super().__init__([num_codes] * math.prod(shape), embed_dim, multi=True)

    def forward(self, obs: Tensor) -> Tensor:
        codes = obs.reshape(obs.shape[0], -1).long() + self.offsets  # (N, H*W*C)
        return F.embedding_bag(codes, self.embedding.weight, mode="sum")  # (N, d)


class ImageEncoder(nn.Module):
    """Box (H, W, C) -> a small CNN.

    Integer images (MiniGrid's (7, 7, 3) uint8 view) hold categorical codes per channel (object,
    colour, state), not intensities: code 5 "key" is not between 4 "door" and 6 "ball". So each
    channel's code gets its own learned embedding (summed over channels, as for MultiDiscrete) before
    the convolutions; for 8-bit pixels the same table is a learned per-intensity map, which is also
    fine. Float images are scaled to [0, 1] and mixed by a 1x1 convolution instead.
    """

    def __init__(self, shape: list[int], low: float, high: float, dtype: str, embed_dim: int):
        super().__init__()
        h, w, c = shape
        stem_dim = 16
        self.integer = dtype.startswith(("uint", "int")) and low >= 0 and high <= 255
        if self.integer:
            num_codes = int(high) + 1
            self.codes = nn.Embedding(c * num_codes, stem_dim)
            offsets = torch.arange(c, dtype=torch.long) * num_codes
            self.register_buffer("offsets", offsets, persistent=False)
        else:
            finite = math.isfinite(low) and math.isfinite(high) and high > low
            self.low, self.range = (low, high - low) if finite else (0.0, 1.0)
            self.codes = nn.Conv2d(c, stem_dim, kernel_size=1)
        # Stride-2 convolutions until both sides are <= 8, so big frames stay cheap.
        layers: list[nn.Module] = [nn.Conv2d(stem_dim, 32, 3, padding=1), nn.ReLU()]
        while h > 8 or w > 8:
            layers += [nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU()]
            h, w = (h + 1) // 2, (w + 1) // 2
        layers += [nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten()]
        h, w = (h + 1) // 2, (w + 1) // 2
        self.cnn = nn.Sequential(*layers)
        self.proj = nn.Linear(32 * h * w, embed_dim)

    def forward(self, obs: Tensor) -> Tensor:
        # obs: (N, H, W, C)
        if self.integer:
            x = self.codes(obs.long() + self.offsets).sum(3)  # (N, H, W, C, s) -> (N, H, W, s)
            x = x.permute(0, 3, 1, 2)  # (N, s, H, W)
        else:
            x = (obs.to(self.proj.weight.dtype) - self.low) / self.range  # (N, H, W, C)
            x = self.codes(x.permute(0, 3, 1, 2))  # (N, s, H, W)
        return self.proj(self.cnn(x.contiguous()))  # (N, 32*h*w) -> (N, d)


def make_observation_encoder(space: Space, cfg: ModelConfig) -> tuple[nn.Module, tuple[int, ...]]:
    """The encoder for an observation space and the observation shape; ``cfg.vector_encoder``
    chooses linear or tokens for a 1-D Box, ``cfg.image_encoder`` the CNN
    (:class:`ImageEncoder`), per-value code embeddings (:class:`CodeEncoder`) or Gato's patches
    (:class:`ad.learn.patches.PatchEncoder`) for an (H, W, C) Box.

    Raises:
        UserError: the space is not Discrete, MultiDiscrete, 1-D Box or (H, W, C) Box,
            vector_encoder is tokens and the space is not a 1-D Box, or image_encoder is codes
            and the images are not integer codes.
    """
    embed_dim = cfg.embed_dim
    if cfg.vector_encoder == "tokens":
        if not isinstance(space, Box) or len(space.shape) != 1:
            raise UserError(
                f"model.vector_encoder=tokens takes 1-D Box observations, not {space}; use "
                "model.vector_encoder=linear for this env"
            )
        tokenizer = MuLawTokenizer(float(cfg.token_mu), float(cfg.token_max), cfg.token_bins)
        size = int(space.shape[0])
        return TokenVectorEncoder(size, embed_dim, tokenizer), (size,)
    if isinstance(space, Discrete):
        return DiscreteEncoder([int(space.n)], embed_dim, multi=False), ()
    if isinstance(space, MultiDiscrete):
        nvec = [int(n) for n in np.ravel(space.nvec)]
        return DiscreteEncoder(nvec, embed_dim, multi=True), (len(nvec),)
    if isinstance(space, Box):
        return _box_observation_encoder(space, cfg)
    raise UserError(
        f"unsupported observation space {space}; the model takes Discrete, MultiDiscrete or Box"
    )


def _box_observation_encoder(space: Box, cfg: ModelConfig) -> tuple[nn.Module, tuple[int, ...]]:
    """A vector's or an image's encoder: see :func:`make_observation_encoder`."""
    shape = [int(s) for s in space.shape]
    low, high = box_range(space)
    if len(shape) == 1:
        return VectorEncoder(shape[0], low, high, cfg.embed_dim), tuple(shape)
    if len(shape) == 3:
        if cfg.image_encoder == "patches":
            return PatchEncoder(shape, low, high, cfg.embed_dim), tuple(shape)
        dtype = np.dtype(space.dtype).name
        if cfg.image_encoder == "codes":
            if not (dtype.startswith(("uint", "int")) and low >= 0 and high <= 255):
                raise UserError(
                    f"model.image_encoder=codes embeds integer codes, but the images are "
                    f"{dtype} in [{low}, {high}]; use model.image_encoder=cnn or patches"
                )
            return CodeEncoder(shape, int(high) + 1, cfg.embed_dim), tuple(shape)
        return ImageEncoder(shape, low, high, dtype, cfg.embed_dim), tuple(shape)
    raise UserError(
        f"unsupported Box observation shape {shape}; use a 1-D vector or an (H, W, C) image "
        "(wrap the env, e.g. with gymnasium.wrappers.FlattenObservation)"
    )


# --------------------------------------------------------------------------- actions


def box_scale(space: Box) -> tuple[Tensor, Tensor]:
    """(centre, half width) per dimension of a Box action space, float32 (act_dim,) each: the
    affine map ``(a - centre) / half`` takes the Box to [-1, 1]^act_dim."""
    low, high = box_bounds(space)
    centre = torch.tensor((high + low) / 2, dtype=torch.float32)
    half = torch.tensor((high - low) / 2, dtype=torch.float32)
    return centre, half


class BoxActionEncoder(nn.Module):
    """A Box action -> a linear layer over the action normalised to [-1, 1] per dimension.

    The "no previous action" of a stream's first step is an action row of NaNs; it gets a learned
    vector of its own instead.
    """

    def __init__(self, space: Box, embed_dim: int) -> None:
        super().__init__()
        centre, half = box_scale(space)
        self.register_buffer("mid", centre, persistent=False)
        self.register_buffer("radius", half, persistent=False)
        self.linear = nn.Linear(centre.numel(), embed_dim)
        self.none = nn.Parameter(torch.randn(embed_dim) * 0.02)

    def forward(self, actions: Tensor) -> Tensor:
        # actions: (..., act_dim) float; a NaN row means "no previous action"
        absent = torch.isnan(actions).any(-1, keepdim=True)  # (..., 1)
        x = (torch.nan_to_num(actions.to(self.radius.dtype)) - self.mid) / self.radius
        out = self.linear(x.to(self.linear.weight.dtype))  # (..., d)
        return torch.where(absent, self.none.to(out.dtype), out)


def make_action_encoder(space: Space, embed_dim: int) -> nn.Module:
    """The previous-action embedding of an action space.

    Discrete(n): an embedding of n + 1 ids (id n: no previous action). Box:
    :class:`BoxActionEncoder`.

    Raises:
        UserError: any other action space.
    """
    if isinstance(space, Discrete):
        return nn.Embedding(int(space.n) + 1, embed_dim)
    if isinstance(space, Box) and len(space.shape) == 1:
        if not np.all(np.isfinite(box_scale(space)[1].numpy())):
            raise UserError(f"Box action space {space} has infinite bounds; bound it")
        return BoxActionEncoder(space, embed_dim)
    raise UserError(
        f"unsupported action space {space}; the model takes Discrete or 1-D Box actions"
    )
