"""Learning histories on disk: the HDF5 writer, reader, validator and the dataset manifest.

This is the only module that imports h5py. One file holds one source-algorithm run (one task, one
seed): datasets shaped ``(S, T, ...)`` (S env streams, T steps per stream) plus per-episode
summaries, and a JSON ``metadata`` root attribute. The format is documented, with its version, in
``learning_histories/README.md``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ad.errors import UserError
from ad.utils import fsync_dir

SCHEMA_VERSION = 1

# (S, T, ...) step datasets (observations keep the env's dtype).
STEP_ARRAYS = ("observations", "actions", "rewards", "terminations", "truncations")
# (E,) per-episode datasets, derived from the step datasets when the file is written.
EPISODE_ARRAYS = ("episode_streams", "episode_ends", "episode_lengths", "episode_returns")
REQUIRED_METADATA = ("schema_version", "n_envs", "num_steps", "observation_space", "num_actions")

log = logging.getLogger(__name__)


class HistoryError(UserError):
    """A missing, corrupt, truncated or wrong-version learning-history file."""


class HistoryVersionError(HistoryError):
    """A history written with another schema version."""


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _corrupt(path: Path, why: str) -> HistoryError:
    return HistoryError(
        f"{path} is not a valid learning history ({why}); delete it and re-run ad-collect"
    )


@dataclass(frozen=True)
class History:
    """One whole run in memory. Arrays are ``(S, T, ...)``."""

    path: Path
    metadata: dict
    observations: np.ndarray  # (S, T, *obs_shape)
    actions: np.ndarray  # (S, T) int64
    rewards: np.ndarray  # (S, T) float32
    terminations: np.ndarray  # (S, T) bool
    truncations: np.ndarray  # (S, T) bool

    @property
    def num_streams(self) -> int:
        return int(self.actions.shape[0])

    @property
    def num_steps(self) -> int:
        return int(self.actions.shape[1])

    def episode_returns(self) -> list[np.ndarray]:
        """Per stream, the returns of its completed episodes in order (float64)."""
        episodes = episode_table(self.rewards, self.terminations, self.truncations)
        return stream_returns(episodes, self.num_streams)

    def episode_lengths(self) -> list[np.ndarray]:
        """Per stream, the lengths of its completed episodes in order."""
        episodes = episode_table(self.rewards, self.terminations, self.truncations)
        streams = episodes["episode_streams"]
        return [episodes["episode_lengths"][streams == s] for s in range(self.num_streams)]


def episode_table(
    rewards: np.ndarray, terminations: np.ndarray, truncations: np.ndarray
) -> dict[str, np.ndarray]:
    """Completed episodes of ``(S, T)`` arrays, ordered by stream then time.

    Returns:
        ``episode_streams`` (stream index), ``episode_ends`` (index of the episode's last step),
        ``episode_lengths`` and ``episode_returns`` (float64 sums of raw rewards), each ``(E,)``.
        An episode still running at the end of the history is not included.
    """
    dones = np.asarray(terminations, bool) | np.asarray(truncations, bool)  # (S, T)
    streams, ends = np.nonzero(dones)  # row-major: by stream, then time
    csum = np.cumsum(np.asarray(rewards, np.float64), axis=1)  # (S, T)
    # Start of each episode: one past the previous end of the same stream, else 0.
    first = np.ones(len(ends), bool)
    first[1:] = streams[1:] != streams[:-1]
    starts = np.where(first, 0, np.concatenate([[0], ends[:-1] + 1]))
    before = np.where(starts > 0, csum[streams, np.maximum(starts - 1, 0)], 0.0)
    return {
        "episode_streams": streams.astype(np.int64),
        "episode_ends": ends.astype(np.int64),
        "episode_lengths": (ends - starts + 1).astype(np.int64),
        "episode_returns": csum[streams, ends] - before,
    }


def stream_returns(episodes: dict[str, np.ndarray], num_streams: int) -> list[np.ndarray]:
    """Per stream, the returns of its completed episodes in order, from an episode table."""
    streams = episodes["episode_streams"]
    return [episodes["episode_returns"][streams == s] for s in range(num_streams)]


# --------------------------------------------------------------------------- writing


def temp_path_for(path: Path) -> Path:
    """The temporary name a history is written under (hidden, unique to host and process)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{socket.gethostname()}-{os.getpid()}.tmp")


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a killed one awaiting its reaper does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    try:  # Linux: a zombie has state Z in /proc/<pid>/stat, after the ")" that ends the name
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def stale_temp_files(path: Path) -> list[Path]:
    """Temporary files of ``path`` left by dead writers on this host, safe to delete.

    A temporary name carries its writer's host and pid (:func:`temp_path_for`). Temporary files
    of a live process, or of another host (which this one cannot check, e.g. a shard writing to
    a shared folder), are left alone with a warning.
    """
    path = Path(path)
    host, stale = socket.gethostname(), []
    for tmp in sorted(path.parent.glob(f".{path.name}.*.tmp")):
        writer = tmp.name[len(path.name) + 2 : -len(".tmp")]  # "<host>-<pid>"
        writer_host, _, pid = writer.rpartition("-")
        if writer_host == host and pid.isdigit() and not _pid_alive(int(pid)):
            stale.append(tmp)
        else:
            log.warning(
                "leaving %s alone: it may be written by a live process (host-pid %s); delete it "
                "by hand if no collect is running there",
                tmp,
                writer,
            )
    return stale


def _commit(tmp: Path, path: Path) -> None:
    """fsync a finished temporary file and rename it into place, durably."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_history(
    path: str | Path,
    metadata: dict,
    observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    terminations: np.ndarray,
    truncations: np.ndarray,
    chunk_steps: int = 128,
    compression: str | None = "gzip",
) -> None:
    """Write one run atomically: a temporary file, fsync, then rename into place.

    Args:
        path: the final ``.h5`` path; it appears only once the file is complete.
        metadata: JSON-serialisable run description; ``schema_version``, ``n_envs``,
            ``num_steps`` and ``total_steps`` are set from the arrays.
        observations: ``(S, T, *obs_shape)``; the other arrays ``(S, T)``.
        chunk_steps: HDF5 chunk length along T (one stream per chunk).
        compression: ``"gzip"``, ``"lzf"`` or None.
    """
    path = Path(path)
    arrays = {
        "observations": np.asarray(observations),
        "actions": np.asarray(actions, np.int64),
        "rewards": np.asarray(rewards, np.float32),
        "terminations": np.asarray(terminations, bool),
        "truncations": np.asarray(truncations, bool),
    }
    num_streams, num_steps = arrays["actions"].shape
    for name, array in arrays.items():
        if array.shape[:2] != (num_streams, num_steps):
            raise ValueError(
                f"{name} has shape {array.shape}, expected ({num_streams}, {num_steps}, ...)"
            )
    metadata = {
        **metadata,
        "schema_version": SCHEMA_VERSION,
        "n_envs": int(num_streams),
        "num_steps": int(num_steps),
        "total_steps": int(num_streams * num_steps),
    }
    text = json.dumps(metadata)  # fail before touching the disk if not serialisable
    episodes = episode_table(arrays["rewards"], arrays["terminations"], arrays["truncations"])
    chunk = max(1, min(int(chunk_steps), num_steps))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["metadata"] = text
            for name, array in arrays.items():
                # One stream per chunk, chunk_steps along T: a training window reads few chunks.
                # fletcher32 checksums every chunk, so corruption fails loudly on read.
                f.create_dataset(
                    name,
                    data=array,
                    chunks=(1, chunk, *array.shape[2:]),
                    compression=compression,
                    fletcher32=True,
                )
            for name, array in episodes.items():
                f.create_dataset(name, data=array)
        _commit(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def rewrite_history(
    path: str | Path, metadata: dict | None = None, datasets: dict[str, np.ndarray] | None = None
) -> None:
    """Replace the metadata and/or whole datasets of an existing file, atomically (a copy is
    edited, fsynced and renamed into place). For format migrations and tests of the validators:
    nothing is checked, so the result may well be an invalid history.

    Args:
        path: the history file.
        metadata: the new ``metadata`` (its ``schema_version`` also becomes the root attribute).
        datasets: datasets to replace, by name (written unchunked, uncompressed).
    """
    path = Path(path)
    tmp = temp_path_for(path)
    try:
        shutil.copyfile(path, tmp)
        with h5py.File(tmp, "r+") as f:
            if metadata is not None:
                f.attrs["schema_version"] = metadata.get("schema_version", -1)
                f.attrs["metadata"] = json.dumps(metadata)
            for name, array in (datasets or {}).items():
                if name in f:
                    del f[name]
                f.create_dataset(name, data=np.asarray(array))
        _commit(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- reading


def _open(path: Path) -> h5py.File:
    path = Path(path)
    if not path.is_file():
        raise HistoryError(f"learning history {path} not found; check the path or run ad-collect")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise _corrupt(path, f"cannot open it as HDF5: {_one_line(e)}") from None


def _check_file(f: h5py.File, path: Path) -> dict:
    """Schema version, metadata and dataset shapes of an open file; returns the metadata."""
    try:
        text = f.attrs["metadata"]
    except (KeyError, OSError):
        raise _corrupt(path, "no metadata attribute") from None
    try:
        metadata = json.loads(text)
    except (TypeError, ValueError):
        raise _corrupt(path, "its metadata is not valid JSON") from None
    if not isinstance(metadata, dict):
        raise _corrupt(path, "its metadata is not a JSON object")
    version, where = metadata.get("schema_version"), "in its metadata"
    root = f.attrs.get("schema_version")  # the format keeps two records; both must agree
    root = root.item() if isinstance(root, np.generic) else root
    if version == SCHEMA_VERSION and (not isinstance(root, int) or root != SCHEMA_VERSION):
        version, where = root, "in its root attribute"
    if version != SCHEMA_VERSION:
        raise HistoryVersionError(
            f"{path} has learning-history schema version {version!r} {where} but this version of "
            f"ad reads version {SCHEMA_VERSION}; re-collect it with this version or use a "
            "matching ad"
        )
    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if missing:
        raise _corrupt(path, f"metadata lacks {', '.join(missing)}")
    shape = (metadata["n_envs"], metadata["num_steps"])
    for name in STEP_ARRAYS:
        dataset = f.get(name)
        if not isinstance(dataset, h5py.Dataset) or dataset.shape[:2] != shape:
            raise _corrupt(path, f"dataset {name} is missing or not shaped {shape}")
    for name in EPISODE_ARRAYS:
        if not isinstance(f.get(name), h5py.Dataset):
            raise _corrupt(path, f"dataset {name} is missing")
    return metadata


def read_metadata(path: str | Path) -> dict:
    """The metadata of a history, after a cheap structural check (no array data is read).

    Raises:
        HistoryError: missing, unreadable, truncated or wrong-version file.
    """
    path = Path(path)
    f = _open(path)
    try:
        return _check_file(f, path)
    finally:
        f.close()


def _read_all(f: h5py.File, path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        return {name: f[name][()] for name in names}
    except (OSError, KeyError, ValueError) as e:
        raise _corrupt(path, f"reading its data failed: {_one_line(e)}") from None


def read_history(path: str | Path) -> History:
    """Read a whole run into memory (checksums of every chunk are verified).

    Raises:
        HistoryError: missing, corrupt, truncated or wrong-version file.
    """
    path = Path(path)
    with _open(path) as f:
        metadata = _check_file(f, path)
        arrays = _read_all(f, path, STEP_ARRAYS)
    return History(path=path, metadata=metadata, **arrays)


def read_episodes(path: str | Path) -> dict[str, np.ndarray]:
    """The stored per-episode summaries (see :func:`episode_table`) without the step data."""
    path = Path(path)
    with _open(path) as f:
        _check_file(f, path)
        return _read_all(f, path, EPISODE_ARRAYS)


def validate_history(path: str | Path) -> dict:
    """Read every byte of a history through its checksums; returns its metadata.

    Raises:
        HistoryError: the file is not a complete, uncorrupted history of this schema version.
    """
    path = Path(path)
    with _open(path) as f:
        metadata = _check_file(f, path)
        arrays = _read_all(f, path, STEP_ARRAYS + EPISODE_ARRAYS)
    derived = episode_table(arrays["rewards"], arrays["terminations"], arrays["truncations"])
    for name, array in derived.items():
        # Shapes first: allclose would raise on unequal lengths and broadcast (1,) against (E,).
        if arrays[name].shape != array.shape:
            raise _corrupt(
                path, f"{name} is shaped {arrays[name].shape} but the step data give {array.shape}"
            )
        if not np.allclose(arrays[name], array):
            raise _corrupt(path, f"{name} disagrees with the step data")
    return metadata


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
        self._file = _open(self.path)
        try:
            self.metadata = _check_file(self._file, self.path)
        except BaseException:
            self._file.close()
            raise
        self._datasets = {name: self._file[name] for name in STEP_ARRAYS}
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
            raise _corrupt(self.path, f"reading its data failed: {_one_line(e)}") from None
        self.chunk_reads += 1
        self._cache[key] = block
        if len(self._cache) > self.cache_chunks:
            self._cache.popitem(last=False)
        return block

    def episodes(self) -> dict[str, np.ndarray]:
        """The per-episode summaries of the file (see :func:`episode_table`)."""
        return _read_all(self._file, self.path, EPISODE_ARRAYS)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> HistoryReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
