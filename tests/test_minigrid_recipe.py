"""The MiniGrid recipe (configs/minigrid_quick.yaml) at a reduced size: AD's return rises in
context on test goals and ends above ED's. Slow: collect -> train AD and ED -> evaluate for real,
the PPO source and the model reading minigrid's (7, 7, 3) views."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "minigrid_quick.yaml"

# The reduced recipe: the recipe's 7x7 room and model (the codes encoder), 19 training goals
# with one PPO history of 2000 steps per stream instead of 16 x 3 of 4000, PPO updating 4 epochs
# of 128 instead of 10 of 64 (faster to collect, and it still learns), 600 optimiser steps of 16
# windows. The context (200 steps: 4 episodes of 50), every 5th episode and 55 evaluation
# episodes are the derived rule's.
REDUCED = [
    "env.num_train_tasks=19", "env.num_validation_tasks=1", "env.num_test_tasks=4",
    "collect.splits=[train, test]", "collect.seeds=[0]", "collect.total_steps=8000",
    "collect.algorithm_kwargs={learning_rate: 0.0007, n_steps: 64, batch_size: 128, n_epochs: 4,"
    " ent_coef: 0.01}",
    "train.num_steps=600", "train.batch_size=16", "train.optim.warmup_steps=50",
    "train.checkpoint.every=600", "train.ed.num_steps=150", "eval.num_seeds=16",
]  # fmt: skip
# Training seed 0 (this test's) rose 0.32 -> 0.48 over the first 5 -> last 10 episodes, ED 0.31;
# without learning the rise is 0 +- 0.045 (the standard error of the 64 rows' rise), so the
# thresholds are two standard errors, which seed 0 clears by 0.07 and 0.08. At this budget the
# margin depends on the training seed (seeds 1 and 2 rose less): docs/results/minigrid.md.
MIN_RISE = 0.09
MIN_OVER_ED = 0.09


@pytest.mark.slow(minutes=3)
def test_reduced_minigrid_recipe_learns_in_context(in_context_margins):
    first, last10, ed = in_context_margins(CONFIG, REDUCED)
    assert last10 - first >= MIN_RISE, (first, last10)
    assert last10 - ed >= MIN_OVER_ED, (ed, last10)
