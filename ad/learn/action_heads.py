"""Action heads: what the trunk's output at step t says about the action at t, per action space.

Every head is one linear layer from the trunk's ``d`` features to the head's outputs, plus what
those outputs mean: the training loss against the recorded actions, and how an action is drawn
from them at evaluation (``act``). Chosen by
``model.action_head`` (:func:`make_action_head`):

- ``categorical`` (Discrete(n)): n logits, cross-entropy.
- ``bins`` (Box, Gato-style, Reed et al. 2022 section 2.1 without the mu-law: actions are
  already bounded): each of the act_dim dimensions is a categorical over ``model.action_bins``
  uniform bins over its [low, high]; the dimensions are predicted **in parallel**, independently
  given the context (not one after another within a step as Gato does), so one token per step
  suffices. Cross-entropy per dimension; actions decode to bin centres.
- ``gaussian`` (Box): a mean and a log standard deviation per dimension of the action normalised
  to [-1, 1]; Gaussian negative log-likelihood.

``auto`` is categorical for Discrete and bins for Box. Sampling happens on the CPU with one numpy
generator per batch row, so a row's actions depend neither on the device nor on its batch.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
from gymnasium.spaces import Box, Discrete, Space
from torch import Tensor
from torch.nn import functional as F

from ad.errors import UserError
from ad.learn.encoders import box_scale

HEADS = ("auto", "categorical", "bins", "gaussian")
LOG_STD_RANGE = (-5.0, 2.0)  # of the normalised action: std from 0.007 to 7.4 half-widths


class ActionHead(nn.Module):
    """A linear layer d -> outputs, and the meaning of its outputs (subclasses)."""

    def __init__(self, embed_dim: int, num_outputs: int) -> None:
        super().__init__()
        self.proj = nn.Linear(embed_dim, num_outputs)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)  # (..., d) -> (..., outputs)

    def loss(self, outputs: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
        """The mean training loss of (B, T, outputs) against the actions at t (B, T, ...)."""
        raise NotImplementedError

    def act(
        self, outputs: Tensor, mode: str, temperature: float, rngs: list[np.random.Generator]
    ) -> np.ndarray:
        """(B, outputs) -> B actions: ``mode`` "sample" (at ``temperature``) or "argmax" (the
        most likely action: the argmax bin's centre, the Gaussian's mean); row b draws from
        ``rngs[b]``."""
        raise NotImplementedError


class CategoricalHead(ActionHead):
    """Discrete(n): n logits; targets (B, T) int64, -1 marks positions left out of the loss."""

    def __init__(self, embed_dim: int, num_actions: int) -> None:
        super().__init__(embed_dim, num_actions)
        self.num_actions = num_actions

    def loss(self, outputs: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
        return F.cross_entropy(
            outputs.reshape(-1, self.num_actions),  # (B*T, A)
            targets.reshape(-1).long(),  # (B*T,)
            ignore_index=-1,
            label_smoothing=label_smoothing,
        )

    def act(
        self, outputs: Tensor, mode: str, temperature: float, rngs: list[np.random.Generator]
    ) -> np.ndarray:
        """(B, A) logits -> (B,) int64 actions (an inverse-CDF draw per row)."""
        logits = outputs.double().cpu()
        if mode == "argmax":
            return logits.argmax(-1).numpy()
        cdf = torch.softmax(logits / temperature, dim=-1).cumsum(-1).numpy()  # (B, A)
        u = np.array([rng.random() for rng in rngs])[:, None] * cdf[:, -1:]  # (B, 1)
        return np.minimum((u >= cdf).sum(-1), cdf.shape[1] - 1)  # inverse-CDF draw


class BoxHead(ActionHead):
    """A head over a 1-D Box of act_dim dimensions; actions are float32 (..., act_dim). A target
    row of NaNs marks a position left out of the loss (as -1 does for Discrete)."""

    def __init__(self, embed_dim: int, num_outputs: int, space: Box) -> None:
        super().__init__(embed_dim, num_outputs)
        centre, half = box_scale(space)
        self.act_dim = centre.numel()
        # Derived from the action space the checkpoint stores: not part of the state dict.
        self.register_buffer("mid", centre, persistent=False)
        self.register_buffer("radius", half, persistent=False)

    def normalise(self, actions: Tensor) -> Tensor:
        """Actions in the Box -> [-1, 1] per dimension (float32)."""
        return (actions.float() - self.mid) / self.radius

    def to_actions(self, normalised: np.ndarray) -> np.ndarray:
        """[-1, 1] per dimension -> float32 actions, clipped to the Box."""
        centre, half = self.mid.cpu().double().numpy(), self.radius.cpu().double().numpy()
        return (centre + half * np.clip(normalised, -1.0, 1.0)).astype(np.float32)


class BinsHead(BoxHead):
    """Per dimension a categorical over ``num_bins`` uniform bins of [low, high], in parallel."""

    def __init__(self, embed_dim: int, space: Box, num_bins: int) -> None:
        act_dim = int(space.shape[0])
        super().__init__(embed_dim, act_dim * num_bins, space)
        self.num_bins = num_bins

    def bin_of(self, actions: Tensor) -> Tensor:
        """Actions (..., act_dim) -> their bins (..., act_dim) int64; the ends go to the end bins."""
        position = (self.normalise(actions) + 1) / 2 * self.num_bins  # [0, num_bins]
        return position.floor().long().clamp(0, self.num_bins - 1)

    def centres(self, bins: np.ndarray) -> np.ndarray:
        """Bins (..., act_dim) -> the actions at their centres, float32."""
        return self.to_actions((bins + 0.5) / self.num_bins * 2 - 1)

    def loss(self, outputs: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
        outputs, targets = kept_positions(outputs, targets)  # (N, D * bins), (N, D)
        return F.cross_entropy(
            outputs.float().reshape(-1, self.num_bins),  # (B*T*act_dim, bins)
            self.bin_of(targets).reshape(-1),  # (B*T*act_dim,)
            label_smoothing=label_smoothing,
        )

    def act(
        self, outputs: Tensor, mode: str, temperature: float, rngs: list[np.random.Generator]
    ) -> np.ndarray:
        """(B, act_dim * bins) logits -> (B, act_dim) float32 actions at bin centres."""
        logits = outputs.double().cpu().view(-1, self.act_dim, self.num_bins)  # (B, D, bins)
        if mode == "argmax":
            return self.centres(logits.argmax(-1).numpy())
        cdf = torch.softmax(logits / temperature, dim=-1).cumsum(-1).numpy()  # (B, D, bins)
        u = np.stack([rng.random(self.act_dim) for rng in rngs])[..., None] * cdf[..., -1:]
        bins = np.minimum((u >= cdf).sum(-1), self.num_bins - 1)  # (B, D) inverse-CDF draws
        return self.centres(bins)


class GaussianHead(BoxHead):
    """Per dimension a Gaussian over the action normalised to [-1, 1]: mean and log-std."""

    def __init__(self, embed_dim: int, space: Box) -> None:
        super().__init__(embed_dim, 2 * int(space.shape[0]), space)

    def mean_log_std(self, outputs: Tensor) -> tuple[Tensor, Tensor]:
        """(..., 2 act_dim) -> mean and clamped log-std, (..., act_dim) each, float32."""
        mean, log_std = outputs.float().split(self.act_dim, dim=-1)
        return mean, log_std.clamp(*LOG_STD_RANGE)

    def loss(self, outputs: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
        outputs, targets = kept_positions(outputs, targets)  # (N, 2 D), (N, D)
        mean, log_std = self.mean_log_std(outputs)  # (N, D) each
        z = (self.normalise(targets) - mean) * torch.exp(-log_std)  # (B, T, D)
        return (0.5 * z.square() + log_std).mean() + 0.5 * math.log(2 * math.pi)

    def act(
        self, outputs: Tensor, mode: str, temperature: float, rngs: list[np.random.Generator]
    ) -> np.ndarray:
        """(B, 2 act_dim) -> (B, act_dim) float32 actions, clipped to the Box."""
        mean, log_std = (x.double().cpu().numpy() for x in self.mean_log_std(outputs))
        if mode == "argmax":
            return self.to_actions(mean)
        noise = np.stack([rng.standard_normal(self.act_dim) for rng in rngs])  # (B, D)
        return self.to_actions(mean + temperature * np.exp(log_std) * noise)


def kept_positions(outputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """The (N, outputs) and (N, act_dim) rows of the positions whose target has no NaN."""
    kept = ~torch.isnan(targets).any(-1)  # (B, T)
    return outputs[kept], targets[kept]


def resolve_head(name: str, space: Space) -> str:
    """The head ``model.action_head`` means for an action space; ``auto``: categorical for
    Discrete, bins for Box.

    Raises:
        UserError: a head that does not fit the action space, in one line.
    """
    if name not in HEADS:
        raise UserError(f"model.action_head {name!r} is not one of {', '.join(HEADS)}")
    discrete = isinstance(space, Discrete)
    if name == "auto":
        return "categorical" if discrete else "bins"
    fits = {"categorical": Discrete, "bins": Box, "gaussian": Box}[name]
    if not isinstance(space, fits):
        use = "categorical (or auto)" if discrete else "bins or gaussian (or auto)"
        raise UserError(
            f"model.action_head={name} needs {fits.__name__} actions but the data has "
            f"{type(space).__name__} actions; set model.action_head to {use}"
        )
    return name


def make_action_head(name: str, num_bins: int, space: Space, embed_dim: int) -> ActionHead:
    """The action head for an action space.

    Args:
        name: ``model.action_head`` (auto, categorical, bins, gaussian).
        num_bins: ``model.action_bins``, bins per dimension of the bins head.
        space: the action space: Discrete(n) or a 1-D Box with finite bounds.
        embed_dim: the trunk's width d.

    Raises:
        UserError: a head that does not fit the action space.
    """
    head = resolve_head(name, space)
    if head == "categorical":
        return CategoricalHead(embed_dim, int(space.n))
    if not isinstance(space, Box) or len(space.shape) != 1:
        raise UserError(f"Box action space {space} is not 1-D; flatten it (FlattenAction)")
    if head == "bins":
        return BinsHead(embed_dim, space, num_bins)
    return GaussianHead(embed_dim, space)
