"""ad-run --select: candidates trained and scored on validation tasks, the best one's config
written and run through the usual pipeline, so the test tasks are touched once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ad.cli import run_main
from ad.config import load_config
from ad.selection import candidates
from tests.test_pipeline import TINY


def _resolved(*overrides: str):
    return load_config(None, ["model.context_steps=200", *overrides])


def test_candidates_vary_subsampling_then_context_and_skip_what_does_not_fit():
    cfg = _resolved("train.data.subsample_every=5")
    tried = candidates(cfg, steps_per_stream=2000, budget=3)
    assert [c.name for c in tried] == ["as configured", "denser subsampling", "longer context"]
    assert tried[1].settings == {"train.data.subsample_every": 1}
    assert tried[2].settings == {"model.context_steps": 400}  # 2000 // 5 steps fit 400
    # every episode kept already: no denser candidate; a kept stream of 1000 // 5 = 200 steps
    # holds no longer context: the wider model takes their places
    cfg = _resolved("train.data.subsample_every=1")
    names = [c.name for c in candidates(cfg, steps_per_stream=300, budget=5)]
    assert names == ["as configured", "wider model"]
    assert len(candidates(_resolved("train.data.subsample_every=8"), 8000, budget=1)) == 1


def test_select_scores_candidates_on_validation_then_runs_the_chosen_on_test(tmp_path, capsys):
    folders = [f"collect.output_dir={tmp_path / 'h'}", f"train.run_dir={tmp_path / 'r'}"]
    args = ["--workers", "1", "--no-progress", "--select", "--select-budget", "2"]
    overrides = [a for o in TINY + folders for a in ("--set", o)]
    assert run_main([*overrides, *args]) == 0
    out, err = capsys.readouterr()
    assert "Estimate ~" in out and "GFLOP/s" in out  # the budget, stated up front
    folder = tmp_path / "r-select"
    record = json.loads((folder / "selection.json").read_text())
    rows = record["candidates"]
    assert [r["name"] for r in rows][0] == "as configured" and len(rows) == 2
    for row in rows:  # each candidate rolled out on validation tasks only
        evaluated = Path(row["run_dir"]) / "eval-validation" / "summary.json"
        summary = json.loads(evaluated.read_text())
        assert summary["split"] == "validation"
        assert row["validation_last10_return"] == pytest.approx(summary["last10_return"])
    scores = [r["validation_last10_normalised"] for r in rows]
    chosen = rows[scores.index(max(scores))]
    assert record["chosen"] == chosen["name"]
    assert f"**{chosen['name']}** (chosen)" in (folder / "selection.md").read_text()
    # chosen.yaml is a loadable config whose run is the chosen candidate's, already trained
    cfg = load_config(folder / "chosen.yaml")
    assert str(cfg.run_dir) == chosen["run_dir"]
    for key, value in chosen["settings"].items():
        section, *rest = key.split(".")
        node = getattr(cfg, section)
        for part in rest:
            node = getattr(node, part)
        assert node == value, key
    assert f"resuming {cfg.run_dir}" in out + err  # its trained model is reused, not retrained
    report = json.loads((cfg.run_dir / "report" / "summary.json").read_text())
    assert report["split"] == "test" and report["compare"]  # the final run: test, with ED
    assert (folder / "versions.json").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--select-budget", "2"], "--select-budget needs --select"),
        (["--select", "--select-budget", "0"], "at least 1 training"),
        (["configs/generalist_quick.yaml", "--select"], "not a generalist"),
        (["--select", "--set", "env.num_validation_tasks=0"], "validation tasks"),
    ],
)
def test_select_refuses_in_one_line(args, message, capsys, tmp_path, monkeypatch):
    root = Path(__file__).resolve().parents[1]
    args = [str(root / a) if a.endswith(".yaml") else a for a in args]
    monkeypatch.chdir(tmp_path)
    assert run_main([*args, "--no-progress"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not any(tmp_path.iterdir())  # refused before anything was written
