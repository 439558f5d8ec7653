"""Learning-history files: the HDF5 format, its writer, whole-file readers and validator.

This module and :mod:`ad.data.history_reader` (chunked reads of one open file, for data larger
than memory) are the history modules; this one alone imports h5py, and the reader touches h5py
only through the handles :func:`open_history` returns. One file holds one source-algorithm run
(one task, one seed): datasets shaped ``(S, T, ...)`` (S env streams, T steps per stream) plus
per-episode summaries, and a JSON ``metadata`` root attribute. The format is documented, with its
version, in ``learning_histories/README.md``; the dataset folder around the files, with its
manifest, in :mod:`ad.data.manifest`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from gymnasium.spaces import Box, Space

from ad.data.spaces import space_from_json
from ad.data.temp_files import commit_temp_file, temp_path_for
from ad.errors import UserError, one_line

# 2: the split is train / validation / test (metadata ``split`` and ``split_info``); version 1
# files hold train / heldout runs and are refused, never read with a different split.
SCHEMA_VERSION = 2

# (S, T, ...) step datasets (observations keep the env's dtype).
STEP_ARRAYS = ("observations", "actions", "rewards", "terminations", "truncations")
# (S, T, ...) like actions, where the family has an oracle (metadata ``optimal_actions``: true): the
# optimal action in the state of every step, the target DPT trains on.
ORACLE_ARRAY = "optimal_actions"
# (E,) per-episode datasets, derived from the step datasets when the file is written.
EPISODE_ARRAYS = ("episode_streams", "episode_ends", "episode_lengths", "episode_returns")
REQUIRED_METADATA = (
    "schema_version",
    "n_envs",
    "num_steps",
    "observation_space",
    "action_space",
    "num_actions",
)


class HistoryError(UserError):
    """A missing, corrupt, truncated or wrong-version learning-history file."""


class HistoryVersionError(HistoryError):
    """A history written with another schema version."""


def corrupt_history(path: Path, why: str) -> HistoryError:
    """The one-line error for a file at ``path`` that is not a valid history, and why."""
    return HistoryError(
        f"{path} is not a valid learning history ({why}); delete it and re-run ad-collect"
    )


@dataclass(frozen=True)
class History:
    """One whole run in memory. Arrays are ``(S, T, ...)``."""

    path: Path
    metadata: dict
    observations: np.ndarray  # (S, T, *obs_shape)
    actions: np.ndarray  # (S, T) int64 for Discrete, (S, T, act_dim) float32 for Box actions
    rewards: np.ndarray  # (S, T) float32
    terminations: np.ndarray  # (S, T) bool
    truncations: np.ndarray  # (S, T) bool
    optimal_actions: np.ndarray | None = None  # like actions; None: the family has no oracle

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


def write_history(
    path: str | Path,
    metadata: dict,
    observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    terminations: np.ndarray,
    truncations: np.ndarray,
    optimal_actions: np.ndarray | None = None,
    chunk_steps: int = 128,
    compression: str | None = "gzip",
) -> None:
    """Write one run atomically: a temporary file, fsync, then rename into place.

    Args:
        path: the final ``.h5`` path; it appears only once the file is complete.
        metadata: JSON-serialisable run description; ``schema_version``, ``n_envs``,
            ``num_steps`` and ``total_steps`` are set from the arrays.
        observations: ``(S, T, *obs_shape)``.
        actions: ``(S, T)`` integers (Discrete; stored int64) or ``(S, T, act_dim)`` floats (Box;
            stored float32, the action the env received).
        rewards, terminations, truncations: ``(S, T)``.
        optimal_actions: the oracle's actions, shaped and typed like ``actions``, or None.
        chunk_steps: HDF5 chunk length along T (one stream per chunk).
        compression: ``"gzip"``, ``"lzf"`` or None.
    """
    path = Path(path)
    arrays = {
        "observations": np.asarray(observations),
        "actions": _stored_actions(actions),
        "rewards": np.asarray(rewards, np.float32),
        "terminations": np.asarray(terminations, bool),
        "truncations": np.asarray(truncations, bool),
    }
    if optimal_actions is not None:
        arrays[ORACLE_ARRAY] = _stored_actions(optimal_actions)
    num_streams, num_steps = arrays["actions"].shape[:2]
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
        ORACLE_ARRAY: optimal_actions is not None,
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
        commit_temp_file(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _stored_actions(actions: np.ndarray) -> np.ndarray:
    """Actions as a history stores them: (S, T) int64 (Discrete), (S, T, act_dim) float32 (Box)."""
    actions = np.asarray(actions)
    if np.issubdtype(actions.dtype, np.floating):
        if actions.ndim != 3:
            raise ValueError(f"float (Box) actions must be (S, T, act_dim), got {actions.shape}")
        return actions.astype(np.float32, copy=False)
    return actions.astype(np.int64, copy=False)


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
        commit_temp_file(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- reading


def open_history(path: str | Path) -> tuple[h5py.File, dict]:
    """Open a history for reading, after a cheap structural check (no array data is read).

    Returns:
        The open file (the caller closes it) and its metadata.

    Raises:
        HistoryError: missing, unreadable, truncated or wrong-version file.
    """
    path = Path(path)
    if not path.is_file():
        raise HistoryError(f"learning history {path} not found; check the path or run ad-collect")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise corrupt_history(path, f"cannot open it as HDF5: {one_line(e)}") from None
    try:
        return f, _check_file(f, path)
    except BaseException:
        f.close()
        raise


def _check_file(f: h5py.File, path: Path) -> dict:
    """Schema version, metadata and dataset shapes of an open file; returns the metadata."""
    try:
        text = f.attrs["metadata"]
    except (KeyError, OSError):
        raise corrupt_history(path, "no metadata attribute") from None
    try:
        metadata = json.loads(text)
    except (TypeError, ValueError):
        raise corrupt_history(path, "its metadata is not valid JSON") from None
    if not isinstance(metadata, dict):
        raise corrupt_history(path, "its metadata is not a JSON object")
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
        raise corrupt_history(path, f"metadata lacks {', '.join(missing)}")
    shape = (metadata["n_envs"], metadata["num_steps"])
    for name in step_arrays(metadata):
        dataset = f.get(name)
        if not isinstance(dataset, h5py.Dataset) or dataset.shape[:2] != shape:
            raise corrupt_history(path, f"dataset {name} is missing or not shaped {shape}")
    for name in EPISODE_ARRAYS:
        if not isinstance(f.get(name), h5py.Dataset):
            raise corrupt_history(path, f"dataset {name} is missing")
    _check_actions(f["actions"], metadata["action_space"], path)
    if metadata.get(ORACLE_ARRAY):
        oracle, actions = f[ORACLE_ARRAY], f["actions"]
        if oracle.shape != actions.shape or oracle.dtype != actions.dtype:
            raise corrupt_history(path, f"its {ORACLE_ARRAY} are not shaped and typed as actions")
    return metadata


def step_arrays(metadata: dict) -> tuple[str, ...]:
    """The (S, T, ...) datasets of a history: STEP_ARRAYS, and ORACLE_ARRAY where it has one."""
    return STEP_ARRAYS + ((ORACLE_ARRAY,) if metadata.get(ORACLE_ARRAY) else ())


def _check_actions(dataset: h5py.Dataset, spec: dict, path: Path) -> None:
    """Box action spaces: actions (S, T, act_dim) float32; otherwise (S, T) integers."""
    try:
        space = space_from_json(spec)
    except UserError:
        raise corrupt_history(path, f"its action_space {spec!r} describes no space") from None
    if isinstance(space, Box):
        size = int(np.prod(space.shape))
        if dataset.ndim != 3 or dataset.shape[2] != size or dataset.dtype != np.float32:
            raise corrupt_history(
                path,
                f"its Box actions are not float32 (S, T, {size}): {dataset.dtype} {dataset.shape}",
            )
    elif dataset.ndim != 2 or dataset.dtype.kind not in "iu":
        raise corrupt_history(path, f"its actions are not integers (S, T): {dataset.shape}")


def history_spaces(metadata: dict) -> tuple[Space, Space]:
    """The (observation space, action space) of a history's metadata, as ``gymnasium.spaces``."""
    return space_from_json(metadata["observation_space"]), space_from_json(metadata["action_space"])


