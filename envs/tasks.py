"""What a task is: a JSON-serialisable mapping, its canonical key, and the family layer's error.

The lowest module of ``envs``: :mod:`envs.split` and :mod:`envs.base` build on it.
"""

from __future__ import annotations

import json
from typing import Any

Task = dict[str, Any]


class TaskError(Exception):
    """A problem with a task, a family or a user's module that the user can fix.

    The message is one line naming the problem and the fix. ``envs`` is the lowest layer and
    imports nothing from ``ad``, so this is its own error type; ``ad``'s entry points report it
    like their own ``UserError`` (see ``ad.errors.user_errors``).
    """


def task_key(task: Task) -> str:
    """Canonical JSON text of a task, used for membership checks across processes."""
    return json.dumps(task, sort_keys=True, separators=(",", ":"))


def canonical_json(value: Any) -> Any:
    """``value`` through a JSON round trip: tuples become lists and keys strings, so values that
    were stored as JSON (tasks, family kwargs, splits) compare equal to fresh ones."""
    return json.loads(json.dumps(value, sort_keys=True))
