"""The errors the `hf-hybrid` command prints as one line (exit status 1): a user's mistake (a flag, a file, the data or
a model folder that cannot be used as given) and a refusal or failure of the Hub. Any other exception is a bug in
hf-hybrid (or in a library under it) and keeps its traceback.
"""


class UserError(ValueError):
    """What the user gave cannot be used; the message says why, and what to do, in one line."""


class DataError(UserError):
    """The papers cannot be used as given; the message says why in one line."""


class HubError(RuntimeError):
    """The Hub refused or could not be reached; the message says what to do in one line."""
