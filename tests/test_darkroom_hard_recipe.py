"""The Dark Room Hard recipe (configs/darkroom_hard_quick.yaml) at a reduced size: AD's return
rises in context on test goals and ends above ED's. Slow: collect -> train AD and ED -> evaluate
for real."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "darkroom_hard_quick.yaml"

# The reduced recipe: a 7x7 room (49 goals; a random walk's return 0.19 on average) instead of
# 9x9, 30 training goals with one PPO history of 50 episodes per stream, a context of 4 episodes
# (80 steps), every 6th episode and 58 evaluation episodes (what the derived rule gives these
# streams), 1000 optimiser steps at batch 16; the recipe's model.
REDUCED = [
    "env.family_kwargs={size: 7, episode_length: 20}",
    "env.num_train_tasks=30", "env.num_validation_tasks=1", "env.num_test_tasks=4",
    "collect.splits=[train, test]", "collect.seeds=[0]", "collect.total_steps=4000",
    "model.context_steps=80", "train.data.subsample_every=6", "eval.num_episodes=58",
    "train.num_steps=1000", "train.batch_size=16",
    "train.optim.warmup_steps=50", "train.checkpoint.every=1000", "train.ed.num_steps=150",
    "eval.num_seeds=16",
]  # fmt: skip
# Training seed 0 (this test's) rose 0.22 -> 0.39 over the first 5 -> last 10 episodes, ED 0.17;
# without learning the rise is 0 +- 0.046 (the standard error of the 64 rows' rise), so the
# thresholds are two standard errors, which seed 0 clears by 0.07 and 0.12. Other seeds and
# settings: docs/results/darkroom-hard.md.
MIN_RISE = 0.1
MIN_OVER_ED = 0.1


@pytest.mark.slow(minutes=3)
def test_reduced_darkroom_hard_recipe_learns_in_context(in_context_margins):
    first, last10, ed = in_context_margins(CONFIG, REDUCED)
    assert last10 - first >= MIN_RISE, (first, last10)
    assert last10 - ed >= MIN_OVER_ED, (ed, last10)
