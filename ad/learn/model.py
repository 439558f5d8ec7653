"""The Algorithm Distillation transformer: a causal GPT over one token per environment step.

Built bottom-up as in nanoGPT (input encoders in ad/learn/encoders.py, action heads in
ad/learn/action_heads.py): attention, MLP, block, model. Token t embeds the observation at t plus
the action, reward and episode-start flag that precede it; its output predicts the action at t
(Laskin et al. 2022, section 3).

Positions are ALiBi biases (Press et al. 2022), never absolute embeddings: the score of query i on
key j is ``q.k / sqrt(hs) - slope_h * (i - j)``. Because the bias depends only on the distance, cached
keys and values stay valid when the context slides, so ``step()`` can act for thousands of steps past
the trained context length with a KV cache of the last ``context_steps`` tokens. ``forward()`` on a
longer sequence applies the same band (each query sees itself and the previous c - 1 tokens), so
stepping token by token equals one forward pass exactly.

Through the layers, information flows from up to num_layers * (c - 1) steps back, in both: a cached
token's keys were computed when it had a full band of its own. A training window of exactly c steps
never shows that reach, so there are two decoding modes (``init_cache(mode=...)``): ``kv_cache``
(the cache; trained for by windows longer than the band, ``train.data.window_steps``) and
``reencode`` (re-encode the last c tokens at every step: exactly what a c-step training window computes at its
last position, at c times the cost).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from gymnasium.spaces import Discrete, Space
from torch import Tensor
from torch.nn import functional as F

from ad.config import ModelConfig
from ad.data.spaces import num_actions
from ad.errors import UserError
from ad.learn.action_heads import ActionHead, make_action_head
from ad.learn.encoders import make_action_encoder, make_observation_encoder

# --------------------------------------------------------------------------- ALiBi


def alibi_slopes(num_heads: int) -> Tensor:
    """The standard geometric ALiBi slopes 2^(-8/n), 2^(-16/n), ...; interleaved for non-powers of 2."""

    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(num_heads).is_integer():
        slopes = power_of_2(num_heads)
    else:  # as in the ALiBi reference code: the closest power of 2, then every other of 2x that
        closest = 2 ** math.floor(math.log2(num_heads))
        slopes = power_of_2(closest) + power_of_2(2 * closest)[0::2][: num_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(slopes: Tensor, length: int, window: int) -> Tensor:
    """Additive attention bias (1, nh, T, T): -slope * (i - j) inside the causal band (i-c, i].

    4-D on purpose: SDPA on CPU takes its fused kernel for a (1, nh, T, T) float mask but falls
    back to a ~7x slower path for the same mask as (nh, T, T) (measured, torch 2.13).
    """
    pos = torch.arange(length, device=slopes.device)
    dist = pos[:, None] - pos[None, :]  # (T, T) query minus key
    bias = -slopes[:, None, None] * dist  # (nh, T, T)
    outside = (dist < 0) | (dist >= window)  # future keys, or keys older than the window
    return bias.masked_fill(outside, float("-inf")).unsqueeze(0)  # (1, nh, T, T)


# --------------------------------------------------------------------------- the transformer


@dataclass
class KVCache:
    """Keys and values of the last <= c = context_steps tokens, as per-layer ring buffers.

    ``keys[layer]`` and ``values[layer]`` are (B, nh, c, hs); token number ``n`` (counting from 0)
    lives in slot ``n % c``, so appending writes one slot instead of copying the whole cache. The
    first ``length`` slots are filled; ``num_tokens`` counts every token ever appended.
    """

    keys: list[Tensor]
    values: list[Tensor]
    length: int = 0
    num_tokens: int = 0

    @property
    def slot(self) -> int:
        """The slot that the next token is written to (the oldest one once the cache is full)."""
        return self.num_tokens % self.keys[0].size(2)


@dataclass
class RecentTokens:
    """The inputs of the last <= c steps, re-encoded as one forward pass at every step.

    ``inputs`` holds the four input streams (``INPUT_KEYS``), each (B, L, ...) with L <= c;
    None before the first step.
    """

    inputs: dict[str, Tensor] | None = None
    device: torch.device | None = None


DECODING_MODES = ("kv_cache", "reencode")
INPUT_KEYS = ("observations", "prev_actions", "prev_rewards", "prev_dones")


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.c_attn = nn.Linear(cfg.embed_dim, 3 * cfg.embed_dim)  # q, k, v for all heads at once
        self.c_proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.num_heads = cfg.num_heads
        self.attn_dropout = cfg.attn_dropout

    def forward(
        self, x: Tensor, bias: Tensor, cache: KVCache | None = None, layer: int = 0
    ) -> Tensor:
        # x: (B, T, C); bias: (1, nh, T, T) ALiBi + band, or (1, nh, 1, L) when decoding
        B, T, C = x.size()
        nh, hs = self.num_heads, C // self.num_heads
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        if cache is not None:
            # the new token (T == 1) overwrites the oldest slot; attend to the L filled slots
            cache.keys[layer][:, :, cache.slot] = k[:, :, 0]  # (B, nh, hs)
            cache.values[layer][:, :, cache.slot] = v[:, :, 0]  # (B, nh, hs)
            k = cache.keys[layer][:, :, : cache.length]  # (B, nh, L, hs)
            v = cache.values[layer][:, :, : cache.length]  # (B, nh, L, hs)
            # for one query, plain attention measured 1.2-1.8x faster than SDPA on CPU
            att = (q * hs**-0.5) @ k.transpose(-2, -1) + bias  # (B, nh, 1, L)
            y = att.softmax(dim=-1) @ v  # (B, nh, 1, hs)
        else:
            dropout_p = self.attn_dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, nh, T, hs) -> (B, T, C)
        return self.resid_dropout(self.c_proj(y))  # (B, T, C)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.embed_dim, cfg.ff_dim)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(cfg.ff_dim, cfg.embed_dim)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # (B, T, C)


class Block(nn.Module):
    """Pre-norm (x + f(LN(x)), the default) or post-norm (LN(x + f(x)), the AD paper's)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.embed_dim)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.embed_dim)
        self.mlp = MLP(cfg)
        self.pre_norm = cfg.norm == "pre"

    def forward(
        self, x: Tensor, bias: Tensor, cache: KVCache | None = None, layer: int = 0
    ) -> Tensor:
        if self.pre_norm:
            x = x + self.attn(self.ln_1(x), bias, cache, layer)
            return x + self.mlp(self.ln_2(x))  # (B, T, C)
        x = self.ln_1(x + self.attn(x, bias, cache, layer))
        return self.ln_2(x + self.mlp(x))  # (B, T, C)


class StepEncoder(nn.Module):
    """One family's input encoders: a step's observation, previous action, previous reward and
    episode-start flag, each embedded by its space's encoder and summed into one token."""

    def __init__(self, cfg: ModelConfig, observation_space: Space, action_space: Space) -> None:
        super().__init__()
        if isinstance(action_space, Discrete) and int(action_space.n) < 1:
            raise UserError(f"num_actions must be >= 1, got {action_space.n}; check the env")
        d = cfg.embed_dim
        self.obs_encoder, self.obs_shape = make_observation_encoder(observation_space, cfg)
        self.observation_space, self.action_space = observation_space, action_space
        self.num_actions = num_actions(action_space)  # None: Box actions
        # Discrete: action id num_actions stands for "no previous action" (a stream's first
        # step); Box: a row of NaNs does.
        self.action_emb = make_action_encoder(action_space, d)
        self.reward_emb = nn.Linear(1, d)
        self.done_emb = nn.Embedding(2, d)  # does this step start a new episode?

    def forward(
        self, observations: Tensor, prev_actions: Tensor, prev_rewards: Tensor, prev_dones: Tensor
    ) -> Tensor:
        B, T = prev_actions.shape[:2]
        if observations.shape != (B, T, *self.obs_shape):
            raise ValueError(
                f"observations {tuple(observations.shape)} do not match (B, T) = {(B, T)} and "
                f"observation shape {self.obs_shape}"
            )
        if self.num_actions is not None:  # Discrete: (B, T) ids; Box: (B, T, act_dim) floats
            prev_actions = prev_actions.long()
        obs = self.obs_encoder(observations.reshape(B * T, *self.obs_shape)).view(B, T, -1)
        return (
            obs  # (B, T, d)
            + self.action_emb(prev_actions)  # (B, T, d)
            + self.reward_emb(prev_rewards.to(obs.dtype).unsqueeze(-1))  # (B, T, 1) -> (B, T, d)
            + self.done_emb(prev_dones.long())  # (B, T, d)
        )


def family_key(name: str) -> str:
    """A family name as a ModuleDict key (which may hold no dots)."""
    return name.replace(".", "_")


class ADTransformer(nn.Module):
    """Causal transformer over one token per environment step that predicts the next action.

    One trunk (the blocks with their ALiBi band and the final norm) between per-family input
    encoders and action heads, chosen by each family's spaces (as huggingface/jat picks an
    encoder per modality). A specialist is the one-family case; with several families a learned
    family embedding is added to every token: a window's family is known to the model, its task
    never is. :meth:`policy` is one family's view, which rollouts act with.

    Args:
        cfg: the model section of the experiment config.
        spaces: family name -> (observation space, action space), ``gymnasium.spaces``
            objects (``ad.data.spaces.space_from_json`` restores stored ones); the order is the
            order of the families' rows in every batch.
    """

    def __init__(self, cfg: ModelConfig, spaces: Mapping[str, tuple[Space, Space]]) -> None:
        super().__init__()
        if not spaces:
            raise UserError("a model needs at least one family's spaces")
        d = cfg.embed_dim
        self.cfg = cfg
        self.names = list(spaces)
        self.encoders = nn.ModuleDict(
            {family_key(n): StepEncoder(cfg, *spaces[n]) for n in self.names}
        )
        self.mask_token = nn.Parameter(torch.zeros(d))  # replaces masked input tokens in training
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.num_layers)])
        # post-norm blocks already end in a LayerNorm
        self.ln_f = nn.LayerNorm(d) if cfg.norm == "pre" else nn.Identity()
        self.heads = nn.ModuleDict(
            {
                family_key(n): make_action_head(cfg.action_head, cfg.action_bins, act, d)
                for n, (_, act) in spaces.items()
            }
        )
        self.register_buffer("slopes", alibi_slopes(cfg.num_heads), persistent=False)
        self._bias_cache: dict[tuple, Tensor] = {}

        # nanoGPT init: N(0, 0.02), residual projections scaled by 1/sqrt(2 * num_layers) (GPT-2)
        self.apply(self._init_weights)
        nn.init.normal_(self.mask_token, mean=0.0, std=0.02)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.num_layers))
        # one row per family; none for one family, whose model is exactly a specialist
        self.family_emb = (
            nn.Parameter(torch.randn(len(self.names), d) * 0.02) if len(self.names) > 1 else None
        )

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self) -> int:
        """Number of parameters (there are no position embeddings to leave out)."""
        return sum(p.numel() for p in self.parameters())

    def spaces(self, name: str) -> tuple[Space, Space]:
        """A family's (observation space, action space)."""
        encoder = self.encoder(name)
        return encoder.observation_space, encoder.action_space

    def encoder(self, name: str) -> StepEncoder:
        self._check_family(name)
        return self.encoders[family_key(name)]

    def head(self, name: str) -> ActionHead:
        self._check_family(name)
        return self.heads[family_key(name)]

    def _check_family(self, name: str) -> None:
        if name not in self.names:
            raise UserError(
                f"the model has no family {name!r}; its families: {', '.join(self.names)}"
            )

    def policy(self, name: str | None = None) -> FamilyPolicy:
        """One family's view (its encoders and head around the shared trunk) that rollouts act
        with; ``name`` may be left out when the model has one family."""
        if name is None:
            if len(self.names) > 1:
                raise UserError(
                    f"the model has {len(self.names)} families ({', '.join(self.names)}); "
                    "name the one to act in"
                )
            name = self.names[0]
        self._check_family(name)
        return FamilyPolicy(self, name)

    # ------------------------------------------------------------------ inputs and masks

    def embed(self, name: str, inputs: Mapping[str, Tensor]) -> Tensor:
        """One family's tokens, (B, T, d): the sum of its four input embeddings (``inputs``:
        observations, prev_actions, prev_rewards, prev_dones), masked and dropped out in training,
        plus the family embedding."""
        x = self.encoder(name)(*(inputs[k] for k in INPUT_KEYS))  # (B, T, d)
        if self.training and self.cfg.input_mask_prob > 0:
            # AD appendix: each input token is replaced by a learned mask token with probability p
            masked = torch.rand(*x.shape[:2], 1, device=x.device) < self.cfg.input_mask_prob
            x = torch.where(masked, self.mask_token.to(x.dtype), x)  # (B, T, d)
        x = self.drop(x)
        if self.family_emb is not None:  # never masked: the family is always known
            x = x + self.family_emb[self.names.index(name)].to(x.dtype)  # (B, T, d)
        return x

    def trunk(self, x: Tensor) -> Tensor:
        """The shared blocks and final norm over whole sequences, (B, T, d) -> (B, T, d)."""
        bias = self._bias(x.size(1), x.device, x.dtype)  # (1, nh, T, T)
        for block in self.blocks:
            x = block(x, bias)  # (B, T, d)
        return self.ln_f(x)  # (B, T, d)

    def _bias(self, length: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """The (1, nh, T, T) ALiBi + band bias for forward(), built once per (T, device, dtype)."""
        # a bias made under inference_mode (step() in reencode mode) can't enter autograd later
        key = ("full", length, device, dtype, torch.is_inference_mode_enabled())
        bias = self._bias_cache.get(key)
        if bias is None:
            if len(self._bias_cache) > 16:  # many distinct lengths: keep memory bounded
                self._bias_cache.clear()
            slopes = self.slopes.to(device=device, dtype=torch.float32)
            bias = alibi_bias(slopes, length, self.cfg.context_steps).to(dtype)
            self._bias_cache[key] = bias
        return bias

    def _step_bias(self, cache: KVCache, device: torch.device, dtype: torch.dtype) -> Tensor:
        """The (1, nh, 1, L) bias of the newest token (in ``cache.slot``) on the L filled slots.

        Slot s holds the token (slot - s) mod c steps back, so the distances are a rotation of
        c-1 .. 0: one slice of the precomputed sequence E[j] = (c - 1 - j) mod c, j < 2c - 1.
        """
        key = ("step", device, dtype)
        bias = self._bias_cache.get(key)
        c = self.cfg.context_steps
        if bias is None:
            dist = (c - 1 - torch.arange(2 * c - 1, device=device)) % c  # (2c-1,)
            slopes = self.slopes.to(device=device, dtype=torch.float32)
            bias = (-slopes[None, :, None, None] * dist).to(dtype)  # (1, nh, 1, 2c-1)
            self._bias_cache[key] = bias
        start = c - 1 - cache.slot
        return bias[..., start : start + cache.length]  # (1, nh, 1, L)

    # ------------------------------------------------------------------ training / full sequences

    def forward(
        self, batches: Mapping[str, Mapping[str, Tensor]], label_smoothing: float = 0.0
    ) -> tuple[dict[str, Tensor], Tensor | None, dict[str, Tensor]]:
        """Every family's head outputs at every step, and the losses when targets are given.

        Args:
            batches: family name -> its rows, each (B_f, T, ...) with one T for all families:
                observations (int64 for Discrete/MultiDiscrete, uint8/float for Box);
                prev_actions (Discrete: int64 in [0, num_actions], num_actions meaning no
                previous action; Box: float, a NaN row meaning none); prev_rewards (float, the
                reward of step t-1); prev_dones (bool, True where step t starts an episode);
                optionally targets, the actions at t (int64, -1: left out of the loss; or float).
            label_smoothing: cross-entropy label smoothing (categorical and bins heads).

        Returns:
            (outputs per family (B_f, T, head outputs: the logits for Discrete), the loss (the
            row-weighted mean of the families' losses) or None without targets, the loss per
            family).
        """
        names = [n for n in self.names if n in batches]
        if len(names) != len(batches):
            self._check_family(next(n for n in batches if n not in self.names))
        xs = [self.embed(n, batches[n]) for n in names]
        rows = [x.size(0) for x in xs]
        x = self.trunk(xs[0] if len(xs) == 1 else torch.cat(xs, 0))  # (B, T, d), B = sum(rows)
        outputs, losses = {}, {}
        for n, part in zip(names, x.split(rows, 0), strict=True):
            head = self.head(n)
            outputs[n] = head(part)  # (B_f, T, outputs)
            if "targets" in batches[n]:
                losses[n] = head.loss(outputs[n], batches[n]["targets"], label_smoothing)
        loss = None
        if len(losses) == len(names):
            loss = sum(losses[n] * (r / sum(rows)) for n, r in zip(names, rows, strict=True))
        return outputs, loss, losses

    # ------------------------------------------------------------------ incremental decoding

    def init_cache(
        self, batch_size: int, device: torch.device | str | None = None, mode: str = "kv_cache"
    ) -> KVCache | RecentTokens:
        """Empty decoding state for ``batch_size`` parallel streams (on the model's device by
        default): a KV cache (``mode="kv_cache"``) or the recent tokens, re-encoded each step (``mode="reencode"``)."""
        p = next(self.parameters())
        device = p.device if device is None else torch.device(device)
        if mode not in DECODING_MODES:
            raise UserError(f"unknown decoding mode {mode!r}; use one of {DECODING_MODES}")
        if mode == "reencode":
            return RecentTokens(device=device)
        hs = self.cfg.embed_dim // self.cfg.num_heads
        shape = (batch_size, self.cfg.num_heads, self.cfg.context_steps, hs)  # (B, nh, c, hs)
        n = self.cfg.num_layers
        return KVCache(
            keys=[torch.zeros(shape, device=device, dtype=p.dtype) for _ in range(n)],
            values=[torch.zeros(shape, device=device, dtype=p.dtype) for _ in range(n)],
        )

    @torch.inference_mode()
    def step(
        self,
        cache: KVCache | RecentTokens,
        name: str,
        observation: Tensor,
        prev_action: Tensor,
        prev_reward: Tensor,
        prev_done: Tensor,
    ) -> Tensor:
        """Append one token per stream to the decoding state and return family ``name``'s
        action head outputs.

        Both states keep the last ``context_steps`` tokens, so the model acts indefinitely. With a
        KV cache the result equals ``forward()`` on the whole sequence at its last position; with a
        token window, ``forward()`` on the last ``context_steps`` tokens only.

        Args:
            cache: from :meth:`init_cache`, updated in place.
            name: the family the streams act in.
            observation: (B, *obs_shape). prev_action: (B,) int64 in [0, num_actions], or
            (B, act_dim) float for Box actions. prev_reward: (B,) float. prev_done: (B,) bool,
            True when this step starts an episode.

        Returns:
            outputs (B, head outputs); ``self.head(name).act`` turns them into actions.
        """
        if self.training:
            raise RuntimeError("step() is for inference: call model.eval() first")
        device = cache.device if isinstance(cache, RecentTokens) else cache.keys[0].device
        new = {  # each (B, 1, ...)
            key: torch.as_tensor(x, device=device).unsqueeze(1)
            for key, x in zip(
                INPUT_KEYS, (observation, prev_action, prev_reward, prev_done), strict=True
            )
        }
        if isinstance(cache, RecentTokens):
            return self._window_step(cache, name, new)
        x = self.embed(name, new)  # (B, 1, d)
        cache.length = min(cache.length + 1, self.cfg.context_steps)  # L, counting the new token
        bias = self._step_bias(cache, x.device, x.dtype)  # (1, nh, 1, L)
        for layer, block in enumerate(self.blocks):
            x = block(x, bias, cache, layer)  # (B, 1, d)
        cache.num_tokens += 1
        return self.head(name)(self.ln_f(x))[:, 0]  # (B, outputs)

    def _window_step(self, window: RecentTokens, name: str, new: dict[str, Tensor]) -> Tensor:
        # copies: the caller may reuse its input buffers (the rollout writes into them in place)
        new = {key: x.clone() for key, x in new.items()}
        if window.inputs is None:
            window.inputs = new
        else:
            first = max(window.inputs["prev_dones"].size(1) - (self.cfg.context_steps - 1), 0)
            window.inputs = {k: torch.cat([window.inputs[k][:, first:], new[k]], 1) for k in new}
        outputs, _, _ = self.forward({name: window.inputs})  # (B, L, head outputs)
        return outputs[name][:, -1]  # (B, head outputs)

    # ------------------------------------------------------------------ loading

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ):
        """Load weights, also from a torch.compile'd or DDP-wrapped module's state dict."""
        prefixes = ("_orig_mod.", "module.")
        cleaned = {}
        for key, value in state_dict.items():
            while key.startswith(prefixes):
                key = key.split(".", 1)[1]
            cleaned[key] = value
        return super().load_state_dict(cleaned, strict=strict, assign=assign)


