"""Stage 3, evaluation: the frozen model learns in context on test (or validation) tasks.

``rollout`` (batched in-context rollouts with the KV cache), ``evaluate`` (runs, summaries,
outputs), ``summary`` (summary.json's typed record), ``metrics`` (bootstrap intervals,
normalised scores), ``plots`` (the only matplotlib user). May import ``ad.data`` and ``ad.learn``.
"""
