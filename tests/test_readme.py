"""The README's two set-up commands: .ci/run runs the test command verbatim, and both install the
CPU build of torch before the project (an unpinned torch pulls a multi-GB CUDA build)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Set-up: two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, flags=re.DOTALL)


def test_readme_has_two_setup_commands_and_ci_runs_the_test_one():
    main_job, tests = _setup_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci.splitlines()  # verbatim, one line
    for command in (main_job, tests):
        assert "\n" not in command and command.startswith("python3 -m venv .venv")
        assert command.index("torch==2.13.0") < command.index(" -e ")  # the CPU wheel first
    assert main_job.endswith(".venv/bin/ad-run")  # the main job on its embedded default config
    assert "pytest" in tests and "ruff check" in tests
