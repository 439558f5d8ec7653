"""AD^eps and DPT (configs/darkroom_adeps.yaml, configs/darkroom_dpt.yaml) at a reduced size: each
rises in context on test goals and ends above ED trained on the same histories.
Slow: collect -> train the method and ED -> evaluate for real."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# A 5x5 room with 10-step episodes (25 goals: 20 train, 4 test), histories of 100 episodes per
# stream, a context of 4 episodes and 400 optimiser steps at batch 16: about 35 s each.
REDUCED = [
    "env.family_kwargs={size: 5, episode_length: 10}",
    "env.num_validation_tasks=1", "env.num_test_tasks=4",
    "collect.splits=[train, test]", "collect.total_steps=2000",
    "model.context_steps=40", "train.num_steps=400", "train.batch_size=16",
    "train.optim.warmup_steps=40", "train.checkpoint.every=400", "train.ed.num_steps=150",
    "eval.num_seeds=16",
]  # fmt: skip
# Training seed 0, first 5 episodes -> last 10 (optimal 8.5): AD^eps 2.05 -> 5.98, ED 0.12; DPT
# 2.98 -> 4.68, ED 0.31. Without learning the rise is 0 +- ~0.5; the thresholds keep 0.7 or more
# of margin. Seed 1: docs/results/darkroom.md.
THRESHOLDS = {  # config: (rise from the first 5 episodes to the last 10, last 10 over ED)
    "darkroom_adeps": (2.0, 2.0),
    "darkroom_dpt": (1.0, 2.5),
}


@pytest.mark.slow(minutes=1)
@pytest.mark.parametrize("config", sorted(THRESHOLDS))
def test_reduced_method_learns_in_context_above_ed(in_context_margins, config):
    min_rise, min_over_ed = THRESHOLDS[config]
    first, last10, ed = in_context_margins(CONFIGS / f"{config}.yaml", REDUCED)
    assert last10 - first >= min_rise, (first, last10)
    assert last10 - ed >= min_over_ed, (ed, last10)
