"""The one exception type for mistakes a user can fix.

Everything that is not a ``NaspError`` is a bug in nasp and may raise with a traceback; a
``NaspError`` is shown by the CLI as ``error: <what> (<how to fix>)`` and exit status 2.
"""

from __future__ import annotations


class NaspError(Exception):
    """A problem with the user's input, options or files, with a hint on how to fix it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message
