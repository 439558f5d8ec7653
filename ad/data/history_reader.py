"""Chunked reads of one open learning history, for data larger than memory.

One of the two history modules (with :mod:`ad.data.histories`, which owns the format and alone
imports h5py): the reader opens its file through :func:`ad.data.histories.open_history` and slices
the h5py datasets of that handle.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ad.data.histories import (
    EPISODE_ARRAYS,
    corrupt_history,
    open_history,
    read_datasets,
    step_arrays,
)
from ad.errors import one_line


class HistoryReader:
    """Keeps one history file open to read slices of streams (for data larger than memory).

    Reads are chunk-aligned: a slice is served from whole on-disk chunks (one stream by
    ``chunk_steps`` steps), each read and decompressed once into a small LRU cache of
    ``cache_chunks`` chunks, so neighbouring and overlapping windows cost no extra I/O and memory
    stays bounded. Use one reader per process (h5py handles must not cross a fork). Usage::

        with HistoryReader(path) as reader:
            window = reader.read(stream=0, start=100, stop=200)  # dict of (100, ...) arrays
    """

    def __init__(self, path: str | Path, cache_chunks: int = 16) -> None:
        self.path = Path(path)
        self._file, self.metadata = open_history(self.path)
        self._datasets = {name: self._file[name] for name in step_arrays(self.metadata)}
        self.num_streams = int(self.metadata["n_envs"])
        self.num_steps = int(self.metadata["num_steps"])
        chunks = self._datasets["actions"].chunks  # None for a contiguous (unchunked) dataset
        self.chunk_steps = int(chunks[1]) if chunks else max(self.num_steps, 1)
        self.cache_chunks = max(1, int(cache_chunks))
        self.chunk_reads = 0  # chunks read from disk so far
        self._cache: OrderedDict[tuple[int, int], dict[str, np.ndarray]] = OrderedDict()

    def read(self, stream: int, start: int, stop: int) -> dict[str, np.ndarray]:
        """Steps ``start:stop`` of one stream: each array ``(stop - start, ...)``, a copy."""
        if not (0 <= stream < self.num_streams and 0 <= start <= stop <= self.num_steps):
            raise IndexError(
                f"slice stream={stream} [{start}:{stop}] outside ({self.num_streams}, "
                f"{self.num_steps})"
            )
        size = self.chunk_steps
        parts = []
        for c in range(start // size, -(-stop // size)):
            block = self._chunk(stream, c)
            lo, hi = max(start - c * size, 0), min(stop - c * size, size)
            parts.append({name: array[lo:hi] for name, array in block.items()})
        if not parts:  # an empty slice
            return {name: ds[stream, start:stop] for name, ds in self._datasets.items()}
        return {name: np.concatenate([p[name] for p in parts]) for name in self._datasets}

    def _chunk(self, stream: int, index: int) -> dict[str, np.ndarray]:
        """Chunk ``index`` of a stream, from the cache or read whole from disk."""
        key = (stream, index)
        block = self._cache.get(key)
        if block is not None:
            self._cache.move_to_end(key)
            return block
        lo, hi = index * self.chunk_steps, min((index + 1) * self.chunk_steps, self.num_steps)
        try:
            # One indexing operation per dataset: ds[s][a:b] would read the whole stream first.
            block = {name: ds[stream, lo:hi] for name, ds in self._datasets.items()}
        except OSError as e:
            raise corrupt_history(self.path, f"reading its data failed: {one_line(e)}") from None
        self.chunk_reads += 1
        self._cache[key] = block
        if len(self._cache) > self.cache_chunks:
            self._cache.popitem(last=False)
        return block

    def episodes(self) -> dict[str, np.ndarray]:
        """The per-episode summaries of the file (see :func:`ad.data.histories.episode_table`)."""
        return read_datasets(self._file, self.path, EPISODE_ARRAYS)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> HistoryReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
