"""Training windows: two stores with one interface, in memory or streamed from HDF5.

A *window* is ``window_steps`` consecutive kept steps of one kept stream (see
``ad.learn.kept_streams``). At position t it holds the observation at t with the action, reward
and done flag of the previous kept step, and the target is the action at t (Laskin et al. 2022,
section 3), or in DPT mode the oracle's optimal action at t (the history's ``optimal_actions``):
every position is then a DPT query whose context is the transitions before it. Window ``i`` is one start position of one kept stream, numbered stream by stream.
Discrete actions are int64 ids; Box actions float32 vectors (act_dim,), whose "no previous action"
at a stream's first step is a row of NaNs.

Windows are ``model.context_steps`` long by default. Longer ones (``train.data.window_steps``) run the
model's sliding band inside them, as a KV-cache rollout does; their first ``context_steps - 1``
targets, whose band would be cut by the window's start, are then left out of the loss (-1, or NaN
for Box actions), except in a stream's first window, where nothing precedes them.

Small datasets are decompressed into memory once and batches are gathered with one fancy index
(:class:`InMemoryWindows`). Large ones stay on disk (:class:`StreamedWindows`): every process
(DataLoader worker) opens its own ``HistoryReader`` lazily and reads each window as one slice per
contiguous span of kept steps, so memory stays bounded. :func:`open_windows` chooses by the
config's memory policy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.spaces import Box, Space

from ad.config import ExperimentConfig
from ad.data.histories import ORACLE_ARRAY, history_spaces
from ad.data.spaces import has_integer_ids, num_actions
from ad.errors import UserError
from ad.learn.kept_streams import KeepPolicy, KeptStream, first_window_of_each, plan_stream
from ad.learn.training_data import TrainingRuns, dataset_fingerprint
from envs.split import TaskSplit

WINDOW_KEYS = ("observations", "prev_actions", "prev_rewards", "prev_dones", "targets")


def prev_step_inputs(
    actions: np.ndarray, rewards: np.ndarray, dones: np.ndarray, num_actions: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The previous-step inputs of a sequence of steps that starts a stream.

    Args:
        actions: (T,) Discrete actions or (T, act_dim) Box actions of the steps.
        rewards: (T,) rewards of the steps.
        dones: (T,) bool, terminations | truncations of the steps.
        num_actions: the "no action" token of position 0, which has no previous step (None for
            Box actions: a row of NaNs).

    Returns:
        prev_actions (T,) int64 or (T, act_dim) float32, prev_rewards (T,) float32, prev_dones
        (T,) bool; position 0 holds action ``num_actions`` (or NaNs), reward 0 and done True.
    """
    if num_actions is None:  # Box
        none = np.full((1, *actions.shape[1:]), np.nan, np.float32)
        prev_actions = np.concatenate([none, actions[:-1]]).astype(np.float32)
    else:
        prev_actions = np.concatenate([[num_actions], actions[:-1]]).astype(np.int64)
    prev_rewards = np.concatenate([[0.0], rewards[:-1]]).astype(np.float32)
    prev_dones = np.concatenate([[True], dones[:-1]]).astype(bool)
    return prev_actions, prev_rewards, prev_dones


def _window_arrays(steps: dict[str, np.ndarray], targets: str, num_actions: int | None) -> dict:
    """Every WINDOW_KEYS array of a sequence of kept steps that starts a stream.

    Args:
        steps: the steps' history arrays by name (observations, actions, rewards, terminations,
            truncations, and optimal_actions where the targets are those).
        targets: the array the model learns to predict: "actions" or "optimal_actions".
        num_actions: the "no action" token (None for Box actions).
    """
    dtype = np.int64 if num_actions is not None else np.float32
    dones = steps["terminations"] | steps["truncations"]
    prev = prev_step_inputs(steps["actions"].astype(dtype), steps["rewards"], dones, num_actions)
    return {
        "observations": steps["observations"],
        "targets": steps[targets].astype(dtype),
        **dict(zip(WINDOW_KEYS[1:4], prev, strict=True)),
    }


