"""The one exception type for bad user input (files, fields, flags).

The CLI turns it into a one-line reason and exit status 2; library callers can catch it.
"""


class UserInputError(ValueError):
    """Bad input from a user: the message names the file, field or flag at fault."""
