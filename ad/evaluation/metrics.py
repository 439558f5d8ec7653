"""Statistics of in-context return curves: bootstrap intervals, IQM, normalised scores."""

from __future__ import annotations

from typing import Any

import numpy as np

from ad.evaluation.summary import CurveStats, PerEpisode
from ad.utils import to_json

SMOOTHING = 5  # episodes in the trailing mean that must reach a threshold (one lucky one won't)
NUM_BOOTSTRAP = 1000


def bootstrap_ci(
    samples: np.ndarray, seed: int, num_resamples: int = NUM_BOOTSTRAP, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded percentile-bootstrap CI of the mean over axis 0 of ``samples`` (N, E)."""
    n = samples.shape[0]
    rng = np.random.default_rng(seed)
    # Resample counts rather than indices: (R, N) @ (N, E) keeps memory at R x E.
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=num_resamples)  # (R, N)
    means = counts @ samples / n  # (R, E)
    alpha = (1.0 - level) / 2
    return np.quantile(means, alpha, axis=0), np.quantile(means, 1.0 - alpha, axis=0)


def iqm(samples: np.ndarray) -> np.ndarray:
    """Interquartile mean over axis 0: the mean of the middle 50% (Agarwal et al. 2021)."""
    cut = samples.shape[0] // 4
    return np.sort(samples, axis=0)[cut : samples.shape[0] - cut].mean(axis=0)


def normalise(returns: np.ndarray, optimal: np.ndarray, random: np.ndarray) -> np.ndarray:
    """(R - R_random) / (R_optimal - R_random), tasks along axis 0; NaN where the gap is <= 0."""
    shape = (-1,) + (1,) * (returns.ndim - 1)
    gap = (np.asarray(optimal, float) - np.asarray(random, float)).reshape(shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = (returns - np.asarray(random, float).reshape(shape)) / gap
    return np.where(gap > 0, scores, np.nan)


def trailing_mean(curve: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each point (fewer at the start; NaNs ignored)."""
    padded = np.concatenate([np.full(window - 1, np.nan), np.asarray(curve, float)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, window)  # (E, window)
    counts = (~np.isnan(windows)).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(counts > 0, np.nansum(windows, 1) / counts, np.nan)


def first_episode_reaching(
    curve: np.ndarray | None, threshold: float, window: int = 1
) -> int | None:
    """1-based episode at which the trailing ``window``-episode mean of ``curve`` first reaches
    ``threshold``; None if never."""
    if curve is None:
        return None
    smoothed = trailing_mean(curve, window)
    hits = np.flatnonzero(np.nan_to_num(smoothed, nan=-np.inf) >= threshold)
    return int(hits[0]) + 1 if len(hits) else None


def _nanmean(x: np.ndarray, axis: int | None = None) -> Any:
    return None if np.isnan(x).all() else np.nanmean(x, axis=axis)


def curve_stats(
    samples: np.ndarray, normalised: np.ndarray, seed: int, groups: np.ndarray | None = None
) -> CurveStats:
    """Statistics of (N, E) episode returns and their (N, E) normalised scores.

    Args:
        samples: (N, E) returns, one row per (task, seed) or per source stream.
        normalised: (N, E) normalised scores of the same rows.
        seed: seed of the bootstrap.
        groups: (N,) task of each row, or None. When every task has equally many rows, the
            confidence band resamples tasks (the mean of each task's rows), since seeds of one
            task are not independent draws of the task distribution; otherwise, and without
            groups, it resamples rows.

    Returns:
        ``per_episode`` curves (E,): mean, 95% bootstrap ci_low / ci_high, iqm, normalised_mean;
        scalars first_episode_return, last10_return, last10_normalised, and episode_to_50 /
        episode_to_80: the first 1-based episode at which the trailing 5-episode mean of the
        mean normalised curve reaches 50% / 80% (None if never); plain Python values.
    """
    units = samples
    if groups is not None:
        names, sizes = np.unique(np.asarray(groups), return_counts=True)
        if (sizes == sizes[0]).all():  # equal weights: the mean of task means is the mean
            units = np.stack([samples[np.asarray(groups) == g].mean(0) for g in names])  # (G, E)
    low, high = bootstrap_ci(units, seed)
    curve = _nanmean(normalised, axis=0)
    per_episode = {
        "mean": samples.mean(0),
        "ci_low": low,
        "ci_high": high,
        "iqm": iqm(samples),
        "normalised_mean": curve,
    }
    return CurveStats(
        per_episode=PerEpisode(**to_json(per_episode)),
        first_episode_return=to_json(samples[:, 0].mean()),
        last10_return=to_json(samples[:, -10:].mean()),
        last10_normalised=to_json(_nanmean(normalised[:, -10:])),
        episode_to_50=first_episode_reaching(curve, 0.5, SMOOTHING),
        episode_to_80=first_episode_reaching(curve, 0.8, SMOOTHING),
    )


def summarise_returns(
    returns: np.ndarray, optimal: np.ndarray, random: np.ndarray, normalise_at: list, seed: int
) -> tuple[CurveStats, dict[str, float | None]]:
    """``curve_stats`` of (T, S, E) returns over their T*S rows (bands resampling tasks), and
    the mean normalised score at the 1-based episodes ``normalise_at`` that are <= E (keyed by
    the episode as a string, as summary.json's ``normalised_at``)."""
    num_tasks, num_seeds, num_episodes = returns.shape
    samples = returns.reshape(num_tasks * num_seeds, num_episodes)
    normalised = normalise(returns, optimal, random).reshape(samples.shape)
    stats = curve_stats(samples, normalised, seed, np.repeat(np.arange(num_tasks), num_seeds))
    curve = stats.per_episode.normalised_mean
    at = sorted({int(k) for k in normalise_at if 1 <= int(k) <= num_episodes})
    return stats, {str(k): None if curve is None else curve[k - 1] for k in at}
