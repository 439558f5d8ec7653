"""The one exception type a user can cause, and how entry points report it."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad config, missing file, wrong schema version, ...).

    The message is one line that names the problem and the fix. Entry points print it as
    ``error: <message>`` and exit with status 2, never with a traceback.
    """
