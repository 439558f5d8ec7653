"""Defaults derived from a family's episode length and its source histories (issue 11, point 3).

Three settings depend on the family rather than on the model: the context length
(``model.context_steps``), the subsampling of training streams (``train.data.subsample_every``) and
the episodes of an evaluation (``eval.num_episodes``). Left null in a config, they are derived
when training opens its dataset (:func:`ad.learn.training_data.resolve_config`), and the run's
config.yaml and checkpoints record the derived numbers, so evaluation uses the same ones.

The rule, with L the family's episode length (its longest episode), T the steps of one source
stream and E the complete episodes of one stream (both the fewest over the training runs):

1. ``context_steps`` = max(4, 200 // L) whole episodes: as many episodes as fit in 200 steps,
   but at least 4 (AD learns across episodes; the paper's contexts hold 2-4), capped by the
   length T // k of a kept stream.
2. ``subsample_every`` k = max(1, T // (2 * context)): every k-th episode of the whole stream,
   so the kept episodes span its learning from first to last episode, and a kept stream holds
   two contexts (windows then show both exploring and exploiting phases, and their change).
   Counted in steps, so it holds for families whose episodes end early.
3. ``num_episodes`` = max(20, E + E // k): the source's episodes per stream (the model's curve
   lies beside the source's whole curve), plus the episodes of one kept stream, so the last-10
   score is taken once the context has slid a kept stream's length past the source's horizon.

Dark Room's quick recipe (L 20, T 2000, E 100) gives 200 steps (10 episodes), k 5 and 120
episodes: its measured values. The Bandit of ``bandit_ci`` (L 1, T 100, E 100) gives the
whole 100-pull run as the context, k 1 and 200 pulls.
"""

from __future__ import annotations

from dataclasses import dataclass

from ad.errors import UserError

CONTEXT_BUDGET_STEPS = 200  # Dark Room's measured context; attention costs grow with its square
MIN_CONTEXT_EPISODES = 4  # the paper's contexts span 2-4 episodes; AD learns across them
CONTEXTS_PER_KEPT_STREAM = 2
MIN_EVAL_EPISODES = 20  # the first and the last 10 episodes do not overlap

DERIVED_FIELDS = ("model.context_steps", "train.data.subsample_every", "eval.num_episodes")

RULE = (
    "Null model.context_steps, train.data.subsample_every and eval.num_episodes are derived when "
    "ad-train opens the dataset (L: the family's episode length; T, E: steps and complete "
    "episodes of one source stream, the fewest over the training runs): context_steps = "
    "max(4, 200 // L) * L, capped by a kept stream's T // k steps; subsample_every k = "
    "max(1, T // (2 * context_steps)); num_episodes = max(20, E + E // k). The run's config.yaml "
    "and checkpoints record the derived numbers (Dark Room quick: 200, 5, 120)."
)


@dataclass(frozen=True)
class SourceShape:
    """What the rule reads of the training histories."""

    episode_length: int  # L: the family's longest episode, in steps
    steps_per_stream: int  # T: steps of one source stream (the fewest over the training runs)
    episodes_per_stream: int  # E: complete episodes of one stream (the fewest over the runs)


def context_episodes(episode_length: int) -> int:
    """Whole episodes in an uncapped derived context: as many as fit in 200 steps, at least 4."""
    return max(MIN_CONTEXT_EPISODES, CONTEXT_BUDGET_STEPS // episode_length)


def derive(
    shape: SourceShape,
    context_steps: int | None = None,
    subsample_every: int | None = None,
    num_episodes: int | None = None,
) -> tuple[int, int, int]:
    """The three settings, each the given value or, if None, the rule's.

    Args:
        shape: the training histories' episode length, steps and episodes per stream.
        context_steps, subsample_every, num_episodes: the config's values (None: derive).

    Returns:
        (context_steps, subsample_every, num_episodes).

    Raises:
        UserError: streams shorter than one episode, or a derived context shorter than one
            episode (a given subsample_every that leaves kept streams that short).
    """
    length, steps = shape.episode_length, shape.steps_per_stream
    if steps < length and (context_steps is None or subsample_every is None):
        raise UserError(
            f"the training histories' streams hold {steps} steps, less than one episode "
            f"({length} steps), so no context length can be derived; raise collect.total_steps "
            "(or lower collect.n_envs)"
        )
    wanted = context_episodes(length) * length
    k = subsample_every
    if k is None:
        k = max(1, steps // (CONTEXTS_PER_KEPT_STREAM * (context_steps or wanted)))
    c = context_steps
    if c is None:
        c = min(wanted, steps // k)
        if c < length:
            raise UserError(
                f"model.context_steps derives to {c} steps (a kept stream of {steps} // "
                f"train.data.subsample_every={k}), shorter than one episode ({length} steps); lower "
                "train.data.subsample_every or set model.context_steps"
            )
    e = shape.episodes_per_stream
    n = num_episodes if num_episodes is not None else max(MIN_EVAL_EPISODES, e + e // k)
    return c, k, n
