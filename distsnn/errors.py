"""Errors a user can fix (bad file, bad option, mismatched data): one base for all of them.

Every user-fixable error derives from :class:`UserError`; the command line prints its message
as one ``distsnn: error:`` line and exits 2. Errors that were ``ValueError`` before they were
user errors keep it as a second base (callers that catch ``ValueError`` still do). How ranks
agree on such errors lives in :mod:`distsnn.parallel.agreement`.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input; the command line prints its message as one line."""


class SharedUserError(UserError):
    """A user error raised on every rank alike (rank 0 alone reports it)."""


#: Exceptions that mean "fix your input", not "distsnn has a bug".
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError)
