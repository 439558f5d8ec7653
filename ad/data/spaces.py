"""Gymnasium spaces as JSON, so that histories and checkpoints can describe observations and actions."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from ad.errors import UserError


def space_to_json(space: spaces.Space) -> dict:
    """A JSON-serialisable description of a Discrete, MultiDiscrete or Box space.

    A Box gets scalar ``low`` / ``high`` (its smallest low and largest high); a Box whose bounds
    differ between dimensions also gets ``lows`` / ``highs``, the bounds of every dimension
    (flattened), so that an action Box keeps them.
    """
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": [int(n) for n in np.asarray(space.nvec).ravel()]}
    if isinstance(space, spaces.Box):
        spec = {
            "type": "Box",
            "shape": list(space.shape),
            "low": float(np.min(space.low)),
            "high": float(np.max(space.high)),
            "dtype": np.dtype(space.dtype).name,
        }
        lows, highs = np.ravel(space.low), np.ravel(space.high)
        if lows.size and (np.any(lows != lows[0]) or np.any(highs != highs[0])):
            spec["lows"], spec["highs"] = lows.tolist(), highs.tolist()
        return spec
    raise UserError(f"unsupported space {space}; use Discrete, MultiDiscrete or Box observations")


def space_from_json(spec: dict) -> spaces.Space:
    """Inverse of :func:`space_to_json`."""
    kind = spec.get("type")
    if kind == "Discrete":
        return spaces.Discrete(spec["n"])
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(spec["nvec"])
    if kind == "Box":
        shape = tuple(spec["shape"])
        if "lows" in spec:
            low = np.asarray(spec["lows"], spec["dtype"]).reshape(shape)
            high = np.asarray(spec["highs"], spec["dtype"]).reshape(shape)
            return spaces.Box(low, high, dtype=spec["dtype"])
        return spaces.Box(spec["low"], spec["high"], shape=shape, dtype=spec["dtype"])
    raise UserError(f"unknown space description {spec!r}; the file was written by another version")


def is_box(spec: dict) -> bool:
    """Whether a space description (:func:`space_to_json`) is a Box."""
    return isinstance(spec, dict) and spec.get("type") == "Box"


def has_integer_ids(spec: dict) -> bool:
    """Whether observations of a space description are integer ids (Discrete, MultiDiscrete),
    which the model embeds as int64."""
    return spec["type"] in ("Discrete", "MultiDiscrete")


def box_bounds(spec: dict) -> tuple[np.ndarray, np.ndarray]:
    """The per-dimension (low, high) of a Box description, each a flat float64 array."""
    size = int(np.prod(spec["shape"]))
    if "lows" in spec:
        return np.asarray(spec["lows"], np.float64), np.asarray(spec["highs"], np.float64)
    return np.full(size, float(spec["low"])), np.full(size, float(spec["high"]))


def action_space_json(num_actions_or_space: int | dict) -> dict:
    """An action space description from a description or, as older checkpoints store it, the
    number of Discrete actions."""
    if isinstance(num_actions_or_space, dict):
        return dict(num_actions_or_space)
    return {"type": "Discrete", "n": int(num_actions_or_space)}


def num_actions(space: spaces.Space) -> int | None:
    """A history's ``num_actions``: n of a Discrete action space, None (JSON null) for a Box."""
    return int(space.n) if isinstance(space, spaces.Discrete) else None
