"""The exception types a user can cause, and how entry points recognise them."""

from __future__ import annotations

import sys


class UserError(Exception):
    """A problem the user can fix (bad config, missing file, wrong schema version, ...).

    The message is one line that names the problem and the fix. Entry points print it as
    ``error: <message>`` and exit with status 2, never with a traceback.
    """


def user_errors() -> tuple[type[Exception], ...]:
    """:class:`UserError`, and ``envs.base.TaskError`` once ``envs`` is loaded.

    ``envs`` is the lowest layer and imports nothing from ``ad``, so it has its own error type;
    an ``except user_errors():`` clause catches both without importing ``envs`` (and gymnasium)
    where no task was ever built, e.g. for ``--help``.
    """
    envs_base = sys.modules.get("envs.base")
    return (UserError,) if envs_base is None else (UserError, envs_base.TaskError)


def one_line(error: BaseException) -> str:
    """An exception's message with its whitespace collapsed, for one-line errors (its type's
    name if the message is empty)."""
    return " ".join(str(error).split()) or type(error).__name__
