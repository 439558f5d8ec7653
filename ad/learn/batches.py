"""Training batches: which windows each optimiser step sees, and the iterator that reads them.

The batch of a step is a pure function of (seed, step), so data order does not depend on the
number of processes or workers and a resumed run continues exactly.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ad.learn.windows import WindowStore, stack_windows


def window_indices(
    seed: int, step: int, num_windows: int, batch_size: int, rank: int = 0, world_size: int = 1
) -> np.ndarray:
    """This rank's window indices for optimiser step ``step``: a pure function of (seed, step).

    Every rank draws the same global batch and takes its contiguous slice, so data order does not
    depend on the number of processes and a resumed run continues exactly.

    Args:
        seed: the training seed.
        step: the optimiser step.
        num_windows: windows to draw from.
        batch_size: the global batch size (all ranks together).
        rank: this process's rank.
        world_size: the number of processes.

    Returns:
        (batch_size // world_size,) int64 window indices.
    """
    rng = np.random.default_rng([seed, step])
    indices = rng.integers(0, num_windows, size=batch_size)
    per_rank = batch_size // world_size
    return indices[rank * per_rank : (rank + 1) * per_rank]


def iterate_batches(
    windows: WindowStore,
    seed: int,
    start_step: int,
    num_steps: int,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
) -> Iterator[dict[str, np.ndarray]]:
    """Batches for steps ``start_step .. num_steps - 1`` in order (this rank's slice of each).

    In-memory windows are gathered in the calling process; streamed ones use a DataLoader with
    ``num_workers`` worker processes (0: in the calling process), each with its own file handles.

    Args:
        windows: the window store.
        seed, start_step, num_steps, batch_size, rank, world_size: as for :func:`window_indices`.
        num_workers: DataLoader worker processes for streamed windows.

    Returns:
        An iterator of batches, dicts of (B, T, ...) numpy arrays.
    """
    if windows.in_memory or num_workers == 0:
        for step in range(start_step, num_steps):
            yield windows.get_batch(
                window_indices(seed, step, windows.num_windows, batch_size, rank, world_size)
            )
        return
    sampler = (  # the DataLoader's batches of window indices, one per step, in order
        window_indices(seed, step, windows.num_windows, batch_size, rank, world_size).tolist()
        for step in range(start_step, num_steps)
    )
    # Its own generator: creating the workers draws a base seed, which from the global RNG would
    # shift the dropout stream of a resumed run against an uninterrupted one.
    yield from torch.utils.data.DataLoader(
        windows,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=stack_windows,
        generator=torch.Generator(),
    )
