"""AD, AD^eps, DPT, ED and the sources on one family's test tasks: one table, one figure, one JSON.

Usage:
  python scripts/compare_methods.py --out docs/results/methods_darkroom.json \
      --method AD=runs/darkroom_quick/report --method "AD^eps=grid/runs/adeps-s*/report" \
      --method "DPT=grid/runs/dpt-s*/report" [--figure docs/methods_darkroom.png]
  python scripts/compare_methods.py --table docs/results/methods_darkroom.json \
      [--page docs/methods.md] [--figure docs/methods_darkroom.png]   # from the kept JSON

Each ``--method LABEL=GLOB`` names the ``ad-run`` report folders of one method (one per split
seed x training seed; each holds summary.json and timings.json). Per method the runs are
aggregated as ``ad-eval --aggregate`` does (mean normalised score, 95% bootstrap interval over
runs); the ED control and the source of each method's data become rows of their own. Costs come
from the runs: env steps of the training data (training tasks x seeds x steps per run), the
collection's and the training's wall clock with the machine's single-thread matmul speed.
``--page`` puts the table between the page's ``<!-- methods_<family> -->`` markers.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
from pathlib import Path

import numpy as np

from ad.config import config_from_dict
from ad.errors import UserError
from ad.evaluation.aggregate import aggregate, seeds_phrase
from ad.evaluation.plots import plot_return_curves
from ad.evaluation.summary import load_summary
from ad.utils import atomic_write_text, replace_marked_block, to_json

# Which methods need the family's oracle: DPT learns its actions, AD^eps's demonstrator is it.
NEEDS_ORACLE = {"NoisyDemonstrator": True}


def _method(label: str, pattern: str) -> dict:
    folders = sorted(Path(p) for p in glob.glob(pattern))
    if not folders:
        raise SystemExit(f"error: --method {label}={pattern} matches no report folder")
    summaries = [load_summary(folder / "summary.json") for folder in folders]
    # ad-run writes timings.json; an ad-eval folder has none
    timings = [_timings(folder / "timings.json") for folder in folders]
    result = aggregate(summaries, min_runs=1)
    cfg = config_from_dict(summaries[0].config)
    train_seconds = [
        _train_seconds(s, folder) for s, folder in zip(summaries, folders, strict=True)
    ]
    data = cfg.collect.algorithm
    if data == "NoisyDemonstrator":  # what sets its data apart: how far the noise falls
        data += f", max_perf {cfg.collect.algorithm_kwargs.get('max_perf', 1.0)}"
    return {
        "label": label,
        "mode": cfg.train.mode,
        "data": data,
        "needs_oracle": cfg.train.mode == "dpt" or NEEDS_ORACLE.get(cfg.collect.algorithm, False),
        "env_steps_of_training_data": _data_steps(cfg),
        "collect_seconds": [t.get("collect") for t in timings],
        "train_seconds": train_seconds,
        "machine_matmul_gflops": [t.get("machine_matmul_gflops") for t in timings],
        "runs": [str(f) for f in folders],
        "aggregate": result,
    }


def _train_seconds(summary, folder: Path) -> float | None:
    """Seconds the run's optimiser steps took, from its own metrics.csv (steps between rows x
    tokens per step / the row's tokens/s): right even where ad-run resumed a finished training."""
    run = Path(summary.run) if Path(summary.run).is_absolute() else folder.parent
    cfg = config_from_dict(summary.config)
    tokens_per_step = cfg.train.batch_size * (
        cfg.train.data.window_steps or cfg.model.context_steps
    )
    if not (run / "metrics.csv").is_file():  # the run folder has moved
        return None
    seconds, before = 0.0, 0
    with open(run / "metrics.csv") as f:
        for row in csv.DictReader(f):
            step = int(row["step"])
            seconds += (step - before) * tokens_per_step / float(row["train/tokens_per_s"])
            before = step
    return seconds


