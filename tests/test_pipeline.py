"""The main job end to end at a smaller budget: collect -> train AD and ED -> evaluate -> report."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from ad.config import load_config
from ad.pipeline import run_pipeline

# A reduced version of the default (configs/darkroom_quick.yaml): 40 of the 57 training goals,
# 1200 instead of 2000 optimiser steps of 16 instead of 32 windows, 4 of the 16 fixed test goals
# (the first 4 of the same seeded permutation) x 4 seeds; no validation histories (nothing here
# is evaluated on them).
SMALL = [
    "env.num_train_tasks=40",
    "env.num_test_tasks=4",
    "collect.splits=[train, test]",
    "collect.seeds=[0]",
    "train.num_steps=1200",
    "train.batch_size=16",
    "train.ed.num_steps=300",
    "train.optim.warmup_steps=100",
    "train.checkpoint.every=1200",
    "eval.num_seeds=4",
]
# Training seed 0 (the config's) rose 0.75 -> 6.03 (first episode -> last 10), ED 0.39; without
# learning the rise would be 0 +- ~0.5 (the spread of a 16-row mean of first-episode returns), so
# a margin of 2 is well clear of both. Other seeds and batch sizes: docs/results/darkroom.md.
MARGIN = 2.0


TINY = [
    "env.num_train_tasks=3",
    "env.num_validation_tasks=1",
    "env.num_test_tasks=2",
    "collect.total_steps=512",
    "collect.seeds=[0]",
    "model.embed_dim=16",
    "model.num_layers=1",
    "model.ff_dim=32",
    "model.context_steps=40",
    "train.num_steps=12",
    "train.ed.num_steps=6",
    "train.optim.warmup_steps=2",
    "train.batch_size=4",
    "eval.num_episodes=4",
    "eval.num_seeds=2",
]


def test_the_same_command_twice_gives_the_same_numbers(tmp_path):
    """Reproducible end to end: two fresh runs of one config (collected by a pool of two
    processes) give identical histories, weights and evaluation numbers."""
    summaries = []
    for name in ("first", "second"):
        folders = [
            f"collect.output_dir={tmp_path / name / 'h'}",
            f"train.run_dir={tmp_path / name / 'r'}",
        ]
        cfg = load_config(None, TINY + folders)
        summaries.extend(run_pipeline(cfg, workers=2, with_ed=True, progress=False))
    returns = [
        np.load(tmp_path / name / "r" / "report" / "returns.npz")["returns"]
        for name in ("first", "second")
    ]
    np.testing.assert_array_equal(*returns)
    # Absolute times come with the machine's measured speed beside them.
    report = tmp_path / "first" / "r" / "report"
    assert json.loads((report / "timings.json").read_text())["machine_matmul_gflops"] > 0
    assert "GFLOP/s" in (report / "REPORT.md").read_text()
    first, second = summaries
    assert first.per_episode == second.per_episode and first.source == second.source
    assert first.last10_return == second.last10_return
    # the compared ED runs: equal but for where they lie
    ed = [dataclasses.replace(s.compare[0], run="", checkpoint="") for s in summaries]
    assert ed[0] == ed[1]
    a, b = (
        torch.load(tmp_path / n / "r" / "checkpoints" / "step-000012.pt", weights_only=True)
        for n in ("first", "second")
    )
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


@pytest.mark.slow(minutes=6)
def test_default_pipeline_learns_in_context_on_test_goals(tmp_path, run_reduced):
    summary = run_reduced(None, SMALL, with_ed=True)
    report = tmp_path / "r" / "report"
    for name in ("REPORT.md", "summary.json", "returns.npz", "return_curves.png"):
        assert (report / name).is_file(), name
    returns = np.load(report / "returns.npz")["returns"]  # (tasks, seeds, episodes)
    assert returns.shape[:2] == (4, 4)
    first, last10 = returns[..., 0].mean(), returns[..., -10:].mean()
    assert last10 > first + MARGIN, (first, last10)
    ed = summary.compare[0]  # the control: the same model on converged episodes only
    assert ed.last10_return < summary.last10_return - MARGIN, (ed.last10_return, last10)
    assert json.loads((report / "summary.json").read_text())["split"] == "test"


def test_overall_progress_line_weighs_stages_and_reads_the_running_stage_bar(capsys):
    from ad.pipeline import OverallProgress, stage_weights
    from ad.utils import progress_bar

    weights = stage_weights(load_config(None), with_ed=True)
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights["train AD"] > weights["train ED"] > 0  # twice the optimiser steps
    dpt = stage_weights(load_config(None, ["train.mode=dpt"]), with_ed=False)
    assert set(dpt) == {"collect", "train DPT", "evaluate"}  # the stage is named after the method
    overall = OverallProgress({"collect": 0.2, "train AD": 0.8}, every=3600)
    overall.begin("collect")
    assert overall.fraction() == 0.0
    with progress_bar(total=10, desc="env steps", file=open("/dev/null", "w")) as bar:
        bar.update(5)  # half of the collect stage
        assert overall.fraction() == pytest.approx(0.1)
    assert overall.fraction() == 0.0  # a closed bar is no longer read
    overall.begin("train AD")
    assert overall.fraction() == pytest.approx(0.2)  # collect done, no train bar yet
    line = overall.line()
    assert line.startswith("ad-run  20% | train AD | elapsed 0:0") and line.endswith("left")
    overall.begin(None)
    overall.close()
    printed = capsys.readouterr().out
    assert "ad-run   0% | collect" in printed and "ad-run 100% | done" in printed
