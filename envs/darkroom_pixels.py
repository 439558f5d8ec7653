"""Dark Room drawn as pixels: Dark Room's tasks, dynamics and rewards, but the agent sees an RGB
frame with its own cell lit instead of its (x, y).

A family for the patch encoder (``model.image_encoder=patches``, Gato's 16x16 patches): the frame
is ``size * cell_pixels`` pixels square, 18x18 for the default 9x9 room and 2-pixel cells, which
the encoder pads to 32x32 and cuts into 4 patches.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from envs.base import check_int, register_family
from envs.darkroom import DarkRoom, DarkRoomEnv

LIT = np.array([255, 255, 255], dtype=np.uint8)  # the agent's cell; every other pixel is 0


def draw_frame(position: np.ndarray, size: int, cell_pixels: int) -> np.ndarray:
    """The (H, W, 3) uint8 frame of an agent at ``position`` = (x, y): row y, column x lit."""
    side = size * cell_pixels
    frame = np.zeros((side, side, 3), dtype=np.uint8)
    x, y = int(position[0]) * cell_pixels, int(position[1]) * cell_pixels
    frame[y : y + cell_pixels, x : x + cell_pixels] = LIT
    return frame


class DarkRoomPixelsEnv(DarkRoomEnv):
    """Dark Room (dense reward) whose observation is a frame of the room.

    ## Observation Space
    ``Box(0, 255, (size * cell_pixels, size * cell_pixels, 3), uint8)``: black, except the
    ``cell_pixels`` x ``cell_pixels`` square of the agent's cell (x, y), which is white; y is the
    row, counted from the top. The goal stays invisible.

    Actions, rewards, start cell and episode length: :class:`envs.darkroom.DarkRoomEnv`.
    """

    def __init__(
        self,
        goal: tuple[int, int] | list[int] = (0, 0),
        size: int = 9,
        episode_length: int = 20,
        cell_pixels: int = 2,
    ) -> None:
        super().__init__(goal=goal, size=size, episode_length=episode_length, hard=False)
        self.cell_pixels = check_int("DarkRoomPixels", "cell_pixels", cell_pixels, 1)
        side = self.size * self.cell_pixels
        self.observation_space = spaces.Box(0, 255, (side, side, 3), dtype=np.uint8)

    def _frame(self, position: np.ndarray) -> np.ndarray:
        return draw_frame(position, self.size, self.cell_pixels)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        position, info = super().reset(seed=seed, options=options)
        return self._frame(position), info

    def step(self, action):
        position, reward, terminated, truncated, info = super().step(action)
        return self._frame(position), reward, terminated, truncated, info


@register_family
class DarkRoomPixels(DarkRoom):
    """Dark Room seen as pixels: the same 81 goals, split and returns as ``DarkRoom`` (the same
    split seed gives the same train / validation / test goals)."""

    name = "DarkRoomPixels"
    env_id = "DarkRoomPixels-v0"

    def __init__(
        self, size: int | None = None, episode_length: int = 20, cell_pixels: int = 2
    ) -> None:
        super().__init__(size=size, episode_length=episode_length)
        self.cell_pixels = check_int(self.name, "cell_pixels", cell_pixels, 1)
        self.kwargs["cell_pixels"] = self.cell_pixels  # recorded beside size and episode_length

    def make_env(self, task) -> DarkRoomPixelsEnv:
        task = self.validate_task(task)
        return DarkRoomPixelsEnv(
            goal=task["goal"],
            size=self.size,
            episode_length=self.episode_length,
            cell_pixels=self.cell_pixels,
        )

    def cell_of(self, observation: Any) -> tuple[int, int] | None:
        """The lit cell of a frame (its first lit pixel, row-major), None for a dark frame."""
        lit = np.argwhere(np.asarray(observation)[..., 0] > 0)
        if len(lit) == 0:
            return None
        row, column = lit[0]
        return (int(column) // self.cell_pixels, int(row) // self.cell_pixels)
