"""Looking into a dataset folder: the table of ``ad-collect --inspect`` and the source curves.

Reads the folder through :mod:`ad.data.manifest` and the episode summaries of its histories; writes
nothing (the figure of ``--inspect --plot`` is drawn by :mod:`ad.evaluation.plots`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ad.data.histories import read_episodes, stream_returns
from ad.data.manifest import MANIFEST_NAME, SPLIT_ORDER, load_manifest, scan_histories
from ad.errors import UserError


def _number(value: Any) -> str:
    return f"{value:>8.2f}" if value is not None else f"{'-':>8}"


def _mean(values: list) -> str:
    """The mean of the known values, or "not given" (a family without an optimal return)."""
    known = [v for v in values if v is not None]
    return f"{np.mean(known):.2f}" if known else "not given"


def _table(dataset_dir: Path, runs: list[dict], header: dict) -> list[str]:
    """One row per run, then one line of means per split."""
    lines = [
        f"{dataset_dir}: {len(runs)} valid histories, family {header['family']}, algorithm "
        f"{header['algorithm']}, {header['n_envs']} streams x "
        f"{header['total_steps'] // header['n_envs']} steps per run",
        f"{'split':<11}{'idx':>5}  {'task':<22}{'seed':>5}{'streams':>8}{'steps':>8}"
        f"{'episodes':>9}{'first':>8}{'last':>8}{'optimal':>8}",
    ]
    for run in runs:
        task = json.dumps(run["task"], separators=(",", ":"))
        task = task if len(task) <= 22 else task[:19] + "..."
        lines.append(
            f"{run['split']:<11}{run['task_index']:>5}  {task:<22}{run['seed']:>5}"
            f"{run['num_streams']:>8}{run['num_steps']:>8}{run['num_episodes']:>9}"
            + "".join(_number(run[k]) for k in ("first_return", "last_return", "optimal_return"))
        )
    for split in SPLIT_ORDER:
        part = [r for r in runs if r["split"] == split]
        if part:
            mean = {
                key: _mean([r[key] for r in part])
                for key in ("first_return", "last_return", "optimal_return", "random_return")
            }
            lines.append(
                f"{split}: {len(part)} runs, first-episodes return {mean['first_return']} -> "
                f"last-episodes {mean['last_return']} (optimal {mean['optimal_return']}, "
                f"random {mean['random_return']})"
            )
    return lines


def source_curves(dataset_dir: Path, runs: list[dict]) -> dict[str, list[np.ndarray]]:
    """Per-stream episode returns of every task, for ``ad.evaluation.plots.plot_dataset_curves``.

    Args:
        dataset_dir: the dataset folder.
        runs: manifest entries (several seeds of one task are pooled as more streams).

    Returns:
        ``{"<split> task <index>": [returns of stream 0, stream 1, ...]}`` in manifest order.
    """
    curves: dict[str, list[np.ndarray]] = {}
    for run in runs:
        episodes = read_episodes(Path(dataset_dir) / run["file"])
        streams = curves.setdefault(f"{run['split']} task {run['task_index']}", [])
        streams += stream_returns(episodes, run["num_streams"])
    return curves


# A source whose training runs rise less than this (normalised: random 0, optimal 1) from their
# first 10 episodes to their last 10 shows AD little improvement to distil.
MIN_SOURCE_RISE = 0.1


def source_rise_warning(runs: list[dict]) -> str | None:
    """One line when the source barely improves within its training streams, else None.

    Args:
        runs: manifest entries (``first_return``, ``last_return``: means over streams of the
            first / last 10 episodes; ``optimal_return``, ``random_return``), of training runs.
    """
    rises, firsts, lasts = [], [], []
    for run in runs:
        optimal, random = run.get("optimal_return"), run.get("random_return")
        first, last = run.get("first_return"), run.get("last_return")
        if None in (optimal, random, first, last) or optimal - random <= 0:
            continue
        firsts.append((first - random) / (optimal - random))
        lasts.append((last - random) / (optimal - random))
        rises.append(lasts[-1] - firsts[-1])
    if not rises or float(np.mean(rises)) >= MIN_SOURCE_RISE:
        return None
    return (
        f"warning: the source barely learns within a stream (normalised {np.mean(firsts):.2f} "
        f"over the first 10 episodes -> {np.mean(lasts):.2f} over the last 10, mean of "
        f"{len(rises)} training runs), so AD has little improvement to distil: give it more steps "
        "per stream (collect.total_steps / collect.n_envs) or better settings "
        "(collect.algorithm_kwargs)"
    )


def inspect(dataset_dir: Path) -> str:
    """Validate every history of a dataset folder and tabulate its runs.

    Args:
        dataset_dir: the dataset folder.

    Returns:
        A table: split, task, seed, streams, steps per stream, episodes, first/last return (mean
        over streams of the first/last 10 episodes), optimal return; then per-split means.

    Raises:
        UserError: no histories, a corrupt file, mixed configs, or a file that differs from the
            checksum in the manifest.
    """
    dataset_dir = Path(dataset_dir)
    runs, _, header = scan_histories(dataset_dir) if dataset_dir.is_dir() else ([], [], None)
    if not runs:
        raise UserError(f"no learning histories (*.h5) in {dataset_dir}; run ad-collect first")
    try:
        listed = {run["file"]: run["sha256"] for run in load_manifest(dataset_dir)["runs"]}
    except (UserError, KeyError, TypeError):
        listed = {}
    for run in runs:
        if run["file"] in listed and listed[run["file"]] != run["sha256"]:
            raise UserError(
                f"{dataset_dir / run['file']} differs from the checksum in {MANIFEST_NAME}; re-run "
                "ad-collect with the same config (or ad-collect --merge) to rebuild the manifest"
            )
    lines = _table(dataset_dir, runs, header)
    warning = source_rise_warning([r for r in runs if r.get("split") == "train"])
    if warning:
        lines.append(warning)
    missing = [r["file"] for r in runs if r["file"] not in listed]
    if missing:
        lines.append(
            f"note: {len(missing)} files are not in {MANIFEST_NAME}; run ad-collect --merge "
            f"{dataset_dir} to list them"
        )
    return "\n".join(lines)
