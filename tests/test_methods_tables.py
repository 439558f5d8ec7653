"""The methods page's tables are the ones their JSON under docs/results/ gives (one per family,
written by scripts/compare_methods.py --page)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = sorted(
    p for p in (ROOT / "docs" / "results").glob("methods_*.json") if "validation" not in p.name
)


def test_every_family_with_results_has_its_table():
    page = (ROOT / "docs" / "methods.md").read_text()
    assert RESULTS
    for path in RESULTS:
        assert f"<!-- {path.stem} -->" in page, path.name


@pytest.mark.parametrize("results", RESULTS, ids=[p.stem for p in RESULTS])
def test_the_table_is_the_one_its_json_gives(results):
    page = (ROOT / "docs" / "methods.md").read_text()
    block = page.split(f"<!-- {results.stem} -->\n", 1)[1].split(f"<!-- /{results.stem} -->")[0]
    script = [sys.executable, str(ROOT / "scripts" / "compare_methods.py")]
    printed = subprocess.run(
        [*script, "--table", str(results)], capture_output=True, text=True, check=True
    ).stdout
    assert block.strip() and block.strip() == printed.strip()
