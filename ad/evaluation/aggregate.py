"""Numbers that stand across seeds: several evaluations of one recipe as one mean with a CI.

Each evaluation (``summary.json`` of ``ad-eval``, read as a
:class:`ad.evaluation.summary.RunSummary`) is one training run on one task split. Its
per-episode normalised curve (mean over its tasks x evaluation seeds) is one sample; the
aggregate is the mean over runs with a seeded 95% percentile-bootstrap interval over runs, so
the interval shows how much the result moves with the split and the training seed, not only with
the evaluation seeds. The same holds for the compared runs (ED) and for the source algorithm's
curve on each split's tasks (one sample per split seed: it does not depend on the training seed). ``ad-eval --aggregate`` writes ``aggregate.json`` and ``aggregate.png``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ad.errors import UserError
from ad.evaluation.metrics import SMOOTHING, bootstrap_ci, first_episode_reaching
from ad.evaluation.summary import CurveStats, RunSummary, SourceCurve, load_summary
from ad.utils import atomic_write_text

SCALARS = ("last10_normalised", "first_episode_return", "last10_return")
Curve = TypeVar("Curve", bound=CurveStats)  # a summary, a compared run or a source curve


def _stats(parts: list[Curve | None], seed: int) -> dict | None:
    """Mean normalised curve with its CI band over runs, and mean / CI of each of ``SCALARS``,
    of one curve per run (a summary, its compared run or its source); None if a run lacks it."""
    if any(p is None for p in parts):
        return None
    curves = np.array([p.per_episode.normalised_mean for p in parts], dtype=float)
    low, high = bootstrap_ci(curves, seed)
    mean = curves.mean(0)
    out: dict[str, Any] = {
        "normalised_curve": {"mean": mean, "ci_low": low, "ci_high": high},
        "episode_to_50": first_episode_reaching(mean, 0.5, SMOOTHING),
        "episode_to_80": first_episode_reaching(mean, 0.8, SMOOTHING),
    }
    for name in SCALARS:
        values = np.array([getattr(p, name) for p in parts], dtype=float)  # None: NaN
        if np.isnan(values).any():
            out[name] = None
            continue
        lo, hi = bootstrap_ci(values[:, None], seed)
        out[name] = {"mean": values.mean(), "ci_low": lo[0], "ci_high": hi[0], "runs": values}
    return out


def _first_episodes(part: Curve | None, n: int) -> Curve | None:
    """``part`` (a summary, its compared run or its source) over its first ``n`` episodes only,
    its last-10 scores taken there: what an evaluation of ``n`` episodes gives, since each
    episode sees only the ones before it."""
    if part is None or len(part.per_episode.mean) <= n:
        return part
    per = part.per_episode
    curve = None if per.normalised_mean is None else per.normalised_mean[:n]
    cut = dataclasses.replace(
        per,
        mean=per.mean[:n],
        ci_low=per.ci_low[:n],
        ci_high=per.ci_high[:n],
        iqm=per.iqm[:n],
        normalised_mean=curve,
    )
    episodes = {"num_episodes": n} if isinstance(part, (RunSummary, SourceCurve)) else {}
    return dataclasses.replace(
        part,
        **episodes,
        per_episode=cut,
        last10_normalised=None if curve is None else float(np.mean(curve[-10:])),
        last10_return=float(np.mean(cut.mean[-10:])),
    )


def _shortest(parts: list[Curve | None]) -> list[Curve | None]:
    """Every part (a summary, a compared run, a source curve or None) cut to the episodes of the
    shortest (runs whose evaluation episodes were derived per split, e.g. where episodes end at
    the goal, differ in length)."""
    lengths = [len(p.per_episode.mean) for p in parts if p is not None]
    return [_first_episodes(p, min(lengths, default=0)) for p in parts]


def _recipe(summary: RunSummary) -> dict[str, Any]:
    """What must be equal in summaries to aggregate them: family, split and how they were
    evaluated."""
    return {
        "family": summary.family,
        "family_kwargs": summary.family_kwargs,
        "split": summary.split,
        "action_mode": summary.action_mode,
        "decoding": summary.decoding,
    }


def aggregate(summaries: list[RunSummary], seed: int = 0, min_runs: int = 2) -> dict:
    """Mean and 95% bootstrap CI over runs of AD, the first compared run (ED) and the source.

    Runs evaluated for different numbers of episodes (each split derives its own,
    ``ad.defaults``) are compared over the first episodes they share; ``episodes_evaluated``
    records the numbers.

    Raises:
        UserError: fewer than ``min_runs`` summaries, or summaries of different families,
            splits or evaluation settings.
    """
    if len(summaries) < min_runs:
        raise UserError("--aggregate needs at least two summaries (runs of other seeds)")
    evaluated = sorted({s.num_episodes for s in summaries})
    summaries = _shortest(summaries)
    first = _recipe(summaries[0])
    for s in summaries[1:]:
        other = _recipe(s)
        if other != first:
            raise UserError(
                f"summaries differ in {[k for k in first if other[k] != first[k]]}; aggregate "
                "evaluations of one recipe on one family and split"
            )
    compare = _shortest([s.compare[0] if s.compare else None for s in summaries])
    # the source's curve depends on the split only: one sample per split seed
    by_split = {s.config["env"]["split_seed"]: s.source for s in summaries}
    source = _shortest(list(by_split.values()))
    ad = _stats(summaries, seed)
    result = {
        **first,
        "num_episodes": evaluated[0],
        "episodes_evaluated": evaluated,
        "num_runs": len(summaries),
        "runs": [s.run for s in summaries],
        "split_seeds": sorted({s.config["env"]["split_seed"] for s in summaries}),
        "train_seeds": sorted({s.config["train"]["seed"] for s in summaries}),
        "label": summaries[0].label.split(" ")[0],  # the method: AD, DPT
        "ad": ad,
        "compare_label": compare[0].label.split(" ")[0] if compare[0] else None,
        "compare": _stats(compare, seed),
        "source": _stats(source, seed),
    }
    src = result["source"]
    if src and src["episode_to_80"] and ad["episode_to_80"]:
        result["data_efficiency_ratio"] = ad["episode_to_80"] / src["episode_to_80"]
    else:
        result["data_efficiency_ratio"] = None
    # episodes by the source learner's whole experience: per-stream episodes x its streams
    learners = {s.streams_per_learner for s in by_split.values() if s is not None}
    k = learners.pop() if len(learners) == 1 else None
    result["source_streams_per_learner"] = k
    ratio = result["data_efficiency_ratio"]
    result["data_efficiency_ratio_learner"] = None if ratio is None or k is None else ratio / k
    return result


def _fmt(stat: dict | None) -> str:
    if stat is None:
        return "n/a"
    return f"{stat['mean']:.3f} [{stat['ci_low']:.3f}, {stat['ci_high']:.3f}]"


def seeds_phrase(result: dict, values: bool = False) -> str:
    """What stands behind an aggregate: "6 runs (3 split x 2 training seeds)" for a full grid,
    "4 runs over 3 split seeds and 2 training seeds" otherwise; ``values`` lists the seeds."""
    if result["num_runs"] == 1:
        return "1 run"
    splits, trains = result["split_seeds"], result["train_seeds"]
    split_part = f"{len(splits)} split" + (f" seeds {splits}" if values else "")
    train_part = f"{len(trains)} training seeds" + (f" {trains}" if values else "")
    if len(splits) * len(trains) == result["num_runs"]:
        return f"{result['num_runs']} runs ({split_part} x {train_part})"
    if not values:
        split_part += " seeds"
    return f"{result['num_runs']} runs over {split_part} and {train_part}"


def format_aggregate(result: dict) -> str:
    """Lines for the terminal: what stands behind the numbers, then AD, ED and the source."""
    lines = [
        f"{seeds_phrase(result, values=True)}, {result['family']} {result['split']} tasks, "
        f"{result['num_episodes']} episodes; mean [95% bootstrap CI over runs]:"
    ]
    if len(result.get("episodes_evaluated", [])) > 1:
        lines.append(
            f"  (runs evaluated {', '.join(map(str, result['episodes_evaluated']))} episodes: all "
            f"are scored over their first {result['num_episodes']})"
        )
    rows = [(result["label"], result["ad"])]
    rows.append((result["compare_label"] or "compare", result["compare"]))
    rows.append(("source", result["source"]))
    for label, stats in rows:
        if stats is None:
            continue
        lines.append(
            f"  {label}: normalised (last 10) {_fmt(stats['last10_normalised'])}; first-episode "
            f"return {_fmt(stats['first_episode_return'])}; mean curve reaches 50% / 80% at "
            f"episode {stats['episode_to_50'] or 'never'} / {stats['episode_to_80'] or 'never'}"
        )
    ratio = result["data_efficiency_ratio"]
    line = "data efficiency (episodes to 80% of the mean curves, AD / source; < 1: AD is faster): "
    if ratio is None:
        line += "n/a, one of them never reaches 80%"
    else:
        line += f"{ratio:.2f} per stream"
        k = result.get("source_streams_per_learner")
        if k and k > 1:
            line += (
                f"; {result['data_efficiency_ratio_learner']:.2f} by the source learner's whole "
                f"experience ({k} streams feed one learner)"
            )
    lines.append(line)
    return "\n".join(lines)


def aggregate_curves(result: dict) -> list[dict]:
    """AD, the compared run and the source as ``plot_return_curves`` takes them: mean normalised
    curves with their CI bands. Each role keeps its colour whether or not the others are there,
    so the panels of one figure agree."""
    labels = [(result["label"], "ad", "-", "C0")]
    labels.append((result["compare_label"] or "compare", "compare", "-", "C1"))
    labels.append(("source algorithm (episodes per stream)", "source", "--", "C2"))
    return [
        {
            "label": label,
            "mean": result[key]["normalised_curve"]["mean"],
            "low": result[key]["normalised_curve"]["ci_low"],
            "high": result[key]["normalised_curve"]["ci_high"],
            "linestyle": style,
            "color": color,
        }
        for label, key, style, color in labels
        if result[key] is not None
    ]


def write_aggregate(paths: list[str | Path], out_dir: str | Path, seed: int = 0) -> dict:
    """Aggregate the summaries at ``paths`` into ``out_dir``/aggregate.json and aggregate.png."""
    from ad.evaluation.plots import plot_return_curves
    from ad.utils import to_json

    result = aggregate([load_summary(p) for p in paths], seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "aggregate.json", json.dumps(to_json(result), indent=2) + "\n")
    curves = aggregate_curves(result)
    title = f"{result['family']}, {result['split']} tasks: mean of {seeds_phrase(result)}, 95% CI"
    plot_return_curves(
        curves, out_dir / "aggregate.png", title, 1.0, 0.0, ylabel="normalised return"
    )
    return result
