"""The generalist figure and table of docs/results/generalist.md (issue 14): per family, the
generalist against the specialist of the same size and optimiser steps, and the source algorithm, normalised per task
(random 0, optimal 1) on the same test tasks and evaluation seeds.

Usage:
  python scripts/generalist_vs_specialists.py specialists MIXTURE.yaml OUT_DIR
      writes OUT_DIR/<name>-<family>.yaml per family: its experiment with the generalist's model and
      loop and its own share of each batch (train each: ad-train --config; ad-eval --run)
  python scripts/generalist_vs_specialists.py compare --generalist GEN_EVAL [GEN_EVAL ...]
      --specialists SPEC_EVAL [SPEC_EVAL ...] --out docs/generalist_quick.png

Each GEN_EVAL is ``ad-eval --run GENERALIST``'s folder (one sub-folder per family), one per
training seed; each SPEC_EVAL is one specialist's eval folder (its summary.json names its
family; several seeds of a family are averaged).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ad.config import save_config
from ad.evaluation.aggregate import aggregate
from ad.evaluation.plots import plot_return_panels
from ad.evaluation.summary import RunSummary, load_summary
from ad.generalist import load_any_config, specialists


def _curve(result: dict, key: str, label: str, style: str) -> dict:
    curve = result[key]["normalised_curve"]
    return {"label": label, "mean": curve["mean"], "low": curve["ci_low"],
            "high": curve["ci_high"], "linestyle": style}  # fmt: skip


def _scores(result: dict, key: str) -> tuple[float, float, list[float]]:
    """An aggregate's mean normalised score over the first 10 and the last 10 episodes, and each
    run's last 10."""
    stats = result[key]
    last = stats["last10_normalised"]
    first = float(np.mean(stats["normalised_curve"]["mean"][:10]))
    return first, float(last["mean"]), [float(r) for r in last["runs"]]


def _cell(first: float, last: float, runs: list[float]) -> str:
    each = f" ({' / '.join(f'{r:.2f}' for r in runs)})" if len(runs) > 1 else ""
    return f"{first:.2f} -> **{last:.2f}**{each}"


def write_specialists(generalist: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for cfg in specialists(load_any_config(generalist)):
        path = out_dir / f"{cfg.name}.yaml"
        save_config(cfg, path)
        print(f"wrote {path} (batch {cfg.train.batch_size}, {cfg.train.num_steps} steps)")


def compare(args: argparse.Namespace) -> None:
    specs: dict[str, list[RunSummary]] = {}
    for folder in args.specialists:
        summary = load_summary(folder)
        specs.setdefault(summary.family, []).append(summary)
    panels, rows = [], []
    for family, spec_runs in specs.items():
        gen_runs = [load_summary(folder / family) for folder in args.generalist]
        gen, spec = aggregate(gen_runs, min_runs=1), aggregate(spec_runs, min_runs=1)
        seeds = f"training seeds: generalist {len(gen_runs)}, specialist {len(spec_runs)}"
        panels.append(
            {
                "title": f"{family}, {gen['split']} tasks ({seeds})",
                "curves": [
                    _curve(gen, "ad", "generalist (AD, one model)", "-"),
                    _curve(spec, "ad", "specialist (AD, same size and steps)", "-"),
                    _curve(spec, "source", "source algorithm (per stream)", "--"),
                ],
                "optimal": 1.0,
                "random": 0.0,
            }
        )
        g_first, g_last, g_runs = _scores(gen, "ad")
        s_first, s_last, s_runs = _scores(spec, "ad")
        _, source, _ = _scores(spec, "source")  # one curve per split: the same data
        ratio = f"{g_last / s_last:.2f}" if s_last > 0 else "n/a"
        episodes = len(gen["ad"]["normalised_curve"]["mean"])
        rows.append(
            f"| {family} ({episodes} episodes) | {_cell(g_first, g_last, g_runs)} | "
            f"{_cell(s_first, s_last, s_runs)} | {ratio} | {source:.2f} |"
        )
    plot_return_panels(panels, args.out, "One generalist vs one specialist per family (test tasks)")
    print("| family | generalist: first 10 episodes -> last 10 (per seed) | specialist: first 10 "
          "-> last 10 (per seed) | generalist / specialist (last 10) | source (last 10) |")  # fmt: skip
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"wrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    spec = sub.add_parser("specialists", help="write each family's specialist config")
    spec.add_argument("generalist", type=Path)
    spec.add_argument("out_dir", type=Path)
    cmp = sub.add_parser("compare", help="docs/results/generalist.md's table and figure")
    cmp.add_argument("--generalist", type=Path, nargs="+", required=True, help="eval folders")
    cmp.add_argument("--specialists", type=Path, nargs="+", required=True, help="eval folders")
    cmp.add_argument("--out", type=Path, default=Path("docs/generalist_quick.png"))
    args = parser.parse_args()
    if args.command == "specialists":
        write_specialists(args.generalist, args.out_dir)
    else:
        compare(args)


if __name__ == "__main__":
    main()
