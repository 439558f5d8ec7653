"""The families table of README.md and docs/results/index.md is the one the kept aggregates
under docs/results/families/ give (scripts/families_figure.py writes both)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = [sys.executable, str(ROOT / "scripts" / "families_figure.py")]
PAGES = [ROOT / "README.md", ROOT / "docs" / "results" / "index.md"]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_the_quoted_table_is_the_one_the_kept_aggregates_give(page):
    printed = subprocess.run([*SCRIPT, "--table"], capture_output=True, text=True, check=True)
    block = page.read_text().split("<!-- families -->\n", 1)[1].split("<!-- /families -->")[0]
    assert block.strip() and block.strip() == printed.stdout.strip()


def test_every_kept_aggregate_is_a_row(tmp_path):
    kept = sorted((ROOT / "docs" / "results" / "families").glob("*.json"))
    assert kept
    table = subprocess.run([*SCRIPT, "--table"], capture_output=True, text=True, check=True)
    for path in kept:
        assert f"`{path.stem}`" in table.stdout
        assert json.loads(path.read_text())["split"] == "test"  # reported numbers: test tasks


def test_keep_refuses_what_is_not_an_aggregate_in_one_line(tmp_path):
    bad = tmp_path / "aggregate.json"
    bad.write_text(json.dumps({"family": "DarkRoom"}))
    done = subprocess.run([*SCRIPT, "--keep", f"x={bad}"], capture_output=True, text=True)
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1
    assert "not an ad-eval --aggregate result" in done.stderr
    assert not (ROOT / "docs" / "results" / "families" / "x.json").exists()


def _family_blocks() -> list[tuple[Path, str, str]]:
    """(page, recipe, quoted block) for every family block of the results pages."""
    blocks = []
    for page in sorted((ROOT / "docs" / "results").glob("*.md")):
        for part in page.read_text().split("<!-- family ")[1:]:
            recipe, rest = part.split(" -->\n", 1)
            blocks.append((page, recipe, rest.split("<!-- /family -->")[0]))
    return blocks


@pytest.mark.parametrize(
    ("page", "recipe", "block"), _family_blocks(), ids=[r for _, r, _ in _family_blocks()]
)
def test_a_family_page_quotes_its_kept_aggregate(page, recipe, block):
    printed = subprocess.run(
        [*SCRIPT, "--family", recipe], capture_output=True, text=True, check=True
    )
    assert block.strip() and block.strip() == printed.stdout.strip()
    assert (ROOT / "docs" / "results" / "families" / f"{recipe}.png").exists()
