"""Figures: in-context return curves and source learning curves.

The only module that imports matplotlib. It uses the non-interactive Agg backend, so figures
render on headless machines, and writes every figure atomically (temp file + rename).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display needed, and never opens a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ad.utils import atomic_write_bytes  # noqa: E402

_DPI = 120


def _save(fig: plt.Figure, out_path: str | Path) -> Path:
    """Render ``fig`` to PNG in memory, write it atomically and close the figure."""
    out_path = Path(out_path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(out_path, buffer.getvalue())
    return out_path


def plot_return_curves(
    curves: Sequence[Mapping],
    out_path: str | Path,
    title: str,
    optimal: float | None = None,
    random: float | None = None,
    xlabel: str = "episode",
    ylabel: str = "return",
) -> Path:
    """The paper's main figure: return per episode, one line (and band) per method.

    Args:
        curves: one mapping per method with ``label`` (str) and ``mean`` (E,), optionally ``low``
            and ``high`` (E,) for a confidence band, ``x`` (E,) for the x values (default
            1..E), ``linestyle`` and ``color`` (default: the i-th of matplotlib's cycle).
        out_path: PNG file to write.
        title: figure title (evaluation on training tasks must say so here).
        optimal: optimal return (mean over tasks), drawn as a horizontal line; None: no line.
        random: uniformly random policy's return (mean over tasks), a horizontal line.
        xlabel: x-axis label.
        ylabel: y-axis label.

    Returns:
        ``out_path`` as a Path.
    """
    fig, ax = plt.subplots(figsize=(7.0, 4.5))
    _draw_curves(ax, curves, optimal, random)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    entries = len(curves) + (optimal is not None) + (random is not None)
    if entries > 5:  # many lines: the legend beside the axes, where it hides none of them
        fig.set_size_inches(10.5, 4.5)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    else:
        ax.legend(loc="best", fontsize="small")
    return _save(fig, out_path)


def _draw_curves(
    ax: plt.Axes, curves: Sequence[Mapping], optimal: float | None, random: float | None
) -> None:
    """``plot_return_curves``'s lines, bands and reference lines on one axis."""
    for i, curve in enumerate(curves):
        mean = np.asarray(curve["mean"], dtype=float)
        x = np.asarray(curve.get("x", np.arange(1, len(mean) + 1)), dtype=float)
        color = curve.get("color", f"C{i}")
        ax.plot(x, mean, color=color, label=curve["label"], linestyle=curve.get("linestyle", "-"))
        if curve.get("low") is not None and curve.get("high") is not None:
            low = np.asarray(curve["low"], dtype=float)
            high = np.asarray(curve["high"], dtype=float)
            ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0)
    if optimal is not None:
        ax.axhline(optimal, color="black", linestyle="--", linewidth=1, label="optimal")
    if random is not None:
        ax.axhline(random, color="grey", linestyle=":", linewidth=1.5, label="random policy")
    ax.grid(alpha=0.3)


def plot_return_panels(
    panels: Sequence[Mapping], out_path: str | Path, title: str, ylabel: str = "normalised return"
) -> Path:
    """The paper's multi-family figure: one ``plot_return_curves`` panel per family, in a row
    (wrapping after three), one shared legend.

    Args:
        panels: one mapping per panel with ``title``, ``curves`` (as ``plot_return_curves``
            takes them) and optionally ``optimal`` and ``random``.
        out_path: PNG file to write.
        title: figure title.
        ylabel: y-axis label of the first panel of each row.
    """
    cols = min(len(panels), 3)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    for i, (ax, panel) in enumerate(zip(axes.flat, panels, strict=False)):
        _draw_curves(ax, panel["curves"], panel.get("optimal"), panel.get("random"))
        ax.set_title(panel["title"], fontsize=9)
        ax.set_xlabel("episode")
        if i % cols == 0:
            ax.set_ylabel(ylabel)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    handles: dict = {}
    for ax in axes.flat[: len(panels)]:  # every label once, in order of first appearance
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="lower center",
        ncol=len(handles),
        frameon=False,
        bbox_to_anchor=(0.5, -0.02),
    )
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save(fig, out_path)