class FamilyPolicy(nn.Module):
    """One family's view of an :class:`ADTransformer`: its spaces, head and decoding, around the
    shared trunk. Rollouts act with it; it holds no weights of its own."""

    def __init__(self, model: ADTransformer, name: str) -> None:
        super().__init__()
        self.model, self.name = model, name
        encoder = model.encoder(name)
        self.cfg = model.cfg
        self.observation_space, self.action_space = encoder.observation_space, encoder.action_space
        self.num_actions, self.obs_shape = encoder.num_actions, encoder.obs_shape

    @property
    def head(self) -> ActionHead:
        return self.model.head(self.name)

    @property
    def encoder(self) -> StepEncoder:
        return self.model.encoder(self.name)

    def init_cache(
        self, batch_size: int, device: torch.device | str | None = None, mode: str = "kv_cache"
    ) -> KVCache | RecentTokens:
        return self.model.init_cache(batch_size, device, mode)

    def step(self, cache: KVCache | RecentTokens, *inputs: Tensor) -> Tensor:
        """:meth:`ADTransformer.step` in this family."""
        return self.model.step(cache, self.name, *inputs)

    def forward(
        self,
        observations: Tensor,
        prev_actions: Tensor,
        prev_rewards: Tensor,
        prev_dones: Tensor,
        targets: Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> tuple[Tensor, Tensor | None]:
        """(outputs (B, T, head outputs), loss or None) of this family's windows; the inputs as
        for :meth:`ADTransformer.forward`."""
        inputs = (observations, prev_actions, prev_rewards, prev_dones)
        batch = dict(zip(INPUT_KEYS, inputs, strict=True))
        if targets is not None:
            batch["targets"] = targets
        outputs, loss, _ = self.model({self.name: batch}, label_smoothing)
        return outputs[self.name], loss
