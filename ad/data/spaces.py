"""Observation and action spaces: the one converter between ``gymnasium.spaces`` objects and the
JSON that histories and checkpoints store, and the few questions the rest asks of a space.

Spaces are ``gymnasium.spaces`` objects in memory; JSON exists only in files (as Minari restores
stored spaces where they are read).
"""

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
        return {"type": "MultiDiscrete", "nvec": [int(n) for n in np.ravel(space.nvec)]}
    if isinstance(space, spaces.Box):
        low, high = box_range(space)
        spec = {
            "type": "Box",
            "shape": list(space.shape),
            "low": low,
            "high": high,
            "dtype": np.dtype(space.dtype).name,
        }
        lows, highs = np.ravel(space.low), np.ravel(space.high)
        if lows.size and (np.any(lows != lows[0]) or np.any(highs != highs[0])):
            spec["lows"], spec["highs"] = lows.tolist(), highs.tolist()
        return spec
    raise UserError(f"unsupported space {space}; use Discrete, MultiDiscrete or Box observations")


def space_from_json(spec: dict) -> spaces.Space:
    """Inverse of :func:`space_to_json`.

    Raises:
        UserError: not a description :func:`space_to_json` writes.
    """
    kind = spec.get("type") if isinstance(spec, dict) else None
    try:
        if kind == "Discrete":
            return spaces.Discrete(spec["n"])
        if kind == "MultiDiscrete":
            return spaces.MultiDiscrete(spec["nvec"])
        if kind == "Box":
            shape, dtype = tuple(spec["shape"]), spec["dtype"]
            if "lows" in spec:
                low = np.asarray(spec["lows"], dtype).reshape(shape)
                high = np.asarray(spec["highs"], dtype).reshape(shape)
                return spaces.Box(low, high, dtype=dtype)
            return spaces.Box(spec["low"], spec["high"], shape=shape, dtype=dtype)
    except (KeyError, TypeError, ValueError):
        pass
    raise UserError(f"unknown space description {spec!r}; the file was written by another version")


def same_spaces(a: spaces.Space, b: spaces.Space) -> bool:
    """Whether two spaces are equal as histories and checkpoints describe them (an env's own
    space and one restored from a file may differ in what the files leave out, e.g. a dtype)."""
    return space_to_json(a) == space_to_json(b)


def has_integer_ids(space: spaces.Space) -> bool:
    """Whether observations of a space are integer ids (Discrete, MultiDiscrete), which the model
    embeds as int64."""
    return isinstance(space, (spaces.Discrete, spaces.MultiDiscrete))


def box_range(space: spaces.Box) -> tuple[float, float]:
    """The smallest low and the largest high of a Box, as floats."""
    return float(np.min(space.low)), float(np.max(space.high))


def box_bounds(space: spaces.Box) -> tuple[np.ndarray, np.ndarray]:
    """The per-dimension (low, high) of a Box, each a flat float64 array."""
    return np.ravel(space.low).astype(np.float64), np.ravel(space.high).astype(np.float64)


def num_actions(space: spaces.Space) -> int | None:
    """n of a Discrete action space (a history's ``num_actions``), None (JSON null) for a Box."""
    return int(space.n) if isinstance(space, spaces.Discrete) else None
