"""The point-robot recipe (configs/pointrobot_quick.yaml, issue 13) at a reduced size: AD's
normalised score rises in context on test goals. Slow: collect -> train -> evaluate for real."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pointrobot_quick.yaml"

# The reduced recipe: fewer goals, steps and optimiser steps than the quick config, the same
# source, model and context.
REDUCED = [
    "env.num_train_tasks=10", "env.num_validation_tasks=1", "env.num_test_tasks=3",
    "collect.splits=[train, test]", "collect.total_steps=8000", "train.num_steps=400",
    "train.batch_size=16", "train.optim.warmup_steps=50", "train.checkpoint.every=400",
    "eval.num_episodes=30", "eval.num_seeds=4", "train.device=cpu",
]  # fmt: skip
# Measured: normalised score -0.00 in episode 1 -> 0.37 over the last 10 of 30 (rise 0.37). The
# threshold is about half the measured rise: seeds and machines move it (other runs:
# docs/results/pointrobot.md).
MIN_RISE = 0.2


@pytest.mark.slow(minutes=3)
def test_reduced_pointrobot_recipe_learns_in_context(run_reduced):
    summary = run_reduced(CONFIG, REDUCED, with_ed=False)
    curve = np.asarray(summary.per_episode.normalised_mean)
    first, last10 = curve[0], summary.last10_normalised
    assert summary.split == "test" and summary.num_tasks == 3
    assert last10 - first >= MIN_RISE, (first, last10)