def stack_windows(windows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Collate windows into a batch of numpy arrays (B, T, ...)."""
    return {key: np.stack([w[key] for w in windows]) for key in WINDOW_KEYS}


class WindowStore(torch.utils.data.Dataset):
    """Random-access training windows over the training runs of a history dataset.

    ``store[i]`` is a dict of numpy arrays (see WINDOW_KEYS): observations (T, *obs),
    prev_actions and targets (T,) int64 (Discrete) or (T, act_dim) float32 (Box), prev_rewards
    (T,) float32 and prev_dones (T,) bool, with T = ``window_steps``; ``get_batch(indices)``
    stacks them (B, T, ...). Kept
    streams shorter than one window are skipped. Subclasses plan and hold the kept streams
    (``_load``) and read windows (``__getitem__``, ``get_batch``).

    Args:
        training: the checked training runs.
        policy: which episodes of each stream are kept.
        window_steps: steps per window.
        fingerprint: the dataset fingerprint (checked on resume).
        context_steps: the model's band; with longer windows, targets before the band is full
            are cut (see the module docstring). None: the window length.
        targets: the history array the targets come from: "actions", or "optimal_actions" (DPT).
    """

    in_memory: bool  # whether batches are gathered from memory (else read by DataLoader workers)
    where: str  # for describe()

    def __init__(
        self,
        training: TrainingRuns,
        policy: KeepPolicy,
        window_steps: int,
        fingerprint: str,
        context_steps: int | None = None,
        targets: str = "actions",
    ) -> None:
        self.training = training
        self.targets = targets
        self.files = training.files
        self.policy = policy
        self.window_steps = window_steps
        band = window_steps if context_steps is None else context_steps
        self.context_steps = band
        # targets before this position of a window (not a stream's first) are left out of the loss
        self.loss_from = band - 1 if window_steps > band else 0
        self.fingerprint = fingerprint
        first = training.metadata[0]
        self.observation_space, self.action_space = history_spaces(first)
        self.num_actions = num_actions(self.action_space)  # None: Box actions
        self.episode_length = int(first["episode_length"])
        kept_streams = self._load()
        self.kept_lengths = np.array([s.num_kept_steps for s in kept_streams], dtype=np.int64)
        self.streams = [s for s in kept_streams if self._is_windowed(s)]
        self.num_short_streams = len(kept_streams) - len(self.streams)
        if not self.streams:
            raise UserError(
                f"no stream of {self.dataset_dir} has {self.window_steps} kept steps; lower "
                "model.context_steps (or train.data.window_steps) or train.data.subsample_every (or raise "
                "train.ed.last_episodes)"
            )
        self.first_window = first_window_of_each(self.streams, self.window_steps)
        self.num_windows = int(self.first_window[-1])

    @property
    def dataset_dir(self) -> Path:
        """The dataset folder."""
        return self.training.dataset_dir

    @property
    def split(self) -> TaskSplit:
        """The task split the training runs were checked against."""
        return self.training.split

    @property
    def runs(self) -> list[dict]:
        """The manifest entries of the training runs."""
        return self.training.entries

    def _is_windowed(self, kept: KeptStream) -> bool:
        return kept.num_kept_steps >= self.window_steps

    def _load(self) -> list[KeptStream]:
        """Plan every kept stream (and load what the store keeps in memory)."""
        raise NotImplementedError

    def __len__(self) -> int:
        return self.num_windows

    def locate(self, index: int) -> tuple[KeptStream, int]:
        """The kept stream of window ``index`` and the kept index where the window starts."""
        if not 0 <= index < self.num_windows:
            raise IndexError(f"window {index} outside 0..{self.num_windows - 1}")
        j = int(np.searchsorted(self.first_window, index, side="right")) - 1
        return self.streams[j], int(index - self.first_window[j])

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _cut_targets(self, batch: dict[str, np.ndarray], starts: np.ndarray) -> dict:
        """Leave the first ``loss_from`` targets of windows that start inside a stream
        (``starts`` > 0, their kept start indices) out of the loss."""
        if self.loss_from:
            targets = batch["targets"].copy()
            targets[starts > 0, : self.loss_from] = np.nan if targets.dtype.kind == "f" else -1
            batch["targets"] = targets
        return batch

    def get_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Stacked windows (B, T, ...) for window ``indices`` (B,)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release file handles, if any (reopened on next use)."""

    def diagnostics(self) -> list[str]:
        """Warning lines when these windows can teach little: most kept streams skipped as
        shorter than a window (in ED mode: ED's data mostly skipped), or kept streams longer
        than a context but shorter than two (a window then sees little of the source's
        improvement); each says what to change."""
        lines = []
        total = len(self.kept_lengths)
        ed = self.policy.mode == "ed"
        if total and 2 * self.num_short_streams > total:
            what = "ED's data is mostly skipped" if ed else "most streams are shorter than a window"
            fix = (
                "raise train.ed.last_episodes or set a shorter train.ed.context_steps"
                if ed
                else "lower model.context_steps (or train.data.window_steps) or "
                "train.data.subsample_every, or collect longer streams (collect.total_steps)"
            )
            lines.append(
                f"warning: {what}: {self.num_short_streams} of {total} kept streams hold fewer "
                f"than {self.window_steps} steps and are skipped; {fix}"
            )
        median = float(np.median(self.kept_lengths)) if total else 0.0
        # a context that holds a whole kept stream (the Bandit's) sees all of its improvement
        if not ed and total and self.context_steps < median < 2 * self.context_steps:
            per = self.episode_length
            lines.append(
                f"warning: a kept stream spans {median / per:.1f} episodes (median, "
                f"{median:.0f} steps), fewer than two contexts of {self.context_steps / per:.1f} "
                "episodes, so a window sees little of the source's improvement: lower "
                "train.data.subsample_every or model.context_steps, or collect longer streams "
                "(collect.total_steps / collect.n_envs)"
            )
        return lines

    def describe(self) -> str:
        """One line for the log."""
        return (
            f"{len(self.runs)} training runs, {len(self.streams)} streams "
            f"({self.num_short_streams} shorter than the context skipped), {self.num_windows} "
            f"windows of {self.window_steps} steps ({self.policy.mode}, "
            f"subsample_every={self.policy.subsample_every}, targets: {self.targets}), "
            f"{self.where}"
        )


class InMemoryWindows(WindowStore):
    """Every kept step decompressed once into one concatenated array per window key."""

    in_memory = True
    where = "in memory"

    def _load(self) -> list[KeptStream]:
        from ad.data.histories import STEP_ARRAYS, read_history

        names = dict.fromkeys((*STEP_ARRAYS, self.targets))  # what the windows are made of
        parts: dict[str, list[np.ndarray]] = {key: [] for key in WINDOW_KEYS}
        kept_streams, first_rows, num_rows = [], [], 0
        for index, path in enumerate(self.files):
            history = read_history(path)
            for s in range(history.num_streams):
                dones = history.terminations[s] | history.truncations[s]
                for kept in plan_stream(self.policy, index, s, history.num_steps, dones):
                    kept_streams.append(kept)
                    if not self._is_windowed(kept):
                        continue
                    steps = kept.original_steps(np.arange(kept.num_kept_steps))
                    arrays = _window_arrays(
                        {name: getattr(history, name)[s, steps] for name in names},
                        self.targets,
                        self.num_actions,
                    )
                    for key in WINDOW_KEYS:
                        parts[key].append(arrays[key])
                    first_rows.append(num_rows)
                    num_rows += kept.num_kept_steps
        self._arrays = {key: np.concatenate(value) for key, value in parts.items() if value}
        self._first_row = np.array(first_rows, dtype=np.int64)  # row of each stream's kept step 0
        return kept_streams

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {key: value[0] for key, value in self.get_batch(np.array([index])).items()}

    def get_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Stacked windows (B, T, ...) for window ``indices`` (B,), one gather per key."""
        indices = np.asarray(indices)
        if len(indices) and (indices.min() < 0 or indices.max() >= self.num_windows):
            raise IndexError(f"window indices outside 0..{self.num_windows - 1}")
        j = np.searchsorted(self.first_window, indices, side="right") - 1  # (B,) streams
        first = self._first_row[j] + indices - self.first_window[j]  # (B,) rows
        rows = first[:, None] + np.arange(self.window_steps)  # (B, T)
        batch = {key: self._arrays[key][rows] for key in WINDOW_KEYS}
        return self._cut_targets(batch, indices - self.first_window[j])


class StreamedWindows(WindowStore):
    """Windows read from the history files on demand, with one reader per process per file.

    Planning needs the episode boundaries of each file. They come from its episode table, which
    no checksum covers, so the table is checked against the step data first (issue 12).
    """

    in_memory = False
    where = "streamed from disk"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._readers: dict[int, Any] = {}  # history index -> this process's HistoryReader
        self._pid = os.getpid()  # the process that owns the readers
        super().__init__(*args, **kwargs)

    def _load(self) -> list[KeptStream]:
        from ad.data.histories import read_checked_episodes

        kept_streams = []
        for index, (path, metadata) in enumerate(
            zip(self.files, self.training.metadata, strict=True)
        ):
            num_streams, num_steps = int(metadata["n_envs"]), int(metadata["num_steps"])
            episodes = None if self.policy.keeps_whole_streams else read_checked_episodes(path)
            for s in range(num_streams):
                dones = None
                if episodes is not None:
                    dones = np.zeros(num_steps, dtype=bool)
                    dones[episodes["episode_ends"][episodes["episode_streams"] == s]] = True
                kept_streams += plan_stream(self.policy, index, s, num_steps, dones)
        return kept_streams

    def _reader(self, index: int) -> Any:
        """This process's reader of history ``index``, opened on first use."""
        if self._pid != os.getpid():  # a forked worker must not share the parent's HDF5 handles
            self._readers, self._pid = {}, os.getpid()
        if index not in self._readers:
            self._readers[index] = self.training.open_reader(index)
        return self._readers[index]

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

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        """The window and the kept step before it, read as one slice per contiguous span of
        original steps: the episodes that subsampling skips are never read (the reader's reads
        are chunk-aligned and cached, so spans that share a chunk read it once)."""
        kept, start = self.locate(int(index))
        first = max(start - 1, 0)  # the previous kept step feeds the first token's prev-inputs
        steps = kept.original_steps(np.arange(first, start + self.window_steps))
        reader = self._reader(kept.history)
        spans = np.split(steps, np.flatnonzero(np.diff(steps) != 1) + 1)
        pieces = [reader.read(kept.stream, int(span[0]), int(span[-1]) + 1) for span in spans]
        data = {key: np.concatenate([p[key] for p in pieces]) for key in pieces[0]}
        arrays = _window_arrays(data, self.targets, self.num_actions)
        cut = start - first  # drop the extra leading step
        window = {key: np.ascontiguousarray(arrays[key][cut:]) for key in WINDOW_KEYS}
        batch = self._cut_targets({k: v[None] for k, v in window.items()}, np.array([start]))
        return {key: value[0] for key, value in batch.items()}

    def get_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Stacked windows (B, T, ...) for window ``indices`` (B,), read one by one."""
        return stack_windows([self[int(i)] for i in indices])


def _action_bytes(space: Space) -> int:
    """Bytes of one action: float32 per dimension of a Box, an int64 id otherwise."""
    return int(np.prod(space.shape)) * (4 if isinstance(space, Box) else 8)


def _observation_bytes(space: Space) -> int:
    """Bytes of one observation: int64 ids per component, or the Box's own dtype."""
    itemsize = 8 if has_integer_ids(space) else np.dtype(space.dtype).itemsize
    return int(np.prod(space.shape)) * itemsize


def in_memory_bytes(training: TrainingRuns) -> int:
    """Memory the decompressed training histories (plus previous-step inputs) would take.

    Args:
        training: the training runs.

    Returns:
        Bytes, an upper bound: every step of every stream, kept or not.
    """
    observation_space, action_space = history_spaces(training.metadata[0])
    actions = _action_bytes(action_space)
    per_step = _observation_bytes(observation_space) + 2 * (actions + 4 + 1)
    steps = sum(int(r["num_streams"]) * int(r["num_steps"]) for r in training.entries)
    return steps * per_step


def open_windows(cfg: ExperimentConfig, training: TrainingRuns) -> WindowStore:
    """The training windows of the config's dataset, in memory if the memory policy allows.

    Args:
        cfg: the resolved experiment config (``resolve_config``: no null derived settings); env,
            model.context_steps and the train section are used. Windows are
            train.data.window_steps long, model.context_steps if that is None;
            ``train.data.in_memory`` yes / no, or auto: in memory if :func:`in_memory_bytes` is
            within ``train.data.max_memory_gb``.
        training: the config's checked training runs (``load_training_runs``).

    Returns:
        An :class:`InMemoryWindows` or a :class:`StreamedWindows`.

    Raises:
        UserError: a context shorter than one episode, no stream long enough for one window, a
            corrupt episode table.
    """
    if cfg.model.context_steps is None or cfg.train.data.subsample_every is None:
        raise ValueError("open_windows needs a resolved config (resolve_config)")
    fingerprint = dataset_fingerprint(training.entries, cfg)
    context_steps = cfg.model.context_steps
    episode_length = int(training.metadata[0]["episode_length"])
    if context_steps < episode_length:
        raise UserError(
            f"model.context_steps={context_steps} is shorter than one episode "
            f"({episode_length} steps) of {training.dataset_dir}; AD needs contexts across "
            f"episodes: set model.context_steps >= {episode_length} (paper: 2-4 episodes)"
        )
    if training.xland:  # read as it is, never loaded whole
        in_memory = False
    elif cfg.train.data.in_memory == "auto":
        in_memory = in_memory_bytes(training) <= cfg.train.data.max_memory_gb * 1e9
    else:
        in_memory = cfg.train.data.in_memory == "yes"
    window_steps = cfg.train.data.window_steps or context_steps
    if window_steps < context_steps:
        raise UserError(
            f"train.data.window_steps={window_steps} is shorter than model.context_steps="
            f"{context_steps}: a window must hold a whole band; set train.data.window_steps >= "
            f"{context_steps} (or null)"
        )
    targets = "actions"
    if cfg.train.mode == "dpt":
        targets = ORACLE_ARRAY
        lacking = [
            f for f, m in zip(training.files, training.metadata, strict=True) if not m.get(targets)
        ]
        if lacking:
            raise UserError(
                f"train.mode dpt learns the oracle's actions, but {len(lacking)} of the "
                f"{len(training.files)} training histories (e.g. {lacking[0].name}) have none; "
                "re-collect them with this ad-collect from a family with an oracle "
                "(TaskFamily.optimal_action), or use train.mode ad"
            )
    store = InMemoryWindows if in_memory else StreamedWindows
    policy = KeepPolicy.from_config(cfg.train)
    return store(training, policy, window_steps, fingerprint, context_steps, targets)