def read_metadata(path: str | Path) -> dict:
    """The metadata of a history, after a cheap structural check (no array data is read).

    Raises:
        HistoryError: missing, unreadable, truncated or wrong-version file.
    """
    f, metadata = open_history(path)
    f.close()
    return metadata


def read_datasets(f: h5py.File, path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Whole datasets of an open history, by name (checksums verified); ``path`` names it in
    the error."""
    try:
        return {name: f[name][()] for name in names}
    except (OSError, KeyError, ValueError) as e:
        raise corrupt_history(path, f"reading its data failed: {one_line(e)}") from None


def read_history(path: str | Path) -> History:
    """Read a whole run into memory (checksums of every chunk are verified).

    Raises:
        HistoryError: missing, corrupt, truncated or wrong-version file.
    """
    path = Path(path)
    f, metadata = open_history(path)
    with f:
        arrays = read_datasets(f, path, step_arrays(metadata))
    return History(path=path, metadata=metadata, **arrays)


def read_episodes(path: str | Path) -> dict[str, np.ndarray]:
    """The stored per-episode summaries (see :func:`episode_table`) without the step data."""
    path = Path(path)
    f, _ = open_history(path)
    with f:
        return read_datasets(f, path, EPISODE_ARRAYS)


def validate_history(path: str | Path) -> dict:
    """Read every byte of a history through its checksums; returns its metadata.

    Raises:
        HistoryError: the file is not a complete, uncorrupted history of this schema version.
    """
    path = Path(path)
    f, metadata = open_history(path)
    with f:
        arrays = read_datasets(f, path, step_arrays(metadata) + EPISODE_ARRAYS)
    _check_episode_table(path, arrays)
    return metadata


def read_checked_episodes(path: str | Path) -> dict[str, np.ndarray]:
    """:func:`read_episodes`, checked against the rewards, terminations and truncations (no
    checksum covers the episode table); observations and actions are not read.

    Raises:
        HistoryError: as :func:`read_episodes`, or a table that disagrees with the step data.
    """
    path = Path(path)
    f, _ = open_history(path)
    with f:
        arrays = read_datasets(f, path, ("rewards", "terminations", "truncations") + EPISODE_ARRAYS)
    _check_episode_table(path, arrays)
    return {name: arrays[name] for name in EPISODE_ARRAYS}


def _check_episode_table(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Refuse stored episode arrays that differ from those the step data give."""
    derived = episode_table(arrays["rewards"], arrays["terminations"], arrays["truncations"])
    for name, array in derived.items():
        # Shapes first: allclose would raise on unequal lengths and broadcast (1,) against (E,).
        if arrays[name].shape != array.shape:
            raise corrupt_history(
                path, f"{name} is shaped {arrays[name].shape} but the step data give {array.shape}"
            )
        if not np.allclose(arrays[name], array):
            raise corrupt_history(path, f"{name} disagrees with the step data")
