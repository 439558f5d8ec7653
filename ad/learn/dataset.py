"""Cross-episode training windows from learning histories (AD, and the ED control).

A *window* is ``context_steps`` consecutive steps of one (kept) stream of one training history. At
position t it holds the observation at t with the action, reward and done flag of the previous kept
step, and the target is the action at t (Laskin et al. 2022, section 3). Before windowing, each
stream may keep only every k-th episode (``train.subsample_every``, as the paper does to fit more
learning progress into one context) or, for expert distillation (``train.mode=ed``), only its last
``train.ed_last_episodes`` complete episodes.

Small datasets are decompressed into memory once and batches are gathered with one fancy index.
Large ones stay on disk: every process (DataLoader worker) opens its own ``HistoryReader`` lazily
and reads each window as one slice per dataset, so memory stays bounded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ad.config import ExperimentConfig
from ad.errors import UserError
from envs.base import TaskSplit, canonical_json, task_key

WINDOW_KEYS = ("observations", "prev_actions", "prev_rewards", "prev_dones", "targets")


@dataclass(frozen=True)
class KeptStream:
    """The kept steps of one stream of one history, as segments of the original stream.

    Kept step j lies in the segment ``s`` with ``offsets[s] <= j < offsets[s + 1]`` at original
    step ``starts[s] + j - offsets[s]``.
    """

    run: int  # index into WindowDataset.files
    stream: int
    starts: np.ndarray  # (n_seg,) original first step of each segment
    offsets: np.ndarray  # (n_seg,) kept index of each segment's first step
    length: int  # kept steps in all
    base: int = -1  # row of kept step 0 in the in-memory arrays (-1: streamed from disk)

    def original_steps(self, kept: np.ndarray) -> np.ndarray:
        """Original step index of each kept index in ``kept``."""
        seg = np.searchsorted(self.offsets, kept, side="right") - 1
        return self.starts[seg] + kept - self.offsets[seg]


# --------------------------------------------------------------------------- pure helpers


def kept_segments(
    dones: np.ndarray, mode: str, subsample_every: int, ed_last_episodes: int, offset: int = 0
) -> list[tuple[int, int]]:
    """The (start, stop) original-step ranges of the episodes one stream keeps.

    Args:
        dones: (T,) bool, terminations | truncations of the stream.
        mode: "ad" (every ``subsample_every``-th episode, counting from episode ``offset``; a
            trailing unfinished episode counts as an episode) or "ed" (the last
            ``ed_last_episodes`` complete episodes).
        subsample_every: k >= 1; ignored in ED mode.
        ed_last_episodes: ED episodes per stream.
        offset: the first kept episode in AD mode, 0 <= offset < k.

    Returns:
        Sorted, non-adjacent ranges (adjacent kept episodes are merged into one range).
    """
    num_steps = len(dones)
    ends = np.flatnonzero(dones) + 1  # exclusive end of each complete episode
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    if mode == "ed":
        n = min(ed_last_episodes, len(ends))
        return [(int(starts[-n]), int(ends[-1]))] if n > 0 else []
    if len(ends) == 0 or ends[-1] < num_steps:  # the unfinished last episode
        starts = np.append(starts, ends[-1] if len(ends) else 0)
        ends = np.append(ends, num_steps)
    ranges: list[tuple[int, int]] = []
    kept = slice(offset, None, subsample_every)
    for start, stop in zip(starts[kept], ends[kept], strict=True):
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], int(stop))
        else:
            ranges.append((int(start), int(stop)))
    return ranges


def shift_inputs(
    actions: np.ndarray, rewards: np.ndarray, dones: np.ndarray, num_actions: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """prev_actions, prev_rewards, prev_dones of a kept sequence that starts a stream.

    Position 0 has no previous step: action ``num_actions`` ("none"), reward 0, done True.
    """
    prev_actions = np.concatenate([[num_actions], actions[:-1]]).astype(np.int64)
    prev_rewards = np.concatenate([[0.0], rewards[:-1]]).astype(np.float32)
    prev_dones = np.concatenate([[True], dones[:-1]]).astype(bool)
    return prev_actions, prev_rewards, prev_dones


def window_indices(
    seed: int, step: int, num_windows: int, batch_size: int, rank: int = 0, world_size: int = 1
) -> np.ndarray:
    """This rank's window indices for optimiser step ``step``: a pure function of (seed, step).

    Every rank draws the same global batch and takes its contiguous slice, so data order does not
    depend on the number of processes and a resumed run continues exactly.
    """
    rng = np.random.default_rng([seed, step])
    indices = rng.integers(0, num_windows, size=batch_size)
    per_rank = batch_size // world_size
    return indices[rank * per_rank : (rank + 1) * per_rank]


def _split_difference(manifest_split: dict, configured: dict) -> str:
    for key in ("family", "family_kwargs", "seed", "train", "heldout"):
        theirs, ours = manifest_split.get(key), configured[key]
        if canonical_json(theirs) != canonical_json(ours):
            if key in ("train", "heldout"):  # task lists: too long to print
                return f"other {key} tasks: {len(theirs or [])} there, {len(ours)} here"
            return f"{key} {theirs!r} there, {ours!r} here"
    return "no difference"


def _observation_bytes(space: dict) -> int:
    if space["type"] == "Discrete":
        return 8
    if space["type"] == "MultiDiscrete":
        return 8 * len(space["nvec"])
    return int(np.prod(space["shape"])) * np.dtype(space.get("dtype", "float32")).itemsize


# --------------------------------------------------------------------------- checks


def _check_task(dataset_dir: Path, file: str, task: dict, split: TaskSplit) -> None:
    where = split.split_of(task)
    if where == "heldout":
        raise UserError(
            f"dataset {dataset_dir} trains on {file} whose task {task_key(task)} is held out in "
            f"the configured split (env.family={split.family}, env.split_seed={split.seed}); "
            "collect with the same env section as this config, or fix the env section"
        )
    if where is None:
        raise UserError(
            f"dataset {dataset_dir}: task {task_key(task)} of {file} is not a training task of the "
            f"configured split (env.split_seed={split.seed}); use the collect config's env section"
        )


def load_training_runs(
    cfg: ExperimentConfig,
) -> tuple[Path, dict, TaskSplit, list[dict], list[dict]]:
    """Validate a dataset against the config and list its training runs.

    Returns:
        (dataset_dir, manifest, split, train runs of the manifest, their file metadata).

    Raises:
        UserError: missing folder or file, wrong schema, a held-out task among the training runs,
            a manifest split that differs from the configured one, no training runs.
    """
    from ad.data.histories import read_metadata
    from ad.data.manifest import load_manifest

    dataset_dir = Path(cfg.dataset_dir)
    if not dataset_dir.is_dir():
        raise UserError(
            f"dataset folder {dataset_dir} not found; run ad-collect with this config first "
            "or point train.dataset at a collected dataset"
        )
    manifest = load_manifest(dataset_dir)
    split = cfg.env.task_split()
    runs = [r for r in manifest.get("runs", []) if r.get("split") == "train"]
    for run in runs:  # a leak of evaluation tasks is the worst mistake: check it first
        _check_task(dataset_dir, run["file"], run["task"], split)
    if canonical_json(manifest.get("split")) != canonical_json(split.to_json()):
        raise UserError(
            f"dataset {dataset_dir} was collected with another task split "
            f"({_split_difference(manifest.get('split') or {}, split.to_json())}); "
            "use the same env section as the collect config"
        )
    if not runs:
        raise UserError(
            f"dataset {dataset_dir} has no training runs; collect with collect.splits "
            "including 'train'"
        )
    metadata = []
    for run in runs:  # the files themselves must not hold held-out tasks either
        metadata.append(read_metadata(dataset_dir / run["file"]))
        _check_task(dataset_dir, run["file"], metadata[-1].get("task"), split)
    return dataset_dir, manifest, split, runs, metadata


def dataset_fingerprint(runs: list[dict], cfg: ExperimentConfig) -> str:
    """sha256 over the training runs' checksums and the window-selection settings."""
    payload = {
        "runs": sorted([run["file"], run.get("sha256")] for run in runs),
        "mode": cfg.train.mode,
        "subsample_every": cfg.train.subsample_every,
        "subsample_offsets": cfg.train.subsample_offsets,
        "ed_last_episodes": cfg.train.ed_last_episodes,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- the dataset


class WindowDataset(torch.utils.data.Dataset):
    """Random-access training windows over the training split of a history dataset.

    Window ``i`` is one start position of one kept stream; every start such that the whole window
    fits is a window. ``dataset[i]`` is a dict of numpy arrays (see WINDOW_KEYS):
    observations (T, *obs), prev_actions (T,) int64, prev_rewards (T,) float32, prev_dones (T,)
    bool and targets (T,) int64, with T = ``model.context_steps``.

    Args:
        cfg: the experiment config (env, model.context_steps and the train section are used).
    """

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.dataset_dir, self.manifest, self.split, self.runs, metadata = load_training_runs(cfg)
        self.files = [self.dataset_dir / run["file"] for run in self.runs]
        first = metadata[0]
        self.observation_space: dict = first["observation_space"]
        self.num_actions = int(first["num_actions"])
        self.episode_length = int(first["episode_length"])
        self.context_steps = cfg.model.context_steps
        self.mode = cfg.train.mode
        self.subsample_every = cfg.train.subsample_every
        # AD keeps episodes o, o + k, o + 2k, ... of each stream: o = 0 (the paper), or every o < k
        all_offsets = cfg.train.mode == "ad" and cfg.train.subsample_offsets == "all"
        self.offsets = range(cfg.train.subsample_every if all_offsets else 1)
        self.ed_last_episodes = cfg.train.ed_last_episodes
        self.fingerprint = dataset_fingerprint(self.runs, cfg)
        if self.context_steps < self.episode_length:
            raise UserError(
                f"model.context_steps={self.context_steps} is shorter than one episode "
                f"({self.episode_length} steps) of {self.dataset_dir}; AD needs contexts across "
                f"episodes: set model.context_steps >= {self.episode_length} (paper: 2-4 episodes)"
            )
        self.in_memory = self._fits_in_memory(cfg)
        self._arrays: dict[str, np.ndarray] = {}
        self._readers: dict[int, Any] = {}
        self._pid = os.getpid()
        self.streams = self._load_in_memory() if self.in_memory else self._index_on_disk()
        self.num_short_streams = sum(s.length < self.context_steps for s in self.streams)
        self.streams = [s for s in self.streams if s.length >= self.context_steps]
        if not self.streams:
            raise UserError(
                f"no stream of {self.dataset_dir} has {self.context_steps} kept steps; lower "
                "model.context_steps or train.subsample_every (or raise train.ed_last_episodes)"
            )
        counts = np.array([s.length - self.context_steps + 1 for s in self.streams])
        self._window_offsets = np.concatenate([[0], np.cumsum(counts)])  # first window per stream
        self._bases = np.array([s.base for s in self.streams])
        self.num_windows = int(self._window_offsets[-1])

    # ------------------------------------------------------------------ loading

    def estimated_bytes(self) -> int:
        """Memory the decompressed training histories (plus shifted inputs) would take."""
        per_step = _observation_bytes(self.observation_space) + 2 * (8 + 4 + 1)
        steps = sum(int(r["num_streams"]) * int(r["num_steps"]) for r in self.runs)
        return steps * per_step

    def _fits_in_memory(self, cfg: ExperimentConfig) -> bool:
        if cfg.train.in_memory != "auto":
            return cfg.train.in_memory == "yes"
        return self.estimated_bytes() <= cfg.train.max_memory_gb * 1e9

    def _keep(self, dones: np.ndarray) -> list[list[tuple[int, int]]]:
        """The kept ranges of a stream: one subsampled stream per offset (see ``offsets``)."""
        if self.mode == "ad" and self.subsample_every == 1:
            return [[(0, len(dones))]]
        return [
            kept_segments(dones, self.mode, self.subsample_every, self.ed_last_episodes, offset)
            for offset in self.offsets
        ]

    def _kept_stream(self, run: int, stream: int, ranges: list[tuple[int, int]]) -> KeptStream:
        lengths = np.array([stop - start for start, stop in ranges], dtype=np.int64)
        return KeptStream(
            run=run,
            stream=stream,
            starts=np.array([start for start, _ in ranges], dtype=np.int64),
            offsets=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
            length=int(lengths.sum()),
        )

    def _load_in_memory(self) -> list[KeptStream]:
        """Decompress every kept step once; store one concatenated array per window key."""
        from ad.data.histories import read_history

        parts: dict[str, list[np.ndarray]] = {key: [] for key in WINDOW_KEYS}
        streams, total = [], 0
        for run, path in enumerate(self.files):
            history = read_history(path)
            for s in range(history.actions.shape[0]):
                dones = history.terminations[s] | history.truncations[s]
                for ranges in self._keep(dones):
                    stream = self._kept_stream(run, s, ranges)
                    if stream.length == 0:
                        continue
                    steps = stream.original_steps(np.arange(stream.length))
                    actions = history.actions[s, steps].astype(np.int64)
                    prev = shift_inputs(
                        actions, history.rewards[s, steps], dones[steps], self.num_actions
                    )
                    parts["observations"].append(history.observations[s, steps])
                    parts["targets"].append(actions)
                    for key, value in zip(WINDOW_KEYS[1:4], prev, strict=True):
                        parts[key].append(value)
                    streams.append(dataclasses.replace(stream, base=total))
                    total += stream.length
        self._arrays = {key: np.concatenate(value) for key, value in parts.items() if value}
        return streams

    def _index_on_disk(self) -> list[KeptStream]:
        """Kept segments per stream, from the files' episode tables (no step data is read)."""
        streams = []
        for run, entry in enumerate(self.runs):
            num_streams, num_steps = int(entry["num_streams"]), int(entry["num_steps"])
            episodes = None
            for s in range(num_streams):
                if self.mode == "ad" and self.subsample_every == 1:
                    streams.append(self._kept_stream(run, s, [(0, num_steps)]))
                    continue
                if episodes is None:
                    episodes = self._reader(run).episodes()
                dones = np.zeros(num_steps, dtype=bool)
                dones[episodes["episode_ends"][episodes["episode_streams"] == s]] = True
                streams += [self._kept_stream(run, s, ranges) for ranges in self._keep(dones)]
        self.close()  # DataLoader workers open their own handles; none cross a fork
        return streams

    def _reader(self, run: int) -> Any:
        """This process's reader of run ``run``, opened on first use (one per DataLoader worker)."""
        from ad.data.history_reader import HistoryReader

        if self._pid != os.getpid():  # a forked worker must not share the parent's HDF5 handles
            self._readers, self._pid = {}, os.getpid()
        if run not in self._readers:
            self._readers[run] = HistoryReader(self.files[run])
        return self._readers[run]

    def close(self) -> None:
        """Close this process's file handles (reopened on next use)."""
        if self._pid == os.getpid():
            for reader in self._readers.values():
                reader.close()
        self._readers = {}

    def __getstate__(self) -> dict:  # spawned workers open their own readers
        state = dict(self.__dict__)
        state["_readers"] = {}
        return state

    # ------------------------------------------------------------------ windows

    def __len__(self) -> int:
        return self.num_windows

    def locate(self, index: int) -> tuple[KeptStream, int]:
        """The kept stream of window ``index`` and the kept index where the window starts."""
        if not 0 <= index < self.num_windows:
            raise IndexError(f"window {index} outside 0..{self.num_windows - 1}")
        j = int(np.searchsorted(self._window_offsets, index, side="right")) - 1
        return self.streams[j], int(index - self._window_offsets[j])

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if self.in_memory:
            return {key: value[0] for key, value in self.get_batch(np.array([index])).items()}
        return self._read_window(*self.locate(int(index)))

    def _read_window(self, stream: KeptStream, start: int) -> dict[str, np.ndarray]:
        """The window and the kept step before it, read as one slice per contiguous run of kept
        steps: the episodes that subsampling skips are never read (the reader's reads are
        chunk-aligned and cached, so runs that share a chunk read it once)."""
        first = max(start - 1, 0)  # the previous kept step feeds the first token's prev-inputs
        steps = stream.original_steps(np.arange(first, start + self.context_steps))
        reader = self._reader(stream.run)
        runs = np.split(steps, np.flatnonzero(np.diff(steps) != 1) + 1)
        pieces = [reader.read(stream.stream, int(run[0]), int(run[-1]) + 1) for run in runs]
        data = {key: np.concatenate([p[key] for p in pieces]) for key in pieces[0]}
        actions = data["actions"].astype(np.int64)
        dones = data["terminations"] | data["truncations"]
        prev = shift_inputs(actions, data["rewards"], dones, self.num_actions)
        cut = start - first  # drop the extra leading step
        window = {"observations": data["observations"], "targets": actions}
        window.update(zip(WINDOW_KEYS[1:4], prev, strict=True))
        return {key: np.ascontiguousarray(window[key][cut:]) for key in WINDOW_KEYS}

    def get_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Stacked windows (B, T, ...) for window ``indices``."""
        if not self.in_memory:
            return stack_windows([self[int(i)] for i in indices])
        indices = np.asarray(indices)
        if len(indices) and (indices.min() < 0 or indices.max() >= self.num_windows):
            raise IndexError(f"window indices outside 0..{self.num_windows - 1}")
        j = np.searchsorted(self._window_offsets, indices, side="right") - 1  # (B,) streams
        first = self._bases[j] + indices - self._window_offsets[j]  # (B,) rows
        rows = first[:, None] + np.arange(self.context_steps)  # (B, T)
        return {key: self._arrays[key][rows] for key in WINDOW_KEYS}

    def describe(self) -> str:
        """One line for the log."""
        where = "in memory" if self.in_memory else "streamed from disk"
        skipped = self.num_short_streams
        return (
            f"{len(self.runs)} training runs, {len(self.streams)} streams ({skipped} shorter than "
            f"the context skipped), {self.num_windows} windows of {self.context_steps} steps "
            f"({self.mode}, subsample_every={self.subsample_every}), {where}"
        )


def stack_windows(windows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Collate windows into a batch of numpy arrays (B, T, ...)."""
    return {key: np.stack([w[key] for w in windows]) for key in WINDOW_KEYS}


def iterate_batches(
    dataset: WindowDataset,
    seed: int,
    start_step: int,
    num_steps: int,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
) -> Iterator[dict[str, np.ndarray]]:
    """Batches for steps ``start_step .. num_steps - 1`` in order (this rank's slice of each).

    In-memory datasets are gathered in the calling process; streamed ones use a DataLoader with
    ``num_workers`` worker processes (0: in the calling process), each with its own file handles.
    """
    if dataset.in_memory or num_workers == 0:
        for step in range(start_step, num_steps):
            yield dataset.get_batch(
                window_indices(seed, step, dataset.num_windows, batch_size, rank, world_size)
            )
        return
    sampler = (  # the DataLoader's batches of window indices, one per step, in order
        window_indices(seed, step, dataset.num_windows, batch_size, rank, world_size).tolist()
        for step in range(start_step, num_steps)
    )
    # Its own generator: creating the workers draws a base seed, which from the global RNG would
    # shift the dropout stream of a resumed run against an uninterrupted one.
    yield from torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=stack_windows,
        generator=torch.Generator(),
    )
