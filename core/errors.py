"""One base class for every problem a user can fix: the CLI prints it as one line, the pages as a friendly message.

Each capability raises its own subclass (ModelLoadError, CorpusError, IndexFileError, ...), so callers may catch
narrowly; the CLI catches `UserError` alone. It subclasses ValueError, as most of these are bad values.
"""

from __future__ import annotations


class UserError(ValueError):
    """A problem with the user's input or files; the message is one line that says what to do."""


def first_line(e: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type's name (third-party errors are long)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
