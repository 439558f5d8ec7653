"""XLand-100B files read as they are published: one HDF5 file, one group per task (ruleset).

The layout (dunnolab/xland-minigrid-datasets; arXiv 2406.08973): top-level groups ``"0"`` ..
``"N-1"`` with attributes ``env-id`` (e.g. ``XLand-MiniGrid-R1-9x9``), ``benchmark-id`` and
``ruleset-id``; in each, H learning histories (32) of T steps, gzip-compressed in chunks of
(1, 4096, ...):

| dataset | dtype | shape | meaning at [h, t] |
|---|---|---|---|
| ``states`` | uint8 | (H, T, 5, 5) | the view action t was chosen on, each cell tile * 14 + colour |
| ``actions`` | uint8 | (H, T) | the action taken |
| ``rewards`` | float16 | (H, T) | its reward |
| ``dones`` | bool | (H, T) | whether the episode ended with step t |
| ``expert_actions`` | uint8 | (H, T) | the expert's action in that state (DPT's target) |

A history is one continuous stream of episodes, as this project's streams are, so a group reads
as one run of H streams: :class:`XLandReader` serves the slices that ``ad.learn.windows`` asks a
history reader for (observations unpacked to (5, 5, 2), ``dones`` as terminations, the expert's
actions as ``optimal_actions``), straight from the file's chunks. Nothing is converted or loaded
whole. This is, with ``histories.py``, the one module that opens HDF5 files with h5py: the other
format it reads.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ad.data.history_reader import ChunkedReader
from ad.errors import UserError
from envs.xland import NUM_COLORS, RULESET_ATTR

STEP_DATASETS = {"states": 4, "actions": 2, "rewards": 2, "dones": 2, "expert_actions": 2}
GROUP_ATTRS = ("env-id", "benchmark-id", RULESET_ATTR)


def unpack_states(packed: np.ndarray) -> np.ndarray:
    """(..., 5, 5) packed bytes -> (..., 5, 5, 2) uint8: (tile, colour) of every cell."""
    return np.stack(np.divmod(packed, NUM_COLORS), axis=-1).astype(np.uint8)


def is_xland_file(path: str | Path) -> bool:
    """Whether ``path`` is a file (not a dataset folder) whose first group looks like XLand's."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            return "0" in f and "states" in f["0"] and "ruleset-id" in f["0"].attrs
    except OSError:
        return False


def read_groups(path: str | Path) -> list[dict]:
    """Every group's attributes and (histories, steps), checked against the published layout.

    Returns:
        One dict per group, in group order: ``group``, ``env_id``, ``benchmark_id``,
        ``ruleset_id``, ``num_streams``, ``num_steps``.

    Raises:
        UserError: a group name out of sequence, a missing attribute or dataset, or a dataset
            of another rank or shape than the group's ``actions``.
    """
    path = Path(path)
    groups = []
    with h5py.File(path, "r") as f:
        names = sorted(f.keys(), key=lambda k: (len(k), k))
        if names != [str(i) for i in range(len(names))]:
            raise UserError(f"{path}: groups are not named 0 .. {len(names) - 1}; not XLand-100B")
        for name in names:
            group = f[name]
            missing = [a for a in GROUP_ATTRS if a not in group.attrs]
            missing += [d for d in STEP_DATASETS if d not in group]
            if missing:
                raise UserError(f"{path}: group {name} lacks {', '.join(missing)}; not XLand-100B")
            shape = group["actions"].shape
            for dataset, rank in STEP_DATASETS.items():
                got = group[dataset].shape
                if len(got) != rank or got[:2] != shape:
                    raise UserError(
                        f"{path}: group {name}'s {dataset} is {got}, expected {shape} + the "
                        "published trailing shape; the file is damaged or of another layout"
                    )
            groups.append(
                {
                    "group": int(name),
                    "env_id": _text(group.attrs["env-id"]),
                    "benchmark_id": _text(group.attrs["benchmark-id"]),
                    "ruleset_id": int(group.attrs[RULESET_ATTR]),
                    "num_streams": int(shape[0]),
                    "num_steps": int(shape[1]),
                }
            )
    return groups


def episode_returns(path: str | Path, group: int) -> list[np.ndarray]:
    """The complete episodes' returns of each history of one group (the dataset's own PPO
    learning that ruleset), split at its ``dones``; steps after a history's last end are left out."""
    with h5py.File(path, "r") as f:
        rewards = f[str(group)]["rewards"][:].astype(np.float64)  # (H, T)
        dones = f[str(group)]["dones"][:]
    streams = []
    for h in range(rewards.shape[0]):
        ends = np.flatnonzero(dones[h]) + 1  # one past each episode's last step
        if len(ends) == 0:
            streams.append(np.zeros(0))
            continue
        streams.append(np.add.reduceat(rewards[h, : ends[-1]], np.r_[0, ends[:-1]]))
    return streams


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class XLandReader(ChunkedReader):
    """One group of an XLand-100B file, read in slices as :class:`ad.data.history_reader.
    HistoryReader` reads a history: a (1, 4096) chunk of every dataset at a time, its states
    unpacked once, in a small LRU cache. Open one per process (h5py handles must not cross a
    fork).

    Args:
        path: the XLand-100B file.
        group: the group (task) index.
        cache_chunks: chunks kept decoded.
    """

    def __init__(self, path: str | Path, group: int, cache_chunks: int = 16) -> None:
        self._file = h5py.File(path, "r")
        opened = self._file[str(group)]
        self._datasets = {name: opened[name] for name in STEP_DATASETS}  # looked up once
        actions = self._datasets["actions"]
        num_streams, num_steps = actions.shape
        chunk_steps = actions.chunks[1] if actions.chunks else num_steps
        super().__init__(Path(path), num_streams, num_steps, chunk_steps, cache_chunks)

    def _read_block(self, stream: int, lo: int, hi: int) -> dict[str, np.ndarray]:
        """Steps ``lo:hi`` of history ``stream``, in this project's history arrays."""
        g = self._datasets
        dones = g["dones"][stream, lo:hi].astype(bool)
        return {
            "observations": unpack_states(g["states"][stream, lo:hi]),
            "actions": g["actions"][stream, lo:hi].astype(np.int64),
            "rewards": g["rewards"][stream, lo:hi].astype(np.float32),
            "terminations": dones,
            "truncations": np.zeros_like(dones),
            "optimal_actions": g["expert_actions"][stream, lo:hi].astype(np.int64),
        }

    def close(self) -> None:
        self._file.close()
