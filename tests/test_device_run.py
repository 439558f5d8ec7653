"""The GPU machine's script at a reduced size on the CPU: each experiment's ad-run, its numbers
and figure in the folder the device tool brings back, and the time budget respected."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = [sys.executable, str(ROOT / "scripts" / "device_run.py")]


def test_a_reduced_run_writes_its_results_and_figure(tmp_path):
    out = tmp_path / "out"
    args = [str(out), "--reduced", "--device", "cpu", "--workers", "2", "--only", "bandit_paper"]
    subprocess.run([*SCRIPT, *args], check=True, capture_output=True, text=True)
    results = json.loads((out / "results.json").read_text())
    assert results["machine"]["machine_matmul_gflops"] > 0 and results["reduced"]
    (bandit,) = results["experiments"]
    assert bandit["split"] == "test" and "failed" not in bandit
    assert isinstance(bandit["ad"]["last10_normalised"], float)
    assert bandit["source"]["last10_normalised"] is not None  # UCB1 on the same test tasks
    assert bandit["ed"] is None and "--no-ed" in bandit["overrides"]
    assert bandit["timings"]["evaluate"] > 0 and "train.device=cpu" in bandit["overrides"]
    files = sorted(p.name for p in out.iterdir())  # the device tool brings back at most 8
    assert files == ["bandit_paper.png", "log.txt", "results.json"]


def test_an_experiment_past_the_budget_is_skipped_and_says_why(tmp_path):
    out = tmp_path / "out"
    args = [str(out), "--reduced", "--device", "cpu", "--budget-s", "1"]
    subprocess.run([*SCRIPT, *args], check=True, capture_output=True, text=True)
    experiments = json.loads((out / "results.json").read_text())["experiments"]
    assert len(experiments) == 3 and all("s left" in e["skipped"] for e in experiments)
    assert not (tmp_path / "out-work" / "runs").exists()  # nothing was run


def test_an_unknown_experiment_is_refused_in_one_line(tmp_path):
    done = subprocess.run(
        [*SCRIPT, str(tmp_path / "out"), "--only", "nope"], capture_output=True, text=True
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "nope" in done.stderr
    assert not (tmp_path / "out").exists()  # refused before anything was written
