"""Spaces: gymnasium objects in memory, JSON in files (ad/data/spaces.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gymnasium.spaces import Box, Dict, Discrete, MultiBinary, MultiDiscrete

from ad.data.spaces import (
    box_bounds,
    box_range,
    has_integer_ids,
    num_actions,
    same_spaces,
    space_from_json,
    space_to_json,
)
from ad.errors import UserError

SPACES = {
    "discrete": Discrete(5),
    "multidiscrete": MultiDiscrete([9, 9]),
    "vector": Box(-2.0, 2.0, (2,), np.float32),
    "uneven": Box(np.float32([-1.0, 0.0]), np.float32([1.0, 4.0])),
    "image": Box(0, 255, (7, 7, 3), np.uint8),
    "unbounded": Box(-np.inf, np.inf, (17,), np.float32),
}


@pytest.mark.parametrize("name", list(SPACES))
def test_spaces_round_trip_through_a_json_file(name):
    space = SPACES[name]
    spec = json.loads(json.dumps(space_to_json(space)))  # what a file gives back
    restored = space_from_json(spec)
    assert restored == space and type(restored) is type(space)
    assert space_to_json(restored) == spec
    if isinstance(space, Box):
        assert restored.dtype == space.dtype
        np.testing.assert_array_equal(restored.low, space.low)
        np.testing.assert_array_equal(restored.high, space.high)


def test_only_uneven_boxes_keep_per_dimension_bounds():
    assert "lows" in space_to_json(SPACES["uneven"])
    assert "lows" not in space_to_json(SPACES["vector"])  # even bounds: scalars only
    low, high = box_bounds(SPACES["uneven"])
    assert low.dtype == np.float64 and low.tolist() == [-1.0, 0.0] and high.tolist() == [1.0, 4.0]
    assert box_range(SPACES["uneven"]) == (-1.0, 4.0)


def test_the_questions_asked_of_a_space():
    assert [has_integer_ids(s) for s in SPACES.values()] == [True, True] + [False] * 4
    assert num_actions(Discrete(5)) == 5 and num_actions(SPACES["vector"]) is None
    # an env's space and its restored copy are the same space, even where gymnasium's == is
    # stricter than the file (a MultiDiscrete's dtype)
    own = MultiDiscrete([9, 9], dtype=np.int32)
    assert same_spaces(own, space_from_json(space_to_json(own)))
    assert not same_spaces(SPACES["vector"], SPACES["uneven"])


@pytest.mark.parametrize(
    "spec", [{"type": "Dict"}, {"type": "Box", "shape": [2]}, {"n": 3}, "Discrete(3)", None]
)
def test_descriptions_of_no_space_are_one_line_errors(spec):
    with pytest.raises(UserError, match="unknown space description") as info:
        space_from_json(spec)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("space", [Dict({"a": Discrete(2)}), MultiBinary(3)])
def test_unsupported_spaces_are_refused(space):
    with pytest.raises(UserError, match="unsupported space"):
        space_to_json(space)
