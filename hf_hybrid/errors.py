"""The error of a user's mistake: a flag, a file, the data or a model folder that cannot be used as given.

The `hf-hybrid` command prints these as one line and exits with status 1; any other exception is a bug in
hf-hybrid (or in a library under it) and keeps its traceback.
"""


class UserError(ValueError):
    """What the user gave cannot be used; the message says why, and what to do, in one line."""


class DataError(UserError):
    """The papers cannot be used as given; the message says why in one line."""
