"""Errors meant for the user: the CLI prints their message, never a traceback."""


class FoundrecError(Exception):
    """A problem the user can fix (bad input, missing file, wrong option); the message says how."""


class DataError(FoundrecError):
    """Input data that cannot be read or is too damaged to use."""
