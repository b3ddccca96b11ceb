"""The root of every error caused by input (a config, a file, a video, a setting).

``tal`` prints a ``UserInputError`` as one line (``error: ...``) and exits with status 2;
any other exception is a bug or a fault of the machine and keeps its traceback. It lives in
the lowest layer (``features``) so that every package can derive from it.
"""

from __future__ import annotations


class UserInputError(ValueError):
    """Input that cannot be used; the message names the input and what was expected."""
