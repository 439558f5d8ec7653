"""The documentation site (mkdocs.yml, docs/): it builds with ``mkdocs build --strict`` (a broken
link or anchor, or a page missing from the nav, fails), its config reference is the one
scripts/config_reference.py generates from ad/config.py now, and the schema versions that
docs/data-formats.md states are the code's."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _config_reference_module():
    spec = importlib.util.spec_from_file_location(
        "config_reference", ROOT / "scripts" / "config_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_reference_is_up_to_date():
    module = _config_reference_module()
    current = (ROOT / "docs" / "config.md").read_text()
    assert current == module.reference(), (
        "docs/config.md differs from the config dataclasses: run python scripts/config_reference.py"
    )


def test_config_reference_lists_every_setting():
    from ad.config import help_text

    page = (ROOT / "docs" / "config.md").read_text()
    # --help-config's lines "  section.key = default": the same settings, none left out
    names = re.findall(r"^  (\S+) = ", help_text(), flags=re.MULTILINE)
    assert len(names) > 50
    for name in names:
        assert f"| `{name}` |" in page, name


def test_data_formats_states_the_schema_versions_of_the_code():
    from ad.data.histories import SCHEMA_VERSION
    from ad.data.manifest import MANIFEST_SCHEMA_VERSION
    from ad.evaluation.summary import SUMMARY_SCHEMA
    from ad.learn.checkpoint import CHECKPOINT_SCHEMA

    page = (ROOT / "docs" / "data-formats.md").read_text()
    headings = {
        "## Learning histories": SCHEMA_VERSION,
        "## The manifest: `manifest.json`": MANIFEST_SCHEMA_VERSION,
        "## Checkpoints": CHECKPOINT_SCHEMA,
        "## Summaries: `summary.json`": SUMMARY_SCHEMA,
    }
    for heading, version in headings.items():
        assert f"{heading} (schema version {version})\n" in page, heading


def test_getting_started_has_the_readmes_setup_commands():
    def commands(text: str) -> list[str]:
        return re.findall(r"```bash\n(python3 -m venv .+?)\n```", text)

    readme = commands((ROOT / "README.md").read_text())
    assert len(readme) == 2
    assert commands((ROOT / "docs" / "index.md").read_text()) == readme


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None, reason="the docs extra is not installed"
)
def test_site_builds_strictly(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "config.html").is_file()  # use_directory_urls: false
