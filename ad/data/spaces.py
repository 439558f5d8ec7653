"""Gymnasium spaces as JSON, so that histories and checkpoints can describe observations."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from ad.errors import UserError


def space_to_json(space: spaces.Space) -> dict:
    """A JSON-serialisable description of a Discrete, MultiDiscrete or Box space."""
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": [int(n) for n in np.asarray(space.nvec).ravel()]}
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "low": float(np.min(space.low)),
            "high": float(np.max(space.high)),
            "dtype": np.dtype(space.dtype).name,
        }
    raise UserError(f"unsupported space {space}; use Discrete, MultiDiscrete or Box observations")


def space_from_json(spec: dict) -> spaces.Space:
    """Inverse of :func:`space_to_json`."""
    kind = spec.get("type")
    if kind == "Discrete":
        return spaces.Discrete(spec["n"])
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(spec["nvec"])
    if kind == "Box":
        return spaces.Box(
            spec["low"], spec["high"], shape=tuple(spec["shape"]), dtype=spec["dtype"]
        )
    raise UserError(f"unknown space description {spec!r}; the file was written by another version")
