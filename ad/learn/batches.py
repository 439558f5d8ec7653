"""Training batches: which windows each optimiser step sees, and the iterator that reads them.

The batch of a step is a pure function of (seed, step), so data order does not depend on the
number of processes or workers and a resumed run continues exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import torch

from ad.learn.windows import WindowStore, stack_windows


def window_indices(
    seed: int,
    step: int,
    sizes: list[int],
    rows: list[int],
    rank: int = 0,
    world_size: int = 1,
) -> list[np.ndarray]:
    """This rank's window indices of each family for optimiser step ``step``.

    The global batch is a pure function of (seed, step): family f's ``rows[f]`` indices into its
    ``sizes[f]`` windows, drawn in family order from one generator. Every rank draws it and
    takes its contiguous slice of the families' rows laid end to end, so data order does not
    depend on the number of processes and a resumed run continues exactly; the mean loss over
    the ranks is the row-weighted mean over the whole batch.

    Args:
        seed: the training seed.
        step: the optimiser step.
        sizes: each family's number of windows.
        rows: each family's rows in the global batch (all ranks together).
        rank: this process's rank.
        world_size: the number of processes.

    Returns:
        Per family, its (possibly empty) int64 indices on this rank.
    """
    rng = np.random.default_rng([seed, step])
    per_rank = sum(rows) // world_size
    low, high = rank * per_rank, (rank + 1) * per_rank
    out, start = [], 0
    for size, count in zip(sizes, rows, strict=True):
        drawn = rng.integers(0, size, size=count)
        out.append(drawn[np.clip(low - start, 0, count) : np.clip(high - start, 0, count)])
        start += count
    return out


def iterate_batches(
    stores: list[WindowStore],
    rows: list[int],
    seed: int,
    start_step: int,
    num_steps: int,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
) -> Iterator[list[dict[str, np.ndarray]]]:
    """Batches for steps ``start_step .. num_steps - 1`` in order: per family, this rank's
    slice of its rows (see :func:`window_indices`).

    In-memory windows are gathered in the calling process; streamed ones use a DataLoader per
    family with ``num_workers`` worker processes (0: in the calling process), each with its own
    file handles.

    Args:
        stores: each family's window store.
        rows: each family's rows in the global batch.
        seed, start_step, num_steps, rank, world_size: as for :func:`window_indices`.
        num_workers: DataLoader worker processes for streamed windows.

    Returns:
        An iterator of lists (one per family) of dicts of (B_f, T, ...) numpy arrays, None
        for a family with no rows on this rank.
    """
    sizes = [store.num_windows for store in stores]

    def indices(step: int) -> list[np.ndarray]:
        return window_indices(seed, step, sizes, rows, rank, world_size)

    # a family has the same number of rows on this rank at every step; with none, it is None
    here = [len(i) > 0 for i in indices(0)]
    if num_workers == 0 or all(store.in_memory for store in stores):
        for step in range(start_step, num_steps):
            yield [
                store.get_batch(i) if mine else None
                for store, i, mine in zip(stores, indices(step), here, strict=True)
            ]
        return
    loaders = [
        torch.utils.data.DataLoader(
            store,
            # the DataLoader's batches of window indices, one per step, in order
            batch_sampler=(indices(step)[f].tolist() for step in range(start_step, num_steps)),
            num_workers=num_workers,
            collate_fn=stack_windows,
            # Its own generator: creating the workers draws a base seed, which from the global
            # RNG would shift the dropout stream of a resumed run against an uninterrupted one.
            generator=torch.Generator(),
        )
        if mine
        else itertools.repeat(None)
        for f, (store, mine) in enumerate(zip(stores, here, strict=True))
    ]
    yield from (list(batch) for batch in zip(*loaders, strict=False))  # None repeats forever
