"""The GPU machine's script at a reduced size on the CPU: each experiment's ad-run, its numbers
and figure in the folder the device tool brings back, and the time budget respected."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = [sys.executable, str(ROOT / "scripts" / "device_run.py")]


def test_reduced_runs_write_results_and_figures(tmp_path):
    out = tmp_path / "out"
    only = ["--only", "keytodoor_ff256", "--only", "bandit_paper"]
    args = [str(out), "--reduced", "--device", "cpu", "--workers", "2", *only]
    subprocess.run([*SCRIPT, *args], check=True, capture_output=True, text=True)
    results = json.loads((out / "results.json").read_text())
    assert results["machine"]["machine_matmul_gflops"] > 0 and results["reduced"]
    k2d, bandit = results["experiments"]
    for entry in (k2d, bandit):
        assert entry["split"] == "test" and "failed" not in entry
        assert isinstance(entry["ad"]["last10_normalised"], float)
        assert entry["timings"]["evaluate"] > 0
        assert (out / f"{entry['name']}.png").is_file()
    assert k2d["ed"] is not None and bandit["ed"] is None  # the Bandit runs with --no-ed
    assert "train.device=cpu" in k2d["overrides"]
    files = sorted(p.name for p in out.iterdir())  # the device tool brings back at most 8
    assert len(files) <= 8 and "log.txt" in files


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