def _stream_mean(returns: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Mean over streams of per-stream episode returns, truncated to the shortest stream."""
    if isinstance(returns, np.ndarray) and returns.ndim == 1:
        return returns.astype(float)
    if isinstance(returns, np.ndarray) and returns.ndim == 2:
        return returns.astype(float).mean(axis=0)
    streams = [np.asarray(r, dtype=float).ravel() for r in returns]
    length = min((len(r) for r in streams), default=0)
    if length == 0:
        return np.zeros(0)
    return np.stack([r[:length] for r in streams]).mean(axis=0)


def plot_source_curves(
    curves_by_task: Mapping[str, np.ndarray | Sequence[np.ndarray]],
    out_path: str | Path,
    title: str = "source algorithm learning curves",
    max_legend: int = 10,
    optimal: float | None = None,
    random: float | None = None,
) -> Path:
    """Per-task learning curves of the source algorithm, episodes on the x-axis.

    Args:
        curves_by_task: task label -> episode returns of that task's runs: an array (E,) already
            averaged, an array (S, E) of S streams, or a list of per-stream 1-D arrays of
            possibly different lengths (truncated to the shortest). Streams are averaged per task.
        out_path: PNG file to write.
        title: figure title.
        max_legend: label each task in the legend only when there are at most this many.
        optimal: optimal return (mean over tasks), drawn as a horizontal line; None: no line.
        random: uniformly random policy's return (mean over tasks), a horizontal line.

    Returns:
        ``out_path`` as a Path.
    """
    fig, ax = plt.subplots(figsize=(7.0, 4.5))
    means = {label: _stream_mean(r) for label, r in curves_by_task.items()}
    show_legend = 0 < len(means) <= max_legend
    for label, mean in means.items():
        x = np.arange(1, len(mean) + 1)
        ax.plot(x, mean, linewidth=1, alpha=0.8 if show_legend else 0.35, label=label)
    nonempty = [m for m in means.values() if len(m)]
    if len(nonempty) > 1:
        length = min(len(m) for m in nonempty)
        overall = np.stack([m[:length] for m in nonempty]).mean(axis=0)
        ax.plot(
            np.arange(1, length + 1), overall, color="black", linewidth=2, label="mean over tasks"
        )
    if optimal is not None:
        ax.axhline(optimal, color="black", linestyle="--", linewidth=1, label="optimal")
    if random is not None:
        ax.axhline(random, color="grey", linestyle=":", linewidth=1.5, label="random policy")
    ax.set_xlabel("episode (per stream)")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if not show_legend:  # too many tasks to name: keep only the mean and reference lines
        keep = {"mean over tasks", "optimal", "random policy"}
        pairs = [(h, lab) for h, lab in zip(handles, labels, strict=True) if lab in keep]
        handles, labels = [p[0] for p in pairs], [p[1] for p in pairs]
    if handles:
        ax.legend(handles, labels, loc="best", fontsize="small")
    return _save(fig, out_path)


def plot_dataset_curves(dataset_dir: str | Path) -> Path:
    """``source_curves.png`` in a dataset folder: the source algorithm learning each task of
    its manifest from scratch (``ad-collect --inspect DIR --plot``).

    Returns:
        The path of the figure.
    """
    from ad.data.inspection import source_curves
    from ad.data.manifest import load_manifest

    dataset_dir = Path(dataset_dir)
    manifest = load_manifest(dataset_dir)
    runs = manifest["runs"]
    optimal = [r["optimal_return"] for r in runs if r.get("optimal_return") is not None]
    random = [r["random_return"] for r in runs if r.get("random_return") is not None]
    return plot_source_curves(
        source_curves(dataset_dir, runs),
        dataset_dir / "source_curves.png",
        title=f"{manifest['algorithm']} learning {manifest['family']} tasks from scratch",
        optimal=float(np.mean(optimal)) if optimal else None,
        random=float(np.mean(random)) if random else None,
    )


_LANDMARK_STYLE = {"goal": ("*", "gold"), "key": ("P", "deepskyblue"), "door": ("s", "red")}


def plot_exploration(
    counts: np.ndarray,
    episodes: Sequence[int],
    landmarks: Mapping[str, Sequence[int]],
    out_path: str | Path,
    title: str,
) -> Path:
    """Heat maps of the cells visited in a few episodes of one rollout, one panel per episode.

    Args:
        counts: (P, width, height) visits per cell in each of the P episodes.
        episodes: the P episode numbers (1-based), for the panel titles.
        landmarks: name -> (x, y) cell of the task to mark (goal, key, door).
        out_path: PNG file to write.
        title: figure title (the family, task and split).

    Returns:
        ``out_path`` as a Path.
    """
    num_panels = len(episodes)
    fig, axes = plt.subplots(1, num_panels, figsize=(3.0 * num_panels, 3.4), squeeze=False)
    top = max(int(counts.max()), 1)
    image = None
    for ax, panel, episode in zip(axes[0], counts, episodes, strict=True):
        # x runs right and y down, as the envs' moves do ("up" decreases y)
        image = ax.imshow(panel.T, cmap="viridis", vmin=0, vmax=top, origin="upper")
        for name, (x, y) in landmarks.items():
            marker, colour = _LANDMARK_STYLE.get(name, ("o", "white"))
            ax.scatter([x], [y], marker=marker, s=160, c=colour, edgecolors="black", label=name)
        ax.set_title(f"episode {episode} ({int(panel.sum())} steps)")
        ax.set_xticks([])
        ax.set_yticks([])
    if landmarks:  # below the panels, clear of the colour bar
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="visits")
    fig.suptitle(title)
    return _save(fig, out_path)


def plot_paths(
    paths: Sequence[np.ndarray],
    episodes: Sequence[int],
    landmarks: Mapping,
    out_path: str | Path,
    title: str,
) -> Path:
    """The paths of a few episodes of one rollout in the plane, one line per episode.

    Args:
        paths: per episode, (n + 1, 2) positions: the start, then after each step.
        episodes: their episode numbers (1-based), for the legend.
        landmarks: "goal" -> (x, y), and optionally "goal_radius" (a circle around the goal).
        out_path: PNG file to write.
        title: figure title (the family, task and split).

    Returns:
        ``out_path`` as a Path.
    """
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    angles = np.linspace(0.0, np.pi, 181)  # the goals of the point robot's tasks
    ax.plot(np.cos(angles), np.sin(angles), color="0.75", lw=1, ls="--", label="possible goals")
    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, max(len(paths), 2)))
    for path, episode, colour in zip(paths, episodes, colours, strict=False):
        ax.plot(
            path[:, 0],
            path[:, 1],
            "-o",
            ms=2.5,
            lw=1.4,
            color=colour,
            label=f"episode {episode} ({len(path) - 1} steps)",
        )
    ax.scatter(
        [0.0], [0.0], marker="o", s=70, c="white", edgecolors="black", zorder=3, label="start"
    )
    if "goal" in landmarks:
        gx, gy = landmarks["goal"]
        if "goal_radius" in landmarks:
            circle = plt.Circle((gx, gy), landmarks["goal_radius"], color="gold", alpha=0.3)
            ax.add_patch(circle)
        ax.scatter(
            [gx], [gy], marker="*", s=220, c="gold", edgecolors="black", zorder=3, label="goal"
        )
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    ax.set_title(title, fontsize=9)
    return _save(fig, out_path)
