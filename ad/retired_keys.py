"""Config keys and values that no longer exist, refused with one line that names their successor.

A config written for an earlier layout must not run with a silently different meaning: the
two-way (train / held-out) task split became train / validation / test.
"""

from __future__ import annotations

from ad.errors import UserError


def refuse_retired_keys(data: dict) -> None:
    """One line naming the new key or value for what the two-way (train / held-out) split used:
    a config written for it must not run with a silently different split.

    Raises:
        UserError: ``env.num_heldout_tasks``, or the split name ``heldout`` in
            ``collect.splits`` or ``eval.tasks``.
    """

    def section(name: str) -> dict:
        return data[name] if isinstance(data.get(name), dict) else {}

    if "num_heldout_tasks" in section("env"):
        raise UserError(
            "env.num_heldout_tasks no longer exists: tasks are split into train / validation / "
            "test; rename it env.num_test_tasks (the former held-out tasks) and set "
            "env.num_validation_tasks"
        )
    splits = section("collect").get("splits")
    if isinstance(splits, (list, tuple)) and "heldout" in splits:
        raise UserError(
            "collect.splits names 'heldout', which is now 'test'; use [train, validation, test] "
            "(or a subset)"
        )
    if section("eval").get("tasks") == "heldout":
        raise UserError(
            "eval.tasks 'heldout' is now 'test' (reported numbers); use eval.tasks=test, or "
            "validation to choose settings"
        )
