"""Errors that are the user's to fix: printed as one line, never as a traceback."""


class UserError(Exception):
    """Bad input (unknown name, missing data, out-of-range option). The message says what and how to fix it."""
