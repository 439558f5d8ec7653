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


class ChunkedReader:
    """Slices of the (stream, step) arrays of one open file, read chunk by chunk.

    Reads are chunk-aligned: a slice is served from whole on-disk chunks (one stream by
    ``chunk_steps`` steps), each read and decoded once into a small LRU cache of ``cache_chunks``
    chunks, so neighbouring and overlapping windows cost no extra I/O and memory stays bounded.
    Subclasses open the file and read one block (:meth:`_read_block`). Use one reader per
    process (h5py handles must not cross a fork).
    """

    def __init__(
        self, path: Path, num_streams: int, num_steps: int, chunk_steps: int, cache_chunks: int
    ) -> None:
        self.path = path
        self.num_streams, self.num_steps = num_streams, num_steps
        self.chunk_steps = max(int(chunk_steps), 1)
        self.cache_chunks = max(1, int(cache_chunks))
        self.chunk_reads = 0  # chunks read from disk so far
        self._cache: OrderedDict[tuple[int, int], dict[str, np.ndarray]] = OrderedDict()

    def _read_block(self, stream: int, lo: int, hi: int) -> dict[str, np.ndarray]:
        """Steps ``lo:hi`` of one stream, read from the file."""
        raise NotImplementedError

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
            return self._read_block(stream, start, stop)
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    def _chunk(self, stream: int, index: int) -> dict[str, np.ndarray]:
        """Chunk ``index`` of a stream, from the cache or read whole from disk."""
        key = (stream, index)
        block = self._cache.get(key)
        if block is not None:
            self._cache.move_to_end(key)
            return block
        lo, hi = index * self.chunk_steps, min((index + 1) * self.chunk_steps, self.num_steps)
        block = self._read_block(stream, lo, hi)
        self.chunk_reads += 1
        self._cache[key] = block
        if len(self._cache) > self.cache_chunks:
            self._cache.popitem(last=False)
        return block

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> ChunkedReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class HistoryReader(ChunkedReader):
    """Keeps one history file open to read slices of streams (for data larger than memory), a
    chunk at a time (:class:`ChunkedReader`). Usage::

        with HistoryReader(path) as reader:
            window = reader.read(stream=0, start=100, stop=200)  # dict of (100, ...) arrays
    """

    def __init__(self, path: str | Path, cache_chunks: int = 16) -> None:
        file, self.metadata = open_history(Path(path))
        self._file = file
        self._datasets = {name: file[name] for name in step_arrays(self.metadata)}
        num_steps = int(self.metadata["num_steps"])
        chunks = self._datasets["actions"].chunks  # None for a contiguous (unchunked) dataset
        chunk_steps = int(chunks[1]) if chunks else num_steps
        super().__init__(
            Path(path), int(self.metadata["n_envs"]), num_steps, chunk_steps, cache_chunks
        )

    def _read_block(self, stream: int, lo: int, hi: int) -> dict[str, np.ndarray]:
        try:
            # One indexing operation per dataset: ds[s][a:b] would read the whole stream first.
            return {name: ds[stream, lo:hi] for name, ds in self._datasets.items()}
        except OSError as e:
            raise corrupt_history(self.path, f"reading its data failed: {one_line(e)}") from None

    def episodes(self) -> dict[str, np.ndarray]:
        """The per-episode summaries of the file (see :func:`ad.data.histories.episode_table`)."""
        return read_datasets(self._file, self.path, EPISODE_ARRAYS)

    def close(self) -> None:
        self._file.close()
