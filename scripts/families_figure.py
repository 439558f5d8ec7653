"""The families figure and table from the aggregates kept under docs/results/families/.

Usage:
  python scripts/families_figure.py [--keep RECIPE=AGGREGATE ...]   # keep, then redraw
  python scripts/families_figure.py --table                          # print the table only

``--keep`` copies a family's ``ad-eval --aggregate`` result (``aggregate.json`` or its folder;
``scripts/paper_figure.sh`` passes each family's) to ``docs/results/families/RECIPE.json``.
Then every kept aggregate, in the order of ``ORDER`` (others after, by name), becomes one panel
of ``docs/families.png`` and one row of the table between the ``<!-- families -->`` markers of
README.md and docs/results/index.md. Nothing is run: the figure is redrawn from kept data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ad.errors import UserError
from ad.evaluation.figure import draw_figure, figure_table, load_result
from ad.utils import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
KEPT = ROOT / "docs" / "results" / "families"
PAGES = (ROOT / "README.md", ROOT / "docs" / "results" / "index.md")
ORDER = [
    "darkroom_quick",
    "bandit_quick",
    "keytodoor_quick",
    "darkroom_hard_quick",
    "minigrid_quick",
]
MARK, END = "<!-- families -->\n", "<!-- /families -->"


def kept() -> tuple[list[str], list[dict]]:
    """The kept recipes' names and aggregates, in the figure's order."""
    rank = {recipe: i for i, recipe in enumerate(ORDER)}
    paths = sorted(KEPT.glob("*.json"), key=lambda p: (rank.get(p.stem, len(ORDER)), p.stem))
    return [p.stem for p in paths], [load_result(p) for p in paths]


def table() -> str:
    recipes, results = kept()
    return figure_table(results, recipes)


def write_pages(text: str) -> None:
    for page in PAGES:
        content = page.read_text()
        if MARK not in content or END not in content:
            raise UserError(f"{page} has no {MARK.strip()} ... {END} markers for the table")
        head, rest = content.split(MARK, 1)
        atomic_write_text(page, head + MARK + text + "\n" + END + rest.split(END, 1)[1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="append", default=[], metavar="RECIPE=AGGREGATE")
    parser.add_argument("--table", action="store_true", help="print the table, write nothing")
    args = parser.parse_args(argv)
    try:
        if args.table:
            print(table())
            return
        for keep in args.keep:
            recipe, sep, path = keep.partition("=")
            if not sep or not recipe:
                raise UserError(f"--keep {keep} is not RECIPE=AGGREGATE")
            result = load_result(path)
            KEPT.mkdir(parents=True, exist_ok=True)
            atomic_write_text(KEPT / f"{recipe}.json", json.dumps(result, indent=2) + "\n")
        recipes, results = kept()
        if not results:
            raise UserError(f"no aggregate is kept in {KEPT}; pass --keep RECIPE=AGGREGATE")
        draw_figure(results, ROOT / "docs" / "families.png")
        write_pages(figure_table(results, recipes))
        print(
            f"{len(results)} families: docs/families.png and the tables of README.md and docs/results/index.md"
        )
    except UserError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
