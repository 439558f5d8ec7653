"""The README's generalist figure and table (issue 14): per family, the generalist against the
specialist of the same size and optimiser steps, and the source algorithm, normalised per task
(random 0, optimal 1) on the same test tasks and evaluation seeds.

Usage:
  python scripts/generalist_vs_specialists.py specialists MIXTURE.yaml OUT_DIR
      writes OUT_DIR/<name>-<family>.yaml per member: its experiment with the mixture's model and
      loop and its own share of each batch (train each: ad-train --config; ad-eval --run)
  python scripts/generalist_vs_specialists.py compare GENERALIST_EVAL SPEC_EVAL [SPEC_EVAL ...]
      --out docs/generalist_quick.png

GENERALIST_EVAL is ``ad-eval --run GENERALIST``'s folder (one sub-folder per family); each
SPEC_EVAL is one specialist's eval folder (its summary.json names its family).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ad.config import save_config
from ad.evaluation.aggregate import aggregate, load_summary
from ad.evaluation.plots import plot_return_panels
from ad.mixture import load_any_config, specialists


def _curve(result: dict, key: str, label: str, style: str) -> dict:
    curve = result[key]["normalised_curve"]
    return {"label": label, "mean": curve["mean"], "low": curve["ci_low"],
            "high": curve["ci_high"], "linestyle": style}  # fmt: skip


def _score(result: dict, key: str) -> float | None:
    stats = (result.get(key) or {}).get("last10_normalised")
    return None if stats is None else stats["mean"]


def write_specialists(mixture: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for cfg in specialists(load_any_config(mixture)):
        path = out_dir / f"{cfg.name}.yaml"
        save_config(cfg, path)
        print(f"wrote {path} (batch {cfg.train.batch_size}, {cfg.train.num_steps} steps)")


def compare(args: argparse.Namespace) -> None:
    panels, rows = [], []
    for folder in args.specialists:
        spec = aggregate([load_summary(folder)], min_runs=1)
        family = spec["family"]
        gen = aggregate([load_summary(args.generalist / family)], min_runs=1)
        panels.append(
            {
                "title": f"{family}, {gen['split']} tasks (1 training seed)",
                "curves": [
                    _curve(gen, "ad", "generalist (AD, one model)", "-"),
                    _curve(spec, "ad", "specialist (AD, same size and steps)", "-"),
                    _curve(spec, "source", "source algorithm (per stream)", "--"),
                ],
                "optimal": 1.0,
                "random": 0.0,
            }
        )
        g, s = _score(gen, "ad"), _score(spec, "ad")
        first_g = gen["ad"]["normalised_curve"]["mean"][0]
        first_s = spec["ad"]["normalised_curve"]["mean"][0]
        ratio = "n/a" if not g or not s or s <= 0 else f"{g / s:.2f}"
        rows.append(
            f"| {family} | {first_g:.2f} -> **{g:.2f}** | {first_s:.2f} -> **{s:.2f}** | "
            f"{ratio} | {_score(spec, 'source'):.2f} |"
        )
    plot_return_panels(panels, args.out, "One generalist vs one specialist per family (test tasks)")
    print("| family | generalist: episode 1 -> last 10 | specialist: episode 1 -> last 10 | "
          "generalist / specialist | source (last 10) |")  # fmt: skip
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"wrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    spec = sub.add_parser("specialists", help="write each member's specialist config")
    spec.add_argument("mixture", type=Path)
    spec.add_argument("out_dir", type=Path)
    cmp = sub.add_parser("compare", help="the README's table and figure")
    cmp.add_argument("generalist", type=Path)
    cmp.add_argument("specialists", type=Path, nargs="+")
    cmp.add_argument("--out", type=Path, default=Path("docs/generalist_quick.png"))
    args = parser.parse_args()
    if args.command == "specialists":
        write_specialists(args.mixture, args.out_dir)
    else:
        compare(args)


if __name__ == "__main__":
    main()
