"""The paper's figure: one panel per task family, AD against ED and the source with CI bands.

``ad-eval --figure`` reads one result per family: an ``aggregate.json`` of ``ad-eval
--aggregate`` (several runs: a mean with a 95% bootstrap CI over runs) or a single run's
``summary.json`` (its title says "1 run", and its band has no width). Every curve is normalised
per task, so random is 0 and optimal is 1 in every panel; curves longer than 200 episodes are
drawn as trailing means (the panel's title says over how many). It writes ``figure.png`` and
``figure.json`` (each family's numbers), and returns a Markdown table of them (the README's and docs/results/index.md's).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ad.errors import UserError
from ad.evaluation.aggregate import aggregate, aggregate_curves, seeds_phrase
from ad.evaluation.metrics import trailing_mean
from ad.evaluation.summary import load_summary
from ad.utils import atomic_write_text


def load_result(path: str | Path) -> dict:
    """An aggregate (``aggregate.json``, its folder, or a kept copy under another name) or one
    run's summary as a 1-run aggregate."""
    path = Path(path)
    if path.is_dir() and (path / "aggregate.json").exists():
        path = path / "aggregate.json"
    if path.suffix == ".json" and path.name != "summary.json":  # aggregate.json or a kept copy
        try:
            result = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"{path} does not exist; run ad-eval --aggregate first") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{path} is not valid JSON; re-run ad-eval --aggregate") from None
        if not isinstance(result, dict) or "ad" not in result or "num_runs" not in result:
            raise UserError(f"{path} is not an ad-eval --aggregate result (no ad or num_runs)")
        return result
    return aggregate([load_summary(path)], min_runs=1)


def _cell(stats: dict | None) -> str:
    if stats is None or stats.get("last10_normalised") is None:
        return "n/a"
    s = stats["last10_normalised"]
    return f"{s['mean']:.2f} [{s['ci_low']:.2f}, {s['ci_high']:.2f}]"


def _episodes_to_80(stats: dict | None) -> str:
    return str((stats or {}).get("episode_to_80") or "never")


def figure_table(results: list[dict], recipes: list[str] | None = None) -> str:
    """The family table (README, docs/results/index.md): per family (and its recipe, where
    ``recipes`` names them), normalised score over the last 10 episodes [95% CI], and the episodes
    to 80% with AD's / the source's ratio counted per stream and by the source learner's whole
    experience (its streams x per-stream episodes)."""
    recipe_head, recipe_rule = ("| recipe ", "---|") if recipes else ("", "")
    lines = [
        f"| family {recipe_head}| runs | AD | ED | source | episode to 80%: AD / source "
        "(per stream) | ratio per stream | ratio by the source learner's experience |",
        f"|---|{recipe_rule}---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(results):
        ratio, learner = r.get("data_efficiency_ratio"), r.get("data_efficiency_ratio_learner")
        recipe = f" `{recipes[i]}` |" if recipes else ""
        lines.append(
            f"| {r['family']} |{recipe} {seeds_phrase(r)} | {_cell(r['ad'])} | "
            f"{_cell(r.get('compare'))} | {_cell(r.get('source'))} | "
            f"{_episodes_to_80(r['ad'])} / {_episodes_to_80(r.get('source'))} | "
            f"{'n/a' if ratio is None else f'{ratio:.2f}'} | "
            f"{'n/a' if learner is None else f'{learner:.2f}'} |"
        )
    return "\n".join(lines)


# Curves of more than SMOOTH_ABOVE episodes (500 one-pull bandit episodes) are drawn as trailing
# means of length // POINTS_PER_PANEL episodes, or single-episode noise would hide the trend.
SMOOTH_ABOVE, POINTS_PER_PANEL = 200, 50


def _panel(result: dict) -> dict:
    """One family's panel: its curves, smoothed where they are long, and what stands behind them."""
    curves = aggregate_curves(result)
    title = f"{result['family']}, {result['split']} tasks: {seeds_phrase(result)}"
    length = max(len(c["mean"]) for c in curves)
    if length > SMOOTH_ABOVE:
        window = length // POINTS_PER_PANEL
        keys = ("mean", "low", "high")
        curves = [
            {**c, **{k: trailing_mean(np.asarray(c[k]), window) for k in keys}} for c in curves
        ]
        title += f"\n(trailing mean of {window} episodes)"
    return {"title": title, "curves": curves, "optimal": 1.0, "random": 0.0}


def draw_figure(results: list[dict], png_path: str | Path) -> Path:
    """One panel per result into ``png_path``.

    Raises:
        UserError: two results are of the same family.
    """
    from ad.evaluation.plots import plot_return_panels

    families = [r["family"] for r in results]
    repeated = sorted({f for f in families if families.count(f) > 1})
    if repeated:
        raise UserError(
            f"two results are of {', '.join(repeated)}; pass one aggregate per family "
            "(ad-eval --aggregate joins runs of one family first)"
        )
    panels = [_panel(r) for r in results]
    title = "In-context learning on test tasks (95% CI)"
    return plot_return_panels(panels, png_path, title)


def write_figure(paths: list[str | Path], out_dir: str | Path) -> list[dict]:
    """One panel per result at ``paths`` into ``out_dir``/figure.png and figure.json.

    Raises:
        UserError: a path is not a result, or two results are of the same family.
    """
    from ad.utils import to_json

    results = [load_result(p) for p in paths]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    draw_figure(results, out_dir / "figure.png")
    table = {"families": [to_json(r) for r in results], "table": figure_table(results)}
    atomic_write_text(out_dir / "figure.json", json.dumps(table, indent=2) + "\n")
    return results
