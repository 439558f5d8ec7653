"""The generalist (issue 14): one transformer trunk between per-family encoders and heads.

As in huggingface/jat, each member family keeps its own input encoders (observation, previous
action, reward, done) and action head, chosen by its spaces exactly as for a specialist, and
all members share the trunk: the blocks (with their ALiBi band) and the final LayerNorm. A step
stays one token, so a window is as long as a specialist's (Gato's single vocabulary would make
a step several tokens and the context several times longer).

Each member is an :class:`ADTransformer` whose ``blocks`` and ``ln_f`` are the shared modules,
plus a learned member embedding added to every token: the window's family is known to the
model, its task never is. Rolling out one family means taking ``model.member(name)``, an
ordinary ADTransformer, so ``init_cache``/``step`` (KV cache and window modes) and the whole
evaluation path are the specialist's. The state dict lists the trunk's tensors under every
member's keys; they are the same tensors, which ``torch.save`` stores once (a two-member
checkpoint is the size of a specialist's plus the second member's encoders and head).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from ad.config import ModelConfig
from ad.errors import UserError
from ad.learn.model import ADTransformer

INPUT_KEYS = ("observations", "prev_actions", "prev_rewards", "prev_dones")


class MemberTransformer(ADTransformer):
    """One member's view of the generalist: its own encoders and head, the shared trunk, and a
    learned member embedding added to every token."""

    def __init__(self, cfg: ModelConfig, observation_space: dict, action_space: dict) -> None:
        super().__init__(cfg, observation_space, action_space)
        self.member_emb = nn.Parameter(torch.randn(cfg.embed_dim) * 0.02)

    def embed(
        self, observations: Tensor, prev_actions: Tensor, prev_rewards: Tensor, prev_dones: Tensor
    ) -> Tensor:
        # never masked: the family is always known, even where the step's inputs are masked
        x = super().embed(observations, prev_actions, prev_rewards, prev_dones)  # (B, T, d)
        return x + self.member_emb.to(x.dtype)  # (B, T, d)


def member_key(name: str) -> str:
    """A family name as a ModuleDict key (which may hold no dots)."""
    return name.replace(".", "_")


class GeneralistTransformer(nn.Module):
    """Per-member encoders and heads around one shared trunk.

    Args:
        cfg: the mixture's model section (one ``context_steps`` for all members).
        spaces: member name -> (observation space, action space), as ``space_to_json`` writes
            them; the order is the members' order in every batch.
    """

    def __init__(self, cfg: ModelConfig, spaces: Mapping[str, tuple[dict, dict]]) -> None:
        super().__init__()
        if len(spaces) < 2:
            raise UserError("a generalist needs at least two members; train a specialist")
        self.cfg = cfg
        self.names = list(spaces)
        members = {member_key(n): MemberTransformer(cfg, *spaces[n]) for n in self.names}
        trunk = members[member_key(self.names[0])]
        for m in members.values():  # one trunk: every member holds the same modules
            m.blocks, m.ln_f = trunk.blocks, trunk.ln_f
        self.members = nn.ModuleDict(members)

    def member(self, name: str) -> ADTransformer:
        """The ADTransformer of one member (shares the trunk; rollouts use it as is)."""
        if name not in self.names:
            raise UserError(
                f"the generalist has no member {name!r}; its members: {', '.join(self.names)}"
            )
        return self.members[member_key(name)]

    @property
    def trunk(self) -> ADTransformer:
        return self.members[member_key(self.names[0])]

    def num_parameters(self) -> int:
        """Every parameter once (the trunk is shared)."""
        return sum(p.numel() for p in self.parameters())

    def forward(
        self, batches: Mapping[str, Mapping[str, Tensor]], label_smoothing: float = 0.0
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The row-weighted mean loss over all members' rows, and each member's loss.

        Args:
            batches: member name -> its rows: observations, prev_actions, prev_rewards,
                prev_dones and targets, each (B_m, T, ...) with the same T for all members.
            label_smoothing: cross-entropy label smoothing (categorical and bins heads).
        """
        names = [n for n in self.names if n in batches]
        xs = [self.member(n).embed(*(batches[n][k] for k in INPUT_KEYS)) for n in names]
        lengths = {x.size(1) for x in xs}
        if len(lengths) != 1:
            raise ValueError(f"members' windows differ in length: {sorted(lengths)}")
        rows = [x.size(0) for x in xs]
        x = torch.cat(xs, 0)  # (B, T, d), B = sum of the members' rows
        trunk = self.trunk
        bias = trunk._bias(x.size(1), x.device, x.dtype)  # (1, nh, T, T)
        for block in trunk.blocks:
            x = block(x, bias)  # (B, T, d)
        x = trunk.ln_f(x)  # (B, T, d)
        losses = {}
        for n, part in zip(names, x.split(rows, 0), strict=True):
            head = self.member(n).head
            losses[n] = head.loss(head(part), batches[n]["targets"], label_smoothing)
        total = sum(r * losses[n] for n, r in zip(names, rows, strict=True)) / sum(rows)
        return total, losses

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ):
        """Load weights, also from a torch.compile'd module's state dict."""
        cleaned = {k.removeprefix("_orig_mod."): v for k, v in state_dict.items()}
        return super().load_state_dict(cleaned, strict=strict, assign=assign)


def load_generalist(ckpt: dict) -> GeneralistTransformer:
    """The generalist of a checkpoint written by ``ad.learn.mixture_train``, weights loaded."""
    import dataclasses

    from ad.mixture import mixture_from_checkpoint

    args = ckpt["model_args"]
    cfg = mixture_from_checkpoint(ckpt["config"]).model
    cfg = dataclasses.replace(cfg, context_steps=int(args["context_steps"]))
    spaces = {name: (obs, act) for name, (obs, act) in args["members"].items()}
    model = GeneralistTransformer(cfg, spaces)
    model.load_state_dict(ckpt["model"])
    return model
