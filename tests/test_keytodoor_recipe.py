"""The Key-to-Door recipe (configs/keytodoor_quick.yaml) at a reduced size: AD's return rises in
context on test tasks and ends above ED's. Slow: collect -> train AD and ED -> evaluate for real."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "keytodoor_quick.yaml"

# The reduced recipe: a 5x5 room with 20-step episodes (625 tasks) instead of 9x9 and 50, 60
# training tasks, source histories of 50 episodes per stream (PPO with Dark Room quick's update
# settings, which suit such short streams; it still sees the return so far), a context of 4
# episodes (80 steps), every 6th episode (what the derived rule gives these short streams; every
# 2nd rose less here) and 500 optimiser steps; the quick config's model.
REDUCED = [
    "env.family_kwargs={size: 5, episode_length: 20}",
    "env.num_train_tasks=60", "env.num_validation_tasks=1", "env.num_test_tasks=4",
    "collect.splits=[train, test]", "collect.total_steps=4000", "collect.chunk_steps=256",
    "collect.algorithm_kwargs={learning_rate: 0.001, n_steps: 64, batch_size: 64, n_epochs: 10,"
    " ent_coef: 0.01, observe_return: 2}",
    "model.context_steps=80", "train.num_steps=500", "train.batch_size=16",
    "train.optim.warmup_steps=50", "train.checkpoint.every=500", "train.ed.num_steps=150",
    "train.data.subsample_every=6", "eval.num_seeds=16",
]  # fmt: skip
# Training seed 0 (this test's) rose 0.47 -> 0.73 over the first 5 -> last 10 episodes, ED 0.44;
# without learning the rise is 0 +- 0.065 (the standard error of the 64 rows' rise), so the
# thresholds are two standard errors; seed 0 clears them by 0.13-0.17. Other seeds and timings:
# docs/results/keytodoor.md.
MIN_RISE = 0.13
MIN_OVER_ED = 0.13


@pytest.mark.slow(minutes=2.5)
def test_reduced_keytodoor_recipe_learns_in_context(in_context_margins):
    first, last10, ed = in_context_margins(CONFIG, REDUCED)
    assert last10 - first >= MIN_RISE, (first, last10)
    assert last10 - ed >= MIN_OVER_ED, (ed, last10)
