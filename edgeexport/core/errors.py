"""Errors the CLI turns into one line and a non-zero exit, never a traceback."""


class UserError(Exception):
    """Bad input from the user (a file, an option, a directory): exit code 2."""

    exit_code = 2


class ValidationError(Exception):
    """An exported model does not compute what the reference computes: exit code 1."""

    exit_code = 1