def _timings(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _data_steps(cfg) -> int:
    """Env steps of the histories a run trains on: training tasks x seeds x steps per run."""
    train_tasks = len(cfg.env.task_split().train)
    per_run = cfg.collect.total_steps // cfg.collect.n_envs * cfg.collect.n_envs
    return train_tasks * len(cfg.collect.seeds) * per_run


def _row(label: str, stats: dict | None, method: dict | None, result: dict) -> dict | None:
    if stats is None:
        return None
    last = stats["last10_normalised"]
    return {
        "label": label,
        "last10_normalised": last,
        "first10_normalised": float(np.mean(stats["normalised_curve"]["mean"][:10])),
        "episode_to_80": stats["episode_to_80"],
        "runs": result["num_runs"],
        "seeds": seeds_phrase(result, values=True),
        "needs_oracle": None if method is None else method["needs_oracle"],
        "env_steps_of_training_data": None
        if method is None
        else method["env_steps_of_training_data"],
        "train_seconds": None
        if method is None or None in method["train_seconds"]
        else float(min(method["train_seconds"])),  # the fastest: others may have shared the CPU
        "curve": stats["normalised_curve"],
    }


def compare(methods: list[dict]) -> dict:
    """The rows: each method, then each method's ED control and the source of its data."""
    rows = []
    for m in methods:
        result = m["aggregate"]
        rows.append(_row(m["label"], result["ad"], m, result))
    for m in methods:
        result = m["aggregate"]
        rows.append(_row(f"ED ({m['data']} histories)", result["compare"], None, result))
        rows.append(_row(f"source: {m['data']} (per stream)", result["source"], None, result))
    unique, seen = [], set()
    for row in rows:  # a control or a source shared by two methods once
        if row is not None and row["label"] not in seen:
            seen.add(row["label"])
            unique.append(row)
    first = methods[0]["aggregate"]
    return {
        "family": first["family"],
        "split": first["split"],
        "num_episodes": min(m["aggregate"]["num_episodes"] for m in methods),
        "rows": unique,
        "methods": [{k: v for k, v in m.items() if k != "aggregate"} for m in methods],
    }


def table(data: dict) -> str:
    """The markdown table of a comparison's JSON."""
    lines = [
        f"{data['family']}, {data['split']} tasks, {data['num_episodes']} episodes; normalised "
        "score (random 0, optimal 1), mean [95% CI over runs where there are several]:",
        "",
        "| method | first 10 | last 10 | episode to 80% | runs | oracle | env steps of data "
        "| training s (fastest run) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        last = r["last10_normalised"]
        cells = [
            r["label"],
            f"{r['first10_normalised']:.2f}",
            f"**{last['mean']:.2f}**"
            + (f" [{last['ci_low']:.2f}, {last['ci_high']:.2f}]" if r["runs"] > 1 else ""),
            str(r["episode_to_80"] or "never"),
            r["seeds"],
            {None: "", True: "yes", False: "no"}[r["needs_oracle"]],
            ""
            if r["env_steps_of_training_data"] is None
            else f"{r['env_steps_of_training_data']:,}",
            "" if r["train_seconds"] is None else f"{r['train_seconds']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_into(path: Path, data: dict) -> None:
    """The table between ``<!-- methods_<family> -->`` and its closing marker in ``path``."""
    family = data["family"].lower()
    try:
        replace_marked_block(
            path, f"<!-- methods_{family} -->", f"<!-- /methods_{family} -->", table(data)
        )
    except UserError as e:
        raise SystemExit(f"error: {e}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", action="append", default=[], help="LABEL=GLOB of report dirs")
    parser.add_argument("--out", type=Path, help="the comparison's JSON")
    parser.add_argument("--figure", type=Path, help="the curves' PNG")
    parser.add_argument(
        "--table", type=Path, help="print the table of this JSON (and draw --figure from it)"
    )
    parser.add_argument("--page", type=Path, help="write the table into this page's markers")
    args = parser.parse_args()
    if args.table:
        data = json.loads(args.table.read_text())
    else:
        methods = [_method(*spec.split("=", 1)) for spec in args.method]
        data = to_json(compare(methods))
        if args.out:
            atomic_write_text(args.out, json.dumps(data, indent=1) + "\n")
    if args.page:
        write_into(args.page, data)
    if args.figure:
        draw(data, args.figure)
    print(table(data))


def draw(data: dict, path: Path) -> None:
    """The methods' mean normalised curves with their 95% bands (sources dashed)."""
    curves = [
        {
            "label": r["label"],
            "mean": r["curve"]["mean"],
            "low": r["curve"]["ci_low"],
            "high": r["curve"]["ci_high"],
            "linestyle": "--" if "source" in r["label"] else "-",
        }
        for r in data["rows"]
    ]
    title = f"{data['family']}, {data['split']} tasks: mean over runs, 95% CI"
    plot_return_curves(curves, path, title, 1.0, 0.0, ylabel="normalised return")


if __name__ == "__main__":
    main()
