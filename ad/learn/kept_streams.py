"""The kept streams of training: which steps of each history stream a window may span.

Before windowing, AD keeps every k-th episode of a stream (``train.data.subsample_every``, as Laskin et
al. 2022 do to fit more learning progress into one context), counting from each subsample offset
(the paper: offset 0 only; ``train.data.subsample_offsets=all``: one kept stream per offset 0..k-1).
Expert distillation (``train.mode=ed``) keeps the last ``train.ed.last_episodes`` complete
episodes. What is kept is a list of *segments*, ranges of original steps; laid end to end they are
the kept stream, whose steps are numbered by *kept index*. Pure functions: no file is read here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ad.config import TrainConfig


@dataclass(frozen=True)
class KeepPolicy:
    """Which episodes of a stream training keeps (from the config's train section)."""

    mode: str  # "ad" (also DPT's: whole streams, subsampled) or "ed"
    subsample_every: int  # AD keeps every k-th episode
    subsample_offsets: tuple[int, ...]  # AD: first kept episode of each kept stream (each < k)
    ed_last_episodes: int  # ED: complete episodes kept at the end of each stream

    @classmethod
    def from_config(cls, train: TrainConfig) -> KeepPolicy:
        """The policy of a train section.

        Args:
            train: the config's train section.

        Returns:
            The policy; ``subsample_offsets`` is (0,) unless AD uses every offset.
        """
        mode = "ed" if train.mode == "ed" else "ad"
        every_offset = mode == "ad" and train.data.subsample_offsets == "all"
        return cls(
            mode=mode,
            subsample_every=train.data.subsample_every,
            subsample_offsets=tuple(range(train.data.subsample_every if every_offset else 1)),
            ed_last_episodes=train.ed.last_episodes,
        )

    @property
    def keeps_whole_streams(self) -> bool:
        """True when every step is kept, so no episode boundary is needed to plan."""
        return self.mode == "ad" and self.subsample_every == 1


@dataclass(frozen=True)
class KeptStream:
    """The kept steps of one stream of one history, as segments of the original stream.

    Kept index j lies in segment ``g`` with ``segment_kept_starts[g] <= j <
    segment_kept_starts[g + 1]``, at original step ``segment_starts[g] + j -
    segment_kept_starts[g]``.
    """

    history: int  # index of the history among the training runs (TrainingRuns.files)
    stream: int  # the env stream of that history
    segment_starts: np.ndarray  # (num_segments,) int64, original step where each segment starts
    segment_kept_starts: np.ndarray  # (num_segments,) int64, kept index of each segment's start
    num_kept_steps: int

    def original_steps(self, kept_indices: np.ndarray) -> np.ndarray:
        """Original step of each kept index.

        Args:
            kept_indices: (N,) kept indices, each in ``0 .. num_kept_steps - 1``.

        Returns:
            (N,) int64 original steps.
        """
        segment = np.searchsorted(self.segment_kept_starts, kept_indices, side="right") - 1
        return self.segment_starts[segment] + kept_indices - self.segment_kept_starts[segment]


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
        offset: the subsample offset, the first kept episode in AD mode, 0 <= offset < k.

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
    segments: list[tuple[int, int]] = []
    kept = slice(offset, None, subsample_every)
    for start, stop in zip(starts[kept], ends[kept], strict=True):
        if segments and segments[-1][1] == start:
            segments[-1] = (segments[-1][0], int(stop))
        else:
            segments.append((int(start), int(stop)))
    return segments


def plan_stream(
    policy: KeepPolicy, history: int, stream: int, num_steps: int, dones: np.ndarray | None
) -> list[KeptStream]:
    """The kept streams of one original stream: one per subsample offset, empty ones left out.

    Args:
        policy: which episodes to keep.
        history: index of the history among the training runs.
        stream: the env stream of that history.
        num_steps: steps of the original stream.
        dones: (num_steps,) bool episode ends; None only if ``policy.keeps_whole_streams``.

    Returns:
        The non-empty kept streams, in subsample-offset order.
    """
    if policy.keeps_whole_streams:
        plans = [[(0, num_steps)]]
    else:
        plans = [
            kept_segments(dones, policy.mode, policy.subsample_every, policy.ed_last_episodes, o)
            for o in policy.subsample_offsets
        ]
    kept_streams = []
    for segments in plans:
        lengths = np.array([stop - start for start, stop in segments], dtype=np.int64)
        if lengths.sum() == 0:
            continue
        kept_streams.append(
            KeptStream(
                history=history,
                stream=stream,
                segment_starts=np.array([start for start, _ in segments], dtype=np.int64),
                segment_kept_starts=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
                num_kept_steps=int(lengths.sum()),
            )
        )
    return kept_streams


def first_window_of_each(kept_streams: list[KeptStream], context_steps: int) -> np.ndarray:
    """Window numbering: every start where a whole window fits in a kept stream is a window.

    Args:
        kept_streams: streams with at least ``context_steps`` kept steps, in window order.
        context_steps: steps per window.

    Returns:
        (len(kept_streams) + 1,) int64: the first window index of each stream, then the number of
        windows.
    """
    counts = np.array([s.num_kept_steps - context_steps + 1 for s in kept_streams])
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
