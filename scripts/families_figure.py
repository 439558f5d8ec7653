"""The families figure and table from the aggregates kept under docs/results/families/.

Usage:
  python scripts/families_figure.py [--keep RECIPE=AGGREGATE ...]   # keep, then redraw
  python scripts/families_figure.py --table                          # print the table only
  python scripts/families_figure.py --family RECIPE                  # print one family's block

``--keep`` copies a family's ``ad-eval --aggregate`` result (``aggregate.json`` or its folder;
``scripts/paper_figure.sh`` passes each family's), or one run's ``summary.json`` as a 1-run
aggregate, to ``docs/results/families/RECIPE.json``.
Then every kept aggregate, in the order of ``ORDER`` (others after, by name), becomes one panel
of ``docs/families.png`` and one row of the table between the ``<!-- families -->`` markers of
README.md and docs/results/index.md. Each kept recipe also gets its own one-panel figure,
``docs/results/families/RECIPE.png``, and its headline table in every results page that holds
``<!-- family RECIPE -->`` ... ``<!-- /family -->`` markers. Nothing is run: figures and tables
are redrawn from kept data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ad.errors import UserError
from ad.evaluation.aggregate import seeds_phrase
from ad.evaluation.figure import draw_figure, figure_table, load_result
from ad.utils import atomic_write_text, replace_marked_block, to_json

ROOT = Path(__file__).resolve().parents[1]
KEPT = ROOT / "docs" / "results" / "families"
PAGES = (ROOT / "README.md", ROOT / "docs" / "results" / "index.md")
ORDER = [
    "darkroom_quick",
    "bandit_quick",
    "keytodoor_quick",
    "darkroom_hard_quick",
    "minigrid_quick",
    "xland_quick",
]
MARK, END = "<!-- families -->", "<!-- /families -->"
FAMILY_END = "<!-- /family -->"


def kept() -> tuple[list[str], list[dict]]:
    """The kept recipes' names and aggregates, in the figure's order."""
    rank = {recipe: i for i, recipe in enumerate(ORDER)}
    paths = sorted(KEPT.glob("*.json"), key=lambda p: (rank.get(p.stem, len(ORDER)), p.stem))
    return [p.stem for p in paths], [load_result(p) for p in paths]


def table() -> str:
    recipes, results = kept()
    return figure_table(results, recipes)


def family_mark(recipe: str) -> str:
    return f"<!-- family {recipe} -->"


def _stat(stats: dict, key: str, interval: bool) -> str:
    s = stats[key]
    return (
        f"{s['mean']:.2f} [{s['ci_low']:.2f}, {s['ci_high']:.2f}]"
        if interval
        else f"{s['mean']:.2f}"
    )


def family_block(recipe: str, result: dict) -> str:
    """One family's headline for its results page: what stands behind it, then AD, the compared
    run and the source (first episode, last 10, normalised, the mean curve's 50% / 80% episode)."""
    several = result["num_runs"] > 1
    runs = (
        f"{seeds_phrase(result, values=True)}, `{recipe}`, scored over {result['num_episodes']} "
        "episodes; mean [95% CI over runs]"
        if several
        else f"1 run of `{recipe}` (split seed {result['split_seeds'][0]}, training seed "
        f"{result['train_seeds'][0]}), {result['num_episodes']} episodes; mean over test tasks "
        "and evaluation seeds"
    )
    lines = [
        f"Test tasks of {runs} (`docs/results/families/{recipe}.json`):",
        "",
        "| | episode 1 | last 10 episodes | normalised (last 10) | episode to 50% / 80% |",
        "|---|---|---|---|---|",
    ]
    roles = [
        (result["label"], result["ad"]),
        (result["compare_label"] or "compare", result.get("compare")),
        ("source (per stream)", result.get("source")),
    ]
    for label, stats in roles:
        if stats is None:
            continue
        reach = f"{stats['episode_to_50'] or 'never'} / {stats['episode_to_80'] or 'never'}"
        lines.append(
            f"| {label} | {_stat(stats, 'first_episode_return', several)} | "
            f"{_stat(stats, 'last10_return', several)} | "
            f"{_stat(stats, 'last10_normalised', several)} | {reach} |"
        )
    return "\n".join(lines)


def family_pages(recipe: str) -> list[Path]:
    """The results pages that quote ``recipe``'s headline."""
    pages = sorted((ROOT / "docs" / "results").glob("*.md"))
    return [p for p in pages if family_mark(recipe) in p.read_text()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="append", default=[], metavar="RECIPE=AGGREGATE")
    parser.add_argument("--table", action="store_true", help="print the table, write nothing")
    parser.add_argument("--family", metavar="RECIPE", help="print RECIPE's block, write nothing")
    args = parser.parse_args(argv)
    try:
        if args.table:
            print(table())
            return
        if args.family:
            print(family_block(args.family, load_result(KEPT / f"{args.family}.json")))
            return
        for keep in args.keep:
            recipe, sep, path = keep.partition("=")
            if not sep or not recipe:
                raise UserError(f"--keep {keep} is not RECIPE=AGGREGATE")
            result = load_result(path)
            KEPT.mkdir(parents=True, exist_ok=True)
            atomic_write_text(KEPT / f"{recipe}.json", json.dumps(to_json(result), indent=2) + "\n")
        recipes, results = kept()
        if not results:
            raise UserError(f"no aggregate is kept in {KEPT}; pass --keep RECIPE=AGGREGATE")
        draw_figure(results, ROOT / "docs" / "families.png")
        for page in PAGES:
            replace_marked_block(page, MARK, END, figure_table(results, recipes))
        for recipe, result in zip(recipes, results, strict=True):
            draw_figure([result], KEPT / f"{recipe}.png")
            for page in family_pages(recipe):
                replace_marked_block(
                    page, family_mark(recipe), FAMILY_END, family_block(recipe, result)
                )
        print(
            f"{len(results)} families: docs/families.png, docs/results/families/*.png and the "
            "tables of README.md, docs/results/index.md and the family pages"
        )
    except UserError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
