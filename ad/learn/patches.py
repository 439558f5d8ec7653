"""Images as Gato reads them (Reed et al. 2022, section 2.1 and appendix C.3): 16x16 patches,
each embedded by one ResNet v2 block, plus a learned position embedding of the patch
(``model.image_encoder=patches``)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ad.errors import UserError

PATCH = 16  # pixels per patch side (Gato's)


def scale_pixels(obs: Tensor, low: float, high: float) -> Tensor:
    """Gato's pixel scaling: the Box bounds [low, high] to [-1, 1], then divided by
    sqrt(PATCH) = 4, so every pixel lies in [-1/4, 1/4]. (N, H, W, C) -> float32."""
    x = (obs.to(torch.float32) - low) * (2.0 / (high - low)) - 1.0
    return x / math.sqrt(PATCH)


def cut_patches(x: Tensor) -> Tensor:
    """(N, H, W, C) scaled images -> (N, P, C, 16, 16) patches in raster order (left to right
    along the top row of patches, then the next row), after zero padding at the bottom and the
    right up to multiples of 16 (0 is the middle of the scaled range, mid-grey)."""
    n, h, w, c = x.shape
    rows, cols = -(-h // PATCH), -(-w // PATCH)
    x = F.pad(x.permute(0, 3, 1, 2), (0, cols * PATCH - w, 0, rows * PATCH - h))  # (N, C, H', W')
    x = x.reshape(n, c, rows, PATCH, cols, PATCH).permute(0, 2, 4, 1, 3, 5)  # (N, r, c, C, 16, 16)
    return x.reshape(n, rows * cols, c, PATCH, PATCH)


class ResNetV2Block(nn.Module):
    """A pre-activation (v2) residual block: x + conv(GELU(GN(conv(GELU(GN(x)))))), with
    GroupNorm and GELU as in Gato."""

    def __init__(self, width: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, width)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv1(F.gelu(self.norm1(x)))
        return x + self.conv2(F.gelu(self.norm2(y)))


class PatchEncoder(nn.Module):
    """Box (H, W, C) image -> one token: Gato's patches, pooled.

    Each 16x16 patch (:func:`scale_pixels`, :func:`cut_patches`) goes through a stride-4 4x4
    convolution (16x16 -> 4x4 with ``width`` channels: Gato's block runs on the full patch, this
    keeps a CPU step cheap), one :class:`ResNetV2Block` and a linear layer into ``embed_dim``.
    The patch's learned row and column embeddings are added: Gato's position encoding quantises
    the patch's normalised row and column interval; for one fixed frame size (one family) the
    intervals are fixed, so that is one embedding per patch row and one per patch column.
    Gato puts every patch in the sequence; here a step stays one token: the patches go through a
    GELU and are averaged, then a linear layer. The GELU comes before the mean because the mean
    of (patch + position) would carry the positions only as a constant sum.

    Raises:
        UserError: the image is smaller than one patch (MiniGrid's (7, 7, 3) view holds
            categorical codes, not intensities) or the Box has infinite bounds.
    """

    def __init__(
        self, shape: list[int], low: float, high: float, embed_dim: int, width: int = 16
    ) -> None:
        super().__init__()
        h, w, c = shape
        if h < PATCH or w < PATCH:
            raise UserError(
                f"model.image_encoder=patches cuts 16x16 patches of pixel intensities, but the "
                f"images are {h}x{w} (MiniGrid's 7x7 view holds object codes); use "
                "model.image_encoder=cnn"
            )
        if not (math.isfinite(low) and math.isfinite(high) and high > low):
            raise UserError(
                f"model.image_encoder=patches scales pixels by the Box bounds, but they are "
                f"[{low}, {high}]; bound the observation space or use model.image_encoder=cnn"
            )
        self.low, self.high = low, high
        self.rows, self.cols = -(-h // PATCH), -(-w // PATCH)
        self.stem = nn.Conv2d(c, width, kernel_size=4, stride=4)  # (C, 16, 16) -> (width, 4, 4)
        self.block = ResNetV2Block(width, groups=min(8, width))
        self.proj = nn.Linear(width * (PATCH // 4) ** 2, embed_dim)
        self.row = nn.Embedding(self.rows, embed_dim)
        self.col = nn.Embedding(self.cols, embed_dim)
        index = torch.arange(self.rows * self.cols)
        self.register_buffer("row_of", index // self.cols, persistent=False)
        self.register_buffer("col_of", index % self.cols, persistent=False)
        self.out = nn.Linear(embed_dim, embed_dim)

    @property
    def num_patches(self) -> int:
        return self.rows * self.cols

    def patches(self, obs: Tensor) -> Tensor:
        """(N, H, W, C) observations -> (N, P, C, 16, 16) scaled patches in raster order."""
        return cut_patches(scale_pixels(obs, self.low, self.high))

    def patch_tokens(self, obs: Tensor) -> Tensor:
        """(N, H, W, C) -> (N, P, d): each patch's embedding plus its position's, before the
        pool (what a several-tokens-per-step model would put in the sequence)."""
        p = self.patches(obs)  # (N, P, C, 16, 16)
        n, num = p.shape[:2]
        x = p.reshape(n * num, *p.shape[2:]).to(self.stem.weight.dtype)
        x = self.block(self.stem(x))  # (N*P, width, 4, 4)
        x = self.proj(x.flatten(1)).view(n, num, -1)  # (N, P, d)
        return x + self.row(self.row_of) + self.col(self.col_of)

    def forward(self, obs: Tensor) -> Tensor:
        return self.out(F.gelu(self.patch_tokens(obs)).mean(1))  # (N, P, d) -> (N, d)
